"""Fixtures of the method tests."""

from __future__ import annotations

import pytest
import torch
from method_helpers import make_net
from torch import nn


@pytest.fixture(params=["mlp", "conv"])
def net_and_batch(request: pytest.FixtureRequest) -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    return make_net(request.param)
