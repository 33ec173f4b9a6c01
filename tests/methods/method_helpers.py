"""Helpers of the method tests: small nets, data and per-method small options."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from bbh.nets.convnet import TinyConvNet
from bbh.nets.mlp import MLP

#: Small options per registered method, so the contract tests stay fast.
SMALL_OPTIONS: dict[str, dict[str, Any]] = {
    "map": {},
    "mc_dropout": {"p": 0.3},
    "ensemble": {"num_members": 3},
    "bbb": {"init_log_var": -6.0},
    "mnf": {"flow_hidden": 8, "aux_flow_hidden": 8},
    "bbh": {"noise_dim": 2, "num_samples": 3, "hidden": (8,)},
}


def small_options(name: str) -> dict[str, Any]:
    return dict(SMALL_OPTIONS.get(name, {}))


def make_net(kind: str) -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    """A tiny net and a batch ``(x, y)`` for it; 3 classes."""
    gen = torch.Generator().manual_seed(123)
    if kind == "mlp":
        torch.manual_seed(0)
        net: nn.Module = MLP(6, [8], 3)
        x = torch.randn(8, 6, generator=gen)
    elif kind == "conv":
        torch.manual_seed(0)
        net = TinyConvNet(in_channels=1, num_classes=3, channels=3)
        x = torch.randn(8, 1, 8, 8, generator=gen)
    else:
        raise ValueError(kind)
    y = torch.randint(0, 3, (8,), generator=gen)
    return net, x, y
