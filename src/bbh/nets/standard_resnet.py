"""He et al.'s ResNets (2016) in their CIFAR form: ResNet-18 and ResNet-50 for 32x32 inputs.

``conv3x3(w) -> norm -> ReLU -> 4 stages (w, 2w, 4w, 8w channels; stages 2-4 start with stride 2)
-> global average pool -> dense(num_classes)``, with basic blocks (ResNet-18: 2, 2, 2, 2) or
bottleneck blocks (ResNet-50: 3, 4, 6, 3; 4x expansion). The CIFAR form keeps a 3x3 stem and no
max-pool, so a 32x32 input reaches the last stage at 4x4. With the default width 64 and 10 classes
ResNet-18 has 11,173,962 parameters and ResNet-50 23,520,842. Projection shortcuts (1x1 conv +
norm) where the shape changes; convolutions have no bias (the norm follows).

These are plain ``nn.Module``s used by the benchmarks to show how cost grows with the number of
weights (``width`` scales every stage). ``norm``: ``batch`` (``nn.BatchNorm2d`` with PyTorch's
defaults), ``instance`` (``GroupNorm(C, C)``: per-example statistics, no running statistics, so
the net runs under ``vmap``) or ``none``. Every ReLU is its own module so MC dropout can follow it.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from bbh.enums import Block
from bbh.nets.resnet import Norm
from bbh.options import parse_enum


def norm_layer(norm: Norm | str, channels: int) -> nn.Module:
    """BatchNorm with PyTorch's defaults, per-example ``GroupNorm(C, C)``, or nothing."""
    kind = parse_enum(Norm, norm, "norm")
    if kind is Norm.BATCH:
        return nn.BatchNorm2d(channels)
    if kind is Norm.INSTANCE:
        return nn.GroupNorm(channels, channels)
    return nn.Identity()


class BasicBlock(nn.Module):
    """``conv3x3 -> norm -> ReLU -> conv3x3 -> norm``, plus the shortcut, then ReLU."""

    expansion = 1

    def __init__(self, in_channels: int, channels: int, stride: int, norm: Norm | str):
        super().__init__()
        out = channels * self.expansion
        self.conv1 = nn.Conv2d(in_channels, channels, 3, stride, 1, bias=False)
        self.norm1 = norm_layer(norm, channels)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(channels, out, 3, 1, 1, bias=False)
        self.norm2 = norm_layer(norm, out)
        self.shortcut = _shortcut(in_channels, out, stride, norm)
        self.relu2 = nn.ReLU()

    def forward(self, x: Tensor) -> Tensor:
        """The block's output.

        Args:
            x: Feature maps ``[B, C, H, W]``.

        Returns:
            Feature maps ``[B, C', H / stride, W / stride]``.
        """
        h = self.relu1(self.norm1(self.conv1(x)))
        h = self.norm2(self.conv2(h))
        return self.relu2(h + self.shortcut(x))


class Bottleneck(nn.Module):
    """``conv1x1 -> norm -> ReLU -> conv3x3(stride) -> norm -> ReLU -> conv1x1(4x) -> norm``."""

    expansion = 4

    def __init__(self, in_channels: int, channels: int, stride: int, norm: Norm | str):
        super().__init__()
        out = channels * self.expansion
        self.conv1 = nn.Conv2d(in_channels, channels, 1, bias=False)
        self.norm1 = norm_layer(norm, channels)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(channels, channels, 3, stride, 1, bias=False)
        self.norm2 = norm_layer(norm, channels)
        self.relu2 = nn.ReLU()
        self.conv3 = nn.Conv2d(channels, out, 1, bias=False)
        self.norm3 = norm_layer(norm, out)
        self.shortcut = _shortcut(in_channels, out, stride, norm)
        self.relu3 = nn.ReLU()

    def forward(self, x: Tensor) -> Tensor:
        """The block's output.

        Args:
            x: Feature maps ``[B, C, H, W]``.

        Returns:
            Feature maps ``[B, 4 C', H / stride, W / stride]``.
        """
        h = self.relu1(self.norm1(self.conv1(x)))
        h = self.relu2(self.norm2(self.conv2(h)))
        h = self.norm3(self.conv3(h))
        return self.relu3(h + self.shortcut(x))


class ResNet(nn.Module):
    """A CIFAR-form ResNet; input ``[B, in_channels, H, W]`` (32x32 intended), logits ``[B, C]``.

    Args:
        block: ``basic`` (ResNet-18/34) or ``bottleneck`` (ResNet-50 and deeper).
        blocks_per_stage: blocks in each of the four stages.
        num_classes: output classes.
        width: channels of the stem and the first stage (64 in He et al.; smaller for tests and
            for the benchmarks' sweep over the number of weights D).
        in_channels: input channels.
        norm: ``batch``, ``instance`` or ``none`` (see the module docstring).
    """

    def __init__(
        self,
        block: Block | str,
        blocks_per_stage: Sequence[int],
        num_classes: int = 10,
        *,
        width: int = 64,
        in_channels: int = 3,
        norm: Norm | str = Norm.BATCH,
    ):
        super().__init__()
        kind = BasicBlock if parse_enum(Block, block, "block") is Block.BASIC else Bottleneck
        if len(blocks_per_stage) != 4 or any(n < 1 for n in blocks_per_stage):
            raise ValueError(f"blocks_per_stage must be 4 ints >= 1, got {blocks_per_stage!r}")
        if not isinstance(width, int) or width < 1:
            raise ValueError(f"width must be an int >= 1, got {width!r}")
        self.conv1 = nn.Conv2d(in_channels, width, 3, 1, 1, bias=False)
        self.norm1 = norm_layer(norm, width)
        self.relu = nn.ReLU()
        stages: list[nn.Module] = []
        channels_in = width
        for i, n in enumerate(blocks_per_stage):
            channels = width * 2**i
            blocks: list[nn.Module] = []
            for j in range(n):
                stride = 2 if (i > 0 and j == 0) else 1
                blocks.append(kind(channels_in, channels, stride, norm))
                channels_in = channels * kind.expansion
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.Sequential(*stages)
        self.fc = nn.Linear(channels_in, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        """Logits ``[B, C]`` of images.

        Args:
            x: Images ``[B, C_in, H, W]``.

        Returns:
            Logits ``[B, C]``.
        """
        h = self.stages(self.relu(self.norm1(self.conv1(x))))
        return self.fc(h.mean(dim=(2, 3)))


def resnet18(num_classes: int = 10, **options: object) -> ResNet:
    """ResNet-18 (basic blocks 2-2-2-2): 11.2M parameters at width 64 with 10 classes.

    Args:
        num_classes: The output classes.
        **options: ``ResNet``'s other options (``width``, ``in_channels``, ``norm``).

    Returns:
        The net.
    """
    return ResNet(Block.BASIC, (2, 2, 2, 2), num_classes, **options)  # type: ignore[arg-type]


def resnet50(num_classes: int = 10, **options: object) -> ResNet:
    """ResNet-50 (bottleneck blocks 3-4-6-3): 23.5M parameters at width 64 with 10 classes.

    Args:
        num_classes: The output classes.
        **options: ``ResNet``'s other options (``width``, ``in_channels``, ``norm``).

    Returns:
        The net.
    """
    return ResNet(Block.BOTTLENECK, (3, 4, 6, 3), num_classes, **options)  # type: ignore[arg-type]


def _shortcut(in_channels: int, out_channels: int, stride: int, norm: Norm | str) -> nn.Module:
    if stride == 1 and in_channels == out_channels:
        return nn.Identity()
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 1, stride, bias=False),
        norm_layer(norm, out_channels),
    )
