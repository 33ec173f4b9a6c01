"""The paper's MNIST network, a LeNet-5-like convolutional net (arXiv 1711.01297; the paper's
code, pawni/BayesByHypernet, ``networks.get_*_mnist``).

``conv5x5(20, VALID) -> ReLU -> maxpool2 -> conv5x5(50, VALID) -> ReLU -> maxpool2 -> flatten(800)
-> dense 500 -> ReLU -> dense 10``; D = 431,080 parameters. The ReLUs are separate modules
(``relu1``, ``relu2``, ``relu3``) so that MC dropout can insert its dropout after them, where the
paper put it. The flatten uses PyTorch's (C, H, W) order, not TF's (H, W, C); this matters only
when porting TF weights.
"""

from __future__ import annotations

import torch.fx
from torch import Tensor, nn


def as_images(x: Tensor, channels: int) -> Tensor:
    """``[B, 784 * channels]`` -> ``[B, channels, 28, 28]``; other shapes pass unchanged."""
    return x.reshape(x.shape[0], channels, 28, 28) if x.dim() == 2 else x


torch.fx.wrap("as_images")  # one opaque call for torch.fx (bbh.trunk), not a branch on a shape


class LeNet5(nn.Module):
    """LeNet-5-like net; input ``[B, 1, 28, 28]`` or ``[B, 784]``, logits ``[B, num_classes]``.

    Args:
        num_classes: The output classes.
        in_channels: The input channels.
    """

    def __init__(self, num_classes: int = 10, in_channels: int = 1):
        super().__init__()
        self.in_channels = in_channels
        self.conv1 = nn.Conv2d(in_channels, 20, 5)
        self.relu1 = nn.ReLU()
        self.pool1 = nn.MaxPool2d(2)
        self.conv2 = nn.Conv2d(20, 50, 5)
        self.relu2 = nn.ReLU()
        self.pool2 = nn.MaxPool2d(2)
        self.fc1 = nn.Linear(4 * 4 * 50, 500)
        self.relu3 = nn.ReLU()
        self.fc2 = nn.Linear(500, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        """Logits ``[B, C]`` of images (flat vectors are reshaped to images).

        Args:
            x: Images ``[B, C_in, 28, 28]`` or flat ``[B, C_in * 784]``.

        Returns:
            Logits ``[B, C]``.
        """
        x = as_images(x, self.in_channels)
        x = self.pool1(self.relu1(self.conv1(x)))
        x = self.pool2(self.relu2(self.conv2(x)))
        x = self.relu3(self.fc1(x.flatten(1)))
        return self.fc2(x)
