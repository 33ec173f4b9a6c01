"""Fixtures of the method tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch
from method_helpers import make_net
from torch import nn


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    """Tiny ops run far faster on one thread, above all on a shared 2-core machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(params=["mlp", "conv"])
def net_and_batch(request: pytest.FixtureRequest) -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    return make_net(request.param)
