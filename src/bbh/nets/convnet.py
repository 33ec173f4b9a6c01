"""A tiny convolutional net for tests and quick experiments (not from the paper)."""

from __future__ import annotations

from torch import Tensor, nn


class TinyConvNet(nn.Module):
    """``conv3x3(c) -> ReLU -> maxpool2 -> conv3x3(2c) -> ReLU -> global avg pool -> dense``.

    Input ``[B, in_channels, H, W]`` (any H, W >= 4), logits ``[B, num_classes]``.

    Args:
        in_channels: The input channels.
        num_classes: The output classes.
        channels: c, the first convolution's channels.
    """

    def __init__(self, in_channels: int = 1, num_classes: int = 4, channels: int = 4):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, channels, 3, padding=1)
        self.relu1 = nn.ReLU()
        self.pool = nn.MaxPool2d(2)
        self.conv2 = nn.Conv2d(channels, 2 * channels, 3, padding=1)
        self.relu2 = nn.ReLU()
        self.fc = nn.Linear(2 * channels, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        """Logits ``[B, C]`` of images ``[B, C_in, H, W]``.

        Args:
            x: Images ``[B, C_in, H, W]``.

        Returns:
            Logits ``[B, C]``.
        """
        x = self.pool(self.relu1(self.conv1(x)))
        x = self.relu2(self.conv2(x))
        return self.fc(x.mean(dim=(2, 3)))
