"""Batched tensor transforms: the paper's CIFAR preprocessing (the paper's code,
pawni/BayesByHypernet, ``networks.get_cifar_image``; the TF CIFAR-10 tutorial's).

All functions take a whole batch ``[B, C, H, W]`` and draw one random number per image from an
optional ``torch.Generator`` (on the CPU; results move to the batch's device), so augmentation
costs a few tensor operations per batch rather than a Python loop over images.

Pixel values follow the TF CIFAR-10 tutorial the paper used: uint8 images are cast to float on
the 0..255 scale (not divided by 255), so the brightness ``max_delta=63`` is in pixel units, and
per-image standardisation comes last.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

#: The paper's CIFAR crop size, padding and colour-jitter ranges (TF CIFAR-10 tutorial style).
CIFAR_CROP = 24
CIFAR_PADDING = 2
CIFAR_MAX_BRIGHTNESS_DELTA = 63.0
CIFAR_CONTRAST_RANGE = (0.2, 1.8)


def to_unit_float(x: Tensor) -> Tensor:
    """uint8 ``[...]`` in 0..255 -> float32 in [0, 1]; float input is returned as it is.

    Args:
        x: A tensor of any shape, uint8 or floating.

    Returns:
        A float32 copy scaled to [0, 1], or ``x`` itself if it is floating.
    """
    return x if x.is_floating_point() else x.float().div_(255.0)


def per_image_standardize(x: Tensor) -> Tensor:
    """``(x - mean) / max(std, 1 / sqrt(C*H*W))`` per image, as TF ``per_image_standardization``.

    Out of place, so that attacks can differentiate through it.

    Args:
        x: Images ``[B, C, H, W]``; uint8 is cast to float32 on the 0..255 scale.

    Returns:
        The standardised images, floating, of the shape of ``x``.
    """
    x = x if x.is_floating_point() else x.float()
    flat = x.reshape(x.shape[0], -1)
    centred = flat - flat.mean(dim=1, keepdim=True)
    std = centred.square().mean(dim=1, keepdim=True).sqrt()
    return (centred / std.clamp_min(1.0 / math.sqrt(flat.shape[1]))).reshape(x.shape)


def center_crop(x: Tensor, size: int) -> Tensor:
    """The central ``size x size`` window of each image (offset ``(H - size) // 2``).

    Args:
        x: Images ``[..., H, W]``.
        size: The side of the window.

    Returns:
        A view ``[..., size, size]`` of ``x``.

    Raises:
        ValueError: ``size`` is larger than H or W.
    """
    h, w = x.shape[-2:]
    if size > h or size > w:
        raise ValueError(f"crop size {size} is larger than the images ({h}x{w})")
    top, left = (h - size) // 2, (w - size) // 2
    return x[..., top : top + size, left : left + size]


def random_crop(
    x: Tensor, size: int, *, padding: int = 0, generator: torch.Generator | None = None
) -> Tensor:
    """Zero-pad by ``padding`` on each side, then take a random ``size x size`` window per image.

    Args:
        x: Images ``[B, C, H, W]``.
        size: The side of the window.
        padding: Zeros added on each side before cropping.
        generator: Draws the windows' offsets (on the CPU); None: the global generator.

    Returns:
        The crops ``[B, C, size, size]``.

    Raises:
        ValueError: ``size`` is larger than the padded images.
    """
    if padding:
        x = F.pad(x, (padding, padding, padding, padding))
    b, c, h, w = x.shape
    if size > h or size > w:
        raise ValueError(f"crop size {size} is larger than the padded images ({h}x{w})")
    top = torch.randint(0, h - size + 1, (b,), generator=generator).to(x.device)
    left = torch.randint(0, w - size + 1, (b,), generator=generator).to(x.device)
    offsets = torch.arange(size, device=x.device)
    rows = top[:, None] + offsets  # [B, size]
    cols = left[:, None] + offsets  # [B, size]
    flat_index = (rows[:, :, None] * w + cols[:, None, :]).reshape(b, 1, size * size)
    out = torch.gather(x.reshape(b, c, h * w), 2, flat_index.expand(b, c, size * size))
    return out.reshape(b, c, size, size)


def random_horizontal_flip(
    x: Tensor, *, p: float = 0.5, generator: torch.Generator | None = None
) -> Tensor:
    """Mirror each image left-right with probability ``p``.

    Args:
        x: Images ``[B, C, H, W]``.
        p: The probability of mirroring an image.
        generator: Draws the coin flips (on the CPU); None: the global generator.

    Returns:
        The images, each mirrored or as it was, of the shape of ``x``.
    """
    flip = (torch.rand(x.shape[0], generator=generator) < p).to(x.device)
    return torch.where(flip[:, None, None, None], x.flip(-1), x)


def random_brightness(
    x: Tensor, max_delta: float, *, generator: torch.Generator | None = None
) -> Tensor:
    """Add one ``delta ~ U[-max_delta, max_delta]`` per image (float, no clipping, as TF).

    Args:
        x: Images ``[B, C, H, W]``; uint8 is cast to float32 on the 0..255 scale.
        max_delta: The largest shift, in the pixels' units.
        generator: Draws the shifts (on the CPU); None: the global generator.

    Returns:
        The shifted images, floating, of the shape of ``x``.
    """
    x = x if x.is_floating_point() else x.float()
    delta = (torch.rand(x.shape[0], generator=generator) * 2.0 - 1.0) * max_delta
    return x + delta.to(x.device, x.dtype)[:, None, None, None]


def random_contrast(
    x: Tensor, lower: float, upper: float, *, generator: torch.Generator | None = None
) -> Tensor:
    """Scale each image's deviations from its per-channel mean by ``f ~ U[lower, upper]``.

    Args:
        x: Images ``[B, C, H, W]``; uint8 is cast to float32 on the 0..255 scale.
        lower: The smallest factor.
        upper: The largest factor.
        generator: Draws the factors (on the CPU); None: the global generator.

    Returns:
        The images, floating, of the shape of ``x``.
    """
    x = x if x.is_floating_point() else x.float()
    factor = torch.rand(x.shape[0], generator=generator) * (upper - lower) + lower
    factor = factor.to(x.device, x.dtype)[:, None, None, None]
    mean = x.reshape(*x.shape[:2], -1).mean(dim=2)[..., None, None]
    return (x - mean) * factor + mean


def cifar_train_augment(
    x: Tensor,
    generator: torch.Generator | None = None,
    *,
    crop_size: int | None = CIFAR_CROP,
    padding: int = CIFAR_PADDING,
    max_brightness_delta: float = CIFAR_MAX_BRIGHTNESS_DELTA,
    contrast_range: tuple[float, float] = CIFAR_CONTRAST_RANGE,
) -> Tensor:
    """The paper's CIFAR training augmentation on a batch.

    Steps: zero-pad by ``padding`` (32 -> 36) and random ``crop_size`` crop, random horizontal
    flip, random brightness, random contrast, per-image standardisation.

    Args:
        x: Images uint8 (or 0..255 float) ``[B, 3, 32, 32]``.
        generator: Draws every random choice (on the CPU); None: the global generator.
        crop_size: The side of the random crop; None trains at full size (no padding, no crop).
        padding: Zeros added on each side before the crop.
        max_brightness_delta: The largest brightness shift (``random_brightness``).
        contrast_range: The ``(lower, upper)`` contrast factors (``random_contrast``).

    Returns:
        Float32 images ``[B, 3, crop_size, crop_size]`` (``[B, 3, 32, 32]`` with no crop).
    """
    if crop_size is not None:
        x = random_crop(x, crop_size, padding=padding, generator=generator)
    x = random_horizontal_flip(x, generator=generator)
    x = random_brightness(x, max_brightness_delta, generator=generator)
    x = random_contrast(x, *contrast_range, generator=generator)
    return per_image_standardize(x)


def cifar_eval_transform(x: Tensor, *, crop_size: int | None = CIFAR_CROP) -> Tensor:
    """The paper's CIFAR evaluation preprocessing: central crop, then per-image standardisation.

    Args:
        x: Images uint8 ``[B, 3, 32, 32]``.
        crop_size: The side of the central crop; None keeps 32x32.

    Returns:
        Float32 images ``[B, 3, crop_size, crop_size]``.

    Raises:
        ValueError: ``crop_size`` is larger than the images.
    """
    if crop_size is not None:
        x = center_crop(x, crop_size)
    return per_image_standardize(x)
