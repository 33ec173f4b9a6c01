"""The paper's primary networks: parameter counts and shapes (the paper's ``networks.py``)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from bbh.nets.convnet import TinyConvNet
from bbh.nets.lenet import LeNet5
from bbh.nets.resnet import CifarResNet


def count(module: nn.Module, types: tuple[type[nn.Module], ...] = (nn.Module,)) -> int:
    return sum(
        p.numel()
        for m in module.modules()
        if isinstance(m, types)
        for p in m.parameters(recurse=False)
    )


def test_lenet_has_the_papers_431080_parameters_and_takes_both_input_shapes() -> None:
    net = LeNet5()
    assert count(net) == 431_080
    assert len(list(net.parameters())) == 8
    x = torch.rand(3, 1, 28, 28)
    torch.testing.assert_close(net(x), net(x.reshape(3, 784)))
    assert net(x).shape == (3, 10)


@pytest.mark.parametrize("norm", ["batch", "instance", "none"])
def test_resnet_conv_and_dense_layers_hold_462693_parameters(norm: str) -> None:
    net = CifarResNet(norm=norm)
    assert count(net, (nn.Conv2d, nn.Linear)) == 462_693
    tensors = [
        p
        for m in net.modules()
        if isinstance(m, (nn.Conv2d, nn.Linear))
        for p in m.parameters(recurse=False)
    ]
    assert len(tensors) == 64
    net.eval()
    assert net(torch.randn(2, 3, 24, 24)).shape == (2, 5)


def test_resnet_final_norm_and_norm_kinds() -> None:
    plain = CifarResNet(norm="instance")
    final = CifarResNet(norm="instance", final_norm=True)
    assert count(final) - count(plain) == 2 * 64
    assert any(isinstance(m, nn.BatchNorm2d) for m in CifarResNet(norm="batch").modules())
    assert not any(isinstance(m, nn.BatchNorm2d) for m in CifarResNet(norm="instance").modules())
    with pytest.raises(ValueError, match="unknown norm"):
        CifarResNet(norm="layer")


def test_resnet_instance_norm_is_per_example() -> None:
    net = CifarResNet(norm="instance").eval()
    x = torch.randn(4, 3, 24, 24)
    torch.testing.assert_close(net(x)[:1], net(x[:1]))


def test_resnet_spatial_sizes_halve_per_scale() -> None:
    net = CifarResNet()
    sizes = []
    net.units[0].register_forward_hook(lambda m, i, o: sizes.append(o.shape[-1]))
    net.units[5].register_forward_hook(lambda m, i, o: sizes.append(o.shape[-1]))
    net.units[10].register_forward_hook(lambda m, i, o: sizes.append(o.shape[-1]))
    net(torch.randn(1, 3, 24, 24))
    assert sizes == [12, 6, 3]


def test_tiny_conv_net() -> None:
    net = TinyConvNet(in_channels=3, num_classes=4)
    assert net(torch.randn(2, 3, 8, 8)).shape == (2, 4)
