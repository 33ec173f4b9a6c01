"""Fixtures of the experiment tests."""

from __future__ import annotations

from pathlib import Path

import pytest
from tiny_configs import write_tiny


@pytest.fixture
def tiny_config(tmp_path: Path) -> Path:
    return write_tiny(tmp_path)
