"""Fixtures: the tiny methods of ``eval_toys``."""

from __future__ import annotations

import pytest
from eval_toys import GaussianWeightMethod, LinearImageMethod


@pytest.fixture
def det() -> LinearImageMethod:
    return LinearImageMethod()


@pytest.fixture
def sto() -> GaussianWeightMethod:
    return GaussianWeightMethod()
