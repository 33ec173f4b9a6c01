"""Shifted test sets: rotated images and the common corruptions, as pure functions on batches.

The test of whether a user can trust a model's uncertainty is how it degrades under dataset
shift (Ovadia et al., "Can you trust your model's uncertainty? Evaluating predictive uncertainty
under dataset shift", NeurIPS 2019): rotated MNIST and images under the corruptions of Hendrycks
and Dietterich ("Benchmarking neural network robustness to common corruptions and
perturbations", ICLR 2019) at five severities.

- ``rotate(images, angle)``: bilinear rotation about the image centre with zero padding, written
  with ``affine_grid``/``grid_sample`` (the convention of ``bbh.evaluation.rotate_images``).
- ``corrupt(images, corruption, severity, seed=...)``: the published CIFAR-10-C definitions
  (their ``make_cifar_c.py``, parameters for 32x32 images) written in torch, for the subset in
  ``CORRUPTIONS`` (10 of the 15 benchmark corruptions) and ``EXTRA_CORRUPTIONS`` (3 of the 4
  held-out ones). Left out: glass blur (a sequential per-pixel shuffle), motion blur and snow
  (ImageMagick's motion blur), frost (photographs shipped with the benchmark), elastic
  transform and spatter (OpenCV pipelines). The ``imagecorruptions`` package was not used: it
  fails to import without ``pkg_resources`` and three of its corruptions fail with current
  scikit-image and NumPy 2, and its parameters are ImageNet-C's, not CIFAR-10-C's.
  ``jpeg_compression`` needs Pillow (the ``images`` extra).

Images are ``[N, C, H, W]`` (C = 1 or 3) in pixel space: uint8 in 0..255, or floating in
[0, 1]; every function returns the dtype it was given (uint8 truncated as the benchmark's
``np.uint8`` cast does). Random corruptions draw from a ``torch.Generator`` seeded with
``seed``: the same images, corruption, severity and seed give the same output, and the
severities of one corruption share their random numbers.
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "CORRUPTIONS",
    "EXTRA_CORRUPTIONS",
    "ROTATION_ANGLES",
    "SEVERITIES",
    "Shift",
    "corrupt",
    "corruption_shifts",
    "rotate",
    "rotation_shifts",
]

#: Rotated MNIST's angles (degrees): 0 to 180 every 15 (Ovadia et al. 2019 use 0-180).
ROTATION_ANGLES: tuple[float, ...] = tuple(float(a) for a in range(0, 181, 15))
#: The corruption severities of Hendrycks and Dietterich (2019).
SEVERITIES: tuple[int, ...] = (1, 2, 3, 4, 5)
#: The benchmark corruptions implemented here, in the benchmark's order.
CORRUPTIONS: tuple[str, ...] = (
    "gaussian_noise",
    "shot_noise",
    "impulse_noise",
    "defocus_blur",
    "zoom_blur",
    "fog",
    "brightness",
    "contrast",
    "pixelate",
    "jpeg_compression",
)
#: Held-out corruptions of the benchmark implemented here (``saturate`` is not monotone in
#: severity: severities 1-2 remove saturation, 3-5 add it).
EXTRA_CORRUPTIONS: tuple[str, ...] = ("speckle_noise", "gaussian_blur", "saturate")

# CIFAR-10-C's parameters per severity 1..5 (make_cifar_c.py)
_PARAMS: dict[str, tuple[Any, ...]] = {
    "gaussian_noise": (0.04, 0.06, 0.08, 0.09, 0.10),
    "shot_noise": (500, 250, 100, 75, 50),
    "impulse_noise": (0.01, 0.02, 0.03, 0.05, 0.07),
    "speckle_noise": (0.06, 0.1, 0.12, 0.16, 0.2),
    "gaussian_blur": (0.4, 0.6, 0.7, 0.8, 1.0),
    "defocus_blur": ((0.3, 0.4), (0.4, 0.5), (0.5, 0.6), (1.0, 0.2), (1.5, 0.1)),
    "zoom_blur": (1.06, 1.11, 1.16, 1.21, 1.26),
    "fog": ((0.2, 3.0), (0.5, 3.0), (0.75, 2.5), (1.0, 2.0), (1.5, 1.75)),
    "brightness": (0.05, 0.1, 0.15, 0.2, 0.3),
    "contrast": (0.75, 0.5, 0.4, 0.3, 0.15),
    "saturate": ((0.3, 0.0), (0.1, 0.0), (1.5, 0.0), (2.0, 0.1), (2.5, 0.2)),
    "pixelate": (0.95, 0.9, 0.85, 0.75, 0.65),
    "jpeg_compression": (80, 65, 58, 50, 40),
}


@dataclass(frozen=True)
class Shift:
    """One shifted version of a test set: a rotation by ``intensity`` degrees, or a corruption at
    severity ``intensity``.

    Args:
        kind: ``"rotation"`` or a corruption name (``CORRUPTIONS``, ``EXTRA_CORRUPTIONS``).
        intensity: The angle in degrees, or the severity 1-5.
    """

    kind: str
    intensity: float

    def __post_init__(self) -> None:
        if self.kind != "rotation":
            _params(self.kind, self.intensity)  # validates the name and the severity

    @property
    def name(self) -> str:
        """``kind`` and ``intensity`` as one label, e.g. ``rotation_45`` or ``fog_3``."""
        return f"{self.kind}_{self.intensity:g}"

    def apply(self, images: Tensor, *, seed: int = 0) -> Tensor:
        """The shifted images.

        Args:
            images: ``[N, C, H, W]`` in pixel space (uint8, or floating in [0, 1]); rotation
                also takes ``[N, H, W]`` and flat square ``[N, H * W]``.
            seed: Seeds a random corruption.

        Returns:
            The shifted images, of the shape and dtype of ``images``.
        """
        if self.kind == "rotation":
            return rotate(images, self.intensity)
        return corrupt(images, self.kind, int(self.intensity), seed=seed)


def rotation_shifts(angles: Sequence[float] = ROTATION_ANGLES) -> list[Shift]:
    """Rotated MNIST's shifts, one per angle.

    Args:
        angles: The angles in degrees (counter-clockwise).

    Returns:
        ``[Shift("rotation", a) for a in angles]``.

    Raises:
        ValueError: ``angles`` is empty.
    """
    if len(angles) == 0:
        raise ValueError("angles must not be empty")
    return [Shift("rotation", float(a)) for a in angles]


def corruption_shifts(
    corruptions: Sequence[str] = CORRUPTIONS, severities: Sequence[int] = SEVERITIES
) -> list[Shift]:
    """Every corruption at every severity (corruption-major order).

    Args:
        corruptions: Names from ``CORRUPTIONS`` or ``EXTRA_CORRUPTIONS``.
        severities: Severities in 1-5.

    Returns:
        The ``Shift`` list.

    Raises:
        ValueError: A name is unknown, a severity is outside 1-5, or a list is empty.
    """
    if len(corruptions) == 0 or len(severities) == 0:
        raise ValueError("corruptions and severities must not be empty")
    return [Shift(c, float(s)) for c in corruptions for s in severities]


def rotate(images: Tensor, angle: float) -> Tensor:
    """Every image rotated by ``angle`` degrees counter-clockwise (as displayed) about its centre,
    bilinear, zero outside the image.

    Args:
        images: ``[N, C, H, W]``, ``[N, H, W]`` or flat square ``[N, H * W]``; uint8 or floating.
        angle: Degrees, counter-clockwise.

    Returns:
        The rotated images, of the shape and dtype of ``images`` (uint8 rounded).

    Raises:
        ValueError: ``images`` has no image shape.
        TypeError: ``images`` is neither floating nor uint8.
    """
    x, restore = _as_float_nchw(images, "images")
    n, c, h, w = x.shape
    rad = math.radians(float(angle))
    cos, sin = math.cos(rad), math.sin(rad)
    # output pixel p (x right, y down, centred) samples the input at R p, in pixel units
    sx, sy = max(w - 1, 1) / 2, max(h - 1, 1) / 2
    theta = torch.tensor(
        [[cos, -sin * sy / sx, 0.0], [sin * sx / sy, cos, 0.0]], dtype=x.dtype, device=x.device
    ).expand(n, 2, 3)
    grid = F.affine_grid(theta, [n, c, h, w], align_corners=True)
    out = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=True)
    return restore(out, rounding=True)


def corrupt(images: Tensor, corruption: str, severity: int, *, seed: int = 0) -> Tensor:
    """``images`` under one of Hendrycks and Dietterich's corruptions (CIFAR-10-C definitions).

    Args:
        images: ``[N, C, H, W]`` with C = 1 or 3 (``saturate``: 3), uint8 in 0..255 or floating
            in [0, 1].
        corruption: A name from ``CORRUPTIONS`` or ``EXTRA_CORRUPTIONS``.
        severity: 1 (mild) to 5 (severe).
        seed: Seeds the random corruptions (the noises and fog).

    Returns:
        The corrupted images in [0, 1] (or 0..255), of the shape and dtype of ``images``.

    Raises:
        ValueError: The name or severity is unknown, or ``images`` is not ``[N, C, H, W]`` with
            C = 1 or 3.
        TypeError: ``images`` is neither floating nor uint8.
        ImportError: ``jpeg_compression`` without Pillow (the ``images`` extra).
    """
    c = _params(corruption, severity)
    x, restore = _as_float_nchw(images, "images", channels_first=True)
    if x.shape[1] not in (1, 3) or (corruption == "saturate" and x.shape[1] != 3):
        need = "3 (RGB)" if corruption == "saturate" else "1 or 3"
        raise ValueError(f"{corruption} needs images with {need} channels, got {x.shape[1]}")
    gen = torch.Generator().manual_seed(int(seed))
    out = _CORRUPT[corruption](x, c, gen)
    return restore(out.clamp(0.0, 1.0), rounding=False)


def _params(corruption: str, severity: float) -> Any:
    if corruption not in _PARAMS:
        known = ", ".join((*CORRUPTIONS, *EXTRA_CORRUPTIONS))
        raise ValueError(f"unknown corruption {corruption!r}; known: {known}")
    if severity not in SEVERITIES:
        raise ValueError(f"severity must be one of 1-5, got {severity!r}")
    return _PARAMS[corruption][int(severity) - 1]


def _as_float_nchw(
    images: Tensor, name: str, *, channels_first: bool = False
) -> tuple[Tensor, Callable[..., Tensor]]:
    """``images`` as floating ``[N, C, H, W]`` in [0, 1] and a function that maps a result back
    to the given shape and dtype."""
    if not isinstance(images, Tensor) or not (
        images.is_floating_point() or images.dtype == torch.uint8
    ):
        what = images.dtype if isinstance(images, Tensor) else type(images).__name__
        raise TypeError(f"{name} must be a floating or uint8 tensor, got {what}")
    shape, dtype = images.shape, images.dtype
    x = images.float() / 255.0 if dtype == torch.uint8 else images
    if x.dim() == 4:
        nchw = x
    elif x.dim() == 3 and not channels_first:
        nchw = x.unsqueeze(1)
    elif x.dim() == 2 and not channels_first and math.isqrt(x.shape[1]) ** 2 == x.shape[1]:
        side = math.isqrt(x.shape[1])
        nchw = x.reshape(x.shape[0], 1, side, side)
    else:
        want = "[N, C, H, W]" if channels_first else "[N, C, H, W], [N, H, W] or [N, H*W] (square)"
        raise ValueError(f"{name} must be {want}, got {tuple(shape)}")

    def restore(out: Tensor, *, rounding: bool) -> Tensor:
        out = out.reshape(shape)
        if dtype != torch.uint8:
            return out.to(dtype)
        scaled = out.clamp(0.0, 1.0) * 255.0
        return (scaled.round() if rounding else scaled.floor()).to(torch.uint8)

    return nchw, restore


# /////////////// the corruptions: x [N, C, H, W] float in [0, 1], parameters, generator


def _gaussian_noise(x: Tensor, c: Any, gen: torch.Generator) -> Tensor:
    return x + float(c) * _randn(x, gen)


def _shot_noise(x: Tensor, c: Any, gen: torch.Generator) -> Tensor:
    lam = float(c)
    return torch.poisson((x * lam).double(), generator=gen).to(x.dtype) / lam


def _impulse_noise(x: Tensor, c: Any, gen: torch.Generator) -> Tensor:
    # skimage.util.random_noise(mode="s&p", amount=c): each value independently, salt = pepper
    flipped = _rand(x, gen) <= float(c)
    salted = _rand(x, gen) <= 0.5
    return torch.where(flipped, salted.to(x.dtype), x)


def _speckle_noise(x: Tensor, c: Any, gen: torch.Generator) -> Tensor:
    return x + x * float(c) * _randn(x, gen)


def _gaussian_blur(x: Tensor, c: Any, gen: torch.Generator) -> Tensor:
    # skimage.filters.gaussian: scipy's gaussian_filter, truncate 4, mode "nearest"
    sigma = float(c)
    radius = int(4.0 * sigma + 0.5)
    t = torch.arange(-radius, radius + 1, dtype=torch.float64)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    return _separable(x, (k / k.sum()).to(x.dtype), "replicate")


def _defocus_blur(x: Tensor, c: Any, gen: torch.Generator) -> Tensor:
    radius, alias_blur = c
    r = max(8, math.ceil(radius))
    t = torch.arange(-r, r + 1, dtype=torch.float64)
    yy, xx = torch.meshgrid(t, t, indexing="ij")
    disk = ((xx**2 + yy**2) <= radius**2).double()
    disk = disk / disk.sum()
    # cv2.GaussianBlur(ksize=3 (5 above radius 8), sigmaX=alias_blur), border reflect-101
    size = 3 if radius <= 8 else 5
    g = torch.exp(-0.5 * (torch.arange(size, dtype=torch.float64) - size // 2) ** 2 / alias_blur**2)
    disk = _separable(disk[None, None], g / g.sum(), "reflect")[0, 0]
    # cv2.filter2D (correlation; the kernel is symmetric), border reflect-101
    n, ch, h, w = x.shape
    padded = F.pad(x.reshape(n * ch, 1, h, w), (r, r, r, r), mode="reflect")
    return F.conv2d(padded, disk.to(x.dtype)[None, None]).reshape(x.shape)


def _zoom_blur(x: Tensor, c: Any, gen: torch.Generator) -> Tensor:
    factors = np.arange(1, float(c), 0.01)  # as published
    out = torch.zeros_like(x)
    for z in factors:
        out += _clipped_zoom(x, float(z))
    return (x + out) / (len(factors) + 1)


def _fog(x: Tensor, c: Any, gen: torch.Generator) -> Tensor:
    strength, decay = c
    n, _, h, w = x.shape
    size = 1 << (max(h, w, 2) - 1).bit_length()
    fractal = _plasma_fractal(n, size, decay, gen).to(x.dtype)[:, None, :h, :w]
    max_val = x.amax(dim=(1, 2, 3), keepdim=True)
    return (x + strength * fractal) * max_val / (max_val + strength)


def _brightness(x: Tensor, c: Any, gen: torch.Generator) -> Tensor:
    if x.shape[1] == 1:
        return x + float(c)  # grey: V is the value itself
    h, s, v = _rgb_to_hsv(x)
    return _hsv_to_rgb(h, s, (v + float(c)).clamp(0.0, 1.0))


def _contrast(x: Tensor, c: Any, gen: torch.Generator) -> Tensor:
    means = x.mean(dim=(2, 3), keepdim=True)
    return (x - means) * float(c) + means


def _saturate(x: Tensor, c: Any, gen: torch.Generator) -> Tensor:
    scale, shift = c
    h, s, v = _rgb_to_hsv(x)
    return _hsv_to_rgb(h, (s * scale + shift).clamp(0.0, 1.0), v)


def _pixelate(x: Tensor, c: Any, gen: torch.Generator) -> Tensor:
    # PIL: resize to int(size * c) with the BOX filter and back
    _, _, h, w = x.shape
    small_h, small_w = int(h * float(c)), int(w * float(c))
    down = _box_weights(h, small_h).to(x.dtype)
    right = _box_weights(w, small_w).to(x.dtype)
    small = down @ x @ right.T
    return _box_weights(small_h, h).to(x.dtype) @ small @ _box_weights(small_w, w).to(x.dtype).T


def _jpeg_compression(x: Tensor, c: Any, gen: torch.Generator) -> Tensor:
    try:
        from PIL import Image
    except ImportError as err:
        raise ImportError(
            "the jpeg_compression corruption needs Pillow: pip install 'bayes-by-hypernet[images]'"
        ) from err
    pixels = (x.clamp(0.0, 1.0) * 255.0).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    out = []
    for img in pixels:
        buf = io.BytesIO()
        Image.fromarray(img[..., 0] if img.shape[-1] == 1 else img).save(
            buf,
            "JPEG",
            quality=int(c),
        )
        buf.seek(0)
        decoded = np.asarray(Image.open(buf), dtype=np.float32) / 255.0
        out.append(decoded.reshape(img.shape))
    return torch.from_numpy(np.stack(out)).permute(0, 3, 1, 2).to(x.dtype)


_CORRUPT: dict[str, Callable[[Tensor, Any, torch.Generator], Tensor]] = {
    "gaussian_noise": _gaussian_noise,
    "shot_noise": _shot_noise,
    "impulse_noise": _impulse_noise,
    "speckle_noise": _speckle_noise,
    "gaussian_blur": _gaussian_blur,
    "defocus_blur": _defocus_blur,
    "zoom_blur": _zoom_blur,
    "fog": _fog,
    "brightness": _brightness,
    "contrast": _contrast,
    "saturate": _saturate,
    "pixelate": _pixelate,
    "jpeg_compression": _jpeg_compression,
}


# /////////////// helpers


def _randn(x: Tensor, gen: torch.Generator) -> Tensor:
    return torch.randn(x.shape, generator=gen, dtype=torch.float64).to(x.dtype)


def _rand(x: Tensor, gen: torch.Generator) -> Tensor:
    return torch.rand(x.shape, generator=gen, dtype=torch.float64).to(x.dtype)


def _separable(x: Tensor, kernel: Tensor, mode: str) -> Tensor:
    """Correlate every channel of ``x [N, C, H, W]`` with ``kernel [K]`` along H and W."""
    n, ch, h, w = x.shape
    r = kernel.shape[0] // 2
    flat = x.reshape(n * ch, 1, h, w)
    flat = F.conv2d(F.pad(flat, (0, 0, r, r), mode=mode), kernel.reshape(1, 1, -1, 1))
    flat = F.conv2d(F.pad(flat, (r, r, 0, 0), mode=mode), kernel.reshape(1, 1, 1, -1))
    return flat.reshape(n, ch, h, w)


def _clipped_zoom(x: Tensor, factor: float) -> Tensor:
    """The centre crop zoomed by ``factor`` (``scipy.ndimage.zoom(order=1)``: corners map to
    corners) and trimmed back to the image size."""
    _, _, h, w = x.shape
    ch, cw = math.ceil(h / factor), math.ceil(w / factor)
    top, left = (h - ch) // 2, (w - cw) // 2
    crop = x[:, :, top : top + ch, left : left + cw]
    size = (round(ch * factor), round(cw * factor))
    zoomed = F.interpolate(crop, size=size, mode="bilinear", align_corners=True)
    trim_top, trim_left = (size[0] - h) // 2, (size[1] - w) // 2
    return zoomed[:, :, trim_top : trim_top + h, trim_left : trim_left + w]


def _plasma_fractal(n: int, size: int, decay: float, gen: torch.Generator) -> Tensor:
    """``n`` diamond-square height maps ``[n, size, size]`` in [0, 1] (the benchmark's
    ``plasma_fractal``, batched; ``size`` a power of two)."""
    m = torch.zeros(n, size, size, dtype=torch.float64)
    step, wibble = size, 100.0

    def wibbled_mean(a: Tensor) -> Tensor:
        noise = torch.rand(a.shape, generator=gen, dtype=torch.float64) * 2 * wibble - wibble
        return a / 4 + wibble * noise

    while step >= 2:
        half = step // 2
        corners = m[:, 0:size:step, 0:size:step]
        square = corners + torch.roll(corners, -1, dims=1)
        square = square + torch.roll(square, -1, dims=2)
        m[:, half:size:step, half:size:step] = wibbled_mean(square)
        dr = m[:, half:size:step, half:size:step]
        ul = m[:, 0:size:step, 0:size:step]
        lt = dr + torch.roll(dr, 1, dims=1) + ul + torch.roll(ul, -1, dims=2)
        m[:, 0:size:step, half:size:step] = wibbled_mean(lt)
        tt = dr + torch.roll(dr, 1, dims=2) + ul + torch.roll(ul, -1, dims=1)
        m[:, half:size:step, 0:size:step] = wibbled_mean(tt)
        step //= 2
        wibble /= decay
    m = m - m.amin(dim=(1, 2), keepdim=True)
    return m / m.amax(dim=(1, 2), keepdim=True).clamp_min(1e-12)


def _rgb_to_hsv(x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """skimage.color.rgb2hsv on ``[N, 3, H, W]``: hue in [0, 1), 0 where the pixel is grey."""
    r, g, b = x[:, 0], x[:, 1], x[:, 2]
    v = x.amax(dim=1)
    delta = v - x.amin(dim=1)
    s = torch.where(v > 0, delta / v.clamp_min(1e-12), torch.zeros_like(v))
    d = delta.clamp_min(1e-12)
    h = torch.where(v == r, (g - b) / d, torch.zeros_like(v))
    h = torch.where(v == g, 2.0 + (b - r) / d, h)
    h = torch.where(v == b, 4.0 + (r - g) / d, h)
    h = torch.where(delta > 0, (h / 6.0) % 1.0, torch.zeros_like(v))
    return h, s, v


def _hsv_to_rgb(h: Tensor, s: Tensor, v: Tensor) -> Tensor:
    """skimage.color.hsv2rgb: ``[N, H, W]`` each -> ``[N, 3, H, W]``."""
    h6 = h * 6.0
    i = torch.floor(h6)
    f = h6 - i
    i = i.long() % 6
    p, q, t = v * (1 - s), v * (1 - f * s), v * (1 - (1 - f) * s)
    choices = torch.stack(
        [
            torch.stack([v, t, p]),
            torch.stack([q, v, p]),
            torch.stack([p, v, t]),
            torch.stack([p, q, v]),
            torch.stack([t, p, v]),
            torch.stack([v, p, q]),
        ]
    )  # [6, 3, N, H, W]
    index = i[None, None].expand(1, 3, *i.shape)
    return choices.gather(0, index)[0].permute(1, 0, 2, 3)


def _box_weights(in_size: int, out_size: int) -> Tensor:
    """PIL's BOX resampling as a matrix ``[out_size, in_size]`` (``precompute_coeffs``)."""
    scale = in_size / out_size
    filterscale = max(scale, 1.0)
    support = 0.5 * filterscale
    weights = torch.zeros(out_size, in_size, dtype=torch.float64)
    for o in range(out_size):
        center = (o + 0.5) * scale
        lo = max(int(center - support + 0.5), 0)
        hi = min(int(center + support + 0.5), in_size)
        for j in range(lo, hi):
            u = (j - center + 0.5) / filterscale
            weights[o, j] = 1.0 if -0.5 < u <= 0.5 else 0.0
        total = weights[o].sum()
        if total > 0:
            weights[o] /= total
    return weights
