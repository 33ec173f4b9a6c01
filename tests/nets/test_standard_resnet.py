"""He et al.'s ResNets in CIFAR form: the standard parameter counts, shapes, widths and norms."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from bbh.functional import ParamSpec, has_running_stats, sampled_forward
from bbh.nets import ResNet, resnet18, resnet50


def test_resnet18_and_50_have_the_standard_parameter_counts() -> None:
    with torch.device("meta"):  # counts only: no memory, no init time
        assert sum(p.numel() for p in resnet18().parameters()) == 11_173_962
        assert sum(p.numel() for p in resnet50().parameters()) == 23_520_842


@pytest.mark.parametrize("make", [resnet18, resnet50])
def test_narrow_resnets_run_on_32x32_inputs(make) -> None:
    net = make(7, width=2).eval()
    assert net(torch.randn(2, 3, 32, 32)).shape == (2, 7)


def test_instance_norm_resnet18_has_no_running_stats_and_runs_under_vmap() -> None:
    torch.manual_seed(0)
    net = resnet18(3, width=2, norm="instance")
    assert not any(isinstance(m, nn.BatchNorm2d) for m in net.modules())
    assert not has_running_stats(net)
    spec = ParamSpec.from_module(net)
    params = spec.unflatten(spec.from_module_values(net).expand(2, -1))
    x = torch.randn(3, 3, 16, 16)
    out = sampled_forward(net, params, x, mode="vmap")
    torch.testing.assert_close(out[1], net(x), rtol=1e-4, atol=1e-5)


def test_bad_resnet_options() -> None:
    with pytest.raises(ValueError, match="unknown block"):
        ResNet("wide", (2, 2, 2, 2))
    with pytest.raises(ValueError, match="blocks_per_stage"):
        ResNet("basic", (2, 2, 2))
    with pytest.raises(ValueError, match="width"):
        resnet18(width=0)
    with pytest.raises(ValueError, match="unknown norm"):
        resnet18(norm="layer")
