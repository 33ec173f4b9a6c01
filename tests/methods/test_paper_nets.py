"""The baselines on the paper's networks: LeNet-5 (MNIST) and the CIFAR-5 ResNet."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from bbh.methods import build
from bbh.nets.lenet import LeNet5
from bbh.nets.resnet import CifarResNet

#: The paper's settings per baseline (docs/methods.md), with small ensembles for speed.
PAPER_OPTIONS: dict[str, dict[str, Any]] = {
    "map": {"weight_decay": "paper"},
    "mc_dropout": {"p": 0.5, "weight_decay": "paper"},
    "ensemble": {"num_members": 2, "epsilon": 0.01},
    "bbb": {"init_log_var": -9.0},
    "mnf": {"max_std": 0.5},
}


@pytest.mark.parametrize("name", sorted(PAPER_OPTIONS))
def test_baselines_step_on_lenet(name: str) -> None:
    torch.manual_seed(0)
    method = build(name, LeNet5(), **PAPER_OPTIONS[name])
    x, y = torch.rand(2, 784), torch.tensor([3, 7])
    loss, _ = method.loss(x, y, num_data=55_000)
    loss.backward()
    assert torch.isfinite(loss)
    assert method.predict_logits(x, 2).shape[1:] == (2, 10)
    if hasattr(method, "sample_weights"):
        assert method.sample_weights(2).shape == (2, 431_080)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(PAPER_OPTIONS))
@pytest.mark.parametrize("norm", ["batch", "instance"])
def test_baselines_step_on_the_cifar_resnet(name: str, norm: str) -> None:
    torch.manual_seed(0)
    final = name in ("map", "mc_dropout", "ensemble")  # the paper's extra final BN
    net = CifarResNet(norm=norm, final_norm=final)
    options = dict(PAPER_OPTIONS[name])
    if name == "mnf":
        options["deterministic"] = ["norm"]
    method = build(name, net, **options)
    x, y = torch.randn(4, 3, 24, 24), torch.tensor([0, 1, 2, 3])
    loss, _ = method.loss(x, y, num_data=25_000)
    loss.backward()
    assert torch.isfinite(loss)
    method.eval()
    assert method.predict_logits(x, 2).shape[1:] == (4, 5)
