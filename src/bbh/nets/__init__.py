"""Primary networks: plain ``nn.Module``s with no Bayesian machinery."""

from bbh.nets.convnet import TinyConvNet
from bbh.nets.lenet import LeNet5
from bbh.nets.mlp import MLP, toy_regression_net
from bbh.nets.resnet import CifarResNet, Norm
from bbh.nets.standard_resnet import ResNet, resnet18, resnet50

__all__ = [
    "MLP",
    "CifarResNet",
    "LeNet5",
    "Norm",
    "ResNet",
    "TinyConvNet",
    "resnet18",
    "resnet50",
    "toy_regression_net",
]
