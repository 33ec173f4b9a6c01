"""The paper's CIFAR-5 pre-activation ResNet (arXiv 1711.01297; the paper's code,
pawni/BayesByHypernet, ``networks.get_*_cifar_resnet``).

``conv3x3(16) -> 3 scales x 5 pre-activation units (16, 32, 64 channels, first unit of each scale
with stride 2) -> [BN] -> ReLU -> global average pool -> dense(num_classes)``. All convolutions have
biases. The conv and dense layers hold D = 462,693 parameters (64 tensors); normalisation layers
add their affine parameters on top.

Norm options (``norm``):

- ``batch``: ``BatchNorm2d(eps=1e-3, momentum=0.01)`` (TF defaults); the paper's layer-wise BbH.
  The paper calls BN in training mode also at test time; here the caller's ``train()``/``eval()``
  decides.
- ``instance``: per-example statistics over (H, W) per channel with shared affine parameters
  (``GroupNorm(C, C)``), which is the paper's ``virtual_batch_size=1`` used by all baselines; it
  has no running statistics, so it behaves the same in train and eval mode and works under vmap.
- ``none``: no normalisation.

``final_norm=True`` adds the extra normalisation before the head's ReLU (the paper's MAP, MC
dropout and ensemble nets); BbH, BbB and MNF use ``final_norm=False``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch.nn.functional as F
from torch import Tensor, nn

from bbh.enums import Norm


def make_norm(norm: Norm | str, channels: int) -> nn.Module:
    """A normalisation layer for ``channels`` feature maps (see the module docstring)."""
    try:
        kind = Norm(norm)
    except ValueError:
        raise ValueError(f"unknown norm {norm!r}; allowed: {[n.value for n in Norm]}") from None
    if kind is Norm.BATCH:
        return nn.BatchNorm2d(channels, eps=1e-3, momentum=0.01)
    if kind is Norm.INSTANCE:
        return nn.GroupNorm(channels, channels, eps=1e-3)
    return nn.Identity()


class PreActUnit(nn.Module):
    """``norm -> ReLU -> conv3x3(stride) -> norm -> ReLU -> conv3x3`` plus a parameter-free skip.

    The shortcut average-pools (kernel = stride) when strided and zero-pads the channels
    (floor/ceil split) when ``out_channels > in_channels``.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int, norm: Norm | str):
        super().__init__()
        if out_channels < in_channels:
            raise ValueError("PreActUnit cannot reduce channels with a parameter-free shortcut")
        self.stride = stride
        self.pad = out_channels - in_channels
        self.norm1 = make_norm(norm, in_channels)
        self.relu1 = nn.ReLU()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1)
        self.norm2 = make_norm(norm, out_channels)
        self.relu2 = nn.ReLU()
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        """The unit's output: its residual branch plus the (pooled, padded) shortcut.

        Args:
            x: Feature maps ``[B, C, H, W]``.

        Returns:
            Feature maps ``[B, C', H / stride, W / stride]``.
        """
        shortcut = x
        if self.stride != 1:
            shortcut = F.avg_pool2d(shortcut, self.stride, self.stride)
        if self.pad:
            shortcut = F.pad(shortcut, (0, 0, 0, 0, self.pad // 2, self.pad - self.pad // 2))
        h = self.conv1(self.relu1(self.norm1(x)))
        h = self.conv2(self.relu2(self.norm2(h)))
        return h + shortcut


class CifarResNet(nn.Module):
    """Pre-activation ResNet; input ``[B, 3, 24, 24]`` (any size works), logits ``[B, classes]``.

    Args:
        num_classes: The output classes.
        norm: ``batch``, ``instance`` or ``none`` (see the module docstring).
        final_norm: A normalisation layer before the final ReLU.
        filters: The stem's channels, then each scale's.
        strides: The stem's stride, then each scale's first unit's.
        units_per_scale: Residual units per scale.
        in_channels: The input channels.

    Raises:
        ValueError: ``filters`` and ``strides`` differ in length or have fewer than 2 entries.
    """

    def __init__(
        self,
        num_classes: int = 5,
        *,
        norm: Norm | str = Norm.INSTANCE,
        final_norm: bool = False,
        filters: Sequence[int] = (16, 16, 32, 64),
        strides: Sequence[int] = (1, 2, 2, 2),
        units_per_scale: int = 5,
        in_channels: int = 3,
    ):
        super().__init__()
        if len(filters) != len(strides) or len(filters) < 2:
            raise ValueError("filters and strides must have the same length >= 2")
        self.conv1 = nn.Conv2d(in_channels, filters[0], 3, stride=strides[0], padding=1)
        units: list[nn.Module] = []
        for i in range(1, len(filters)):
            for j in range(units_per_scale):
                cin = filters[i - 1] if j == 0 else filters[i]
                units.append(PreActUnit(cin, filters[i], strides[i] if j == 0 else 1, norm))
        self.units = nn.Sequential(*units)
        self.final_norm = make_norm(norm, filters[-1]) if final_norm else nn.Identity()
        self.relu = nn.ReLU()
        self.fc = nn.Linear(filters[-1], num_classes)

    def forward(self, x: Tensor) -> Tensor:
        """Logits ``[B, C]`` of images.

        Args:
            x: Images ``[B, C_in, H, W]``.

        Returns:
            Logits ``[B, C]``.
        """
        h = self.units(self.conv1(x))
        h = self.relu(self.final_norm(h))
        return self.fc(h.mean(dim=(2, 3)))
