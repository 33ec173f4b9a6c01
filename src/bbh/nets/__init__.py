"""Primary networks: plain ``nn.Module``s with no Bayesian machinery.

``NETS`` maps the names an experiment config uses (``net.name``) to their factories, so that the
config checks and the builders look nets up in one place below both.
"""

from collections.abc import Callable

from torch import nn

from bbh.nets.convnet import TinyConvNet
from bbh.nets.lenet import LeNet5
from bbh.nets.mlp import MLP, toy_regression_net
from bbh.nets.resnet import CifarResNet, Norm
from bbh.nets.standard_resnet import ResNet, resnet18, resnet50

#: net name (a config's ``net.name``) -> factory(**options)
NETS: dict[str, Callable[..., nn.Module]] = {
    "lenet5": LeNet5,
    "cifar_resnet": CifarResNet,
    "mlp": MLP,
    "tiny_conv": TinyConvNet,
}

__all__ = [
    "MLP",
    "NETS",
    "CifarResNet",
    "LeNet5",
    "Norm",
    "ResNet",
    "TinyConvNet",
    "resnet18",
    "resnet50",
    "toy_regression_net",
]
