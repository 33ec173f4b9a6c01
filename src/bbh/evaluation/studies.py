"""The paper's qualitative MNIST studies (Pawlowski et al., arXiv 1711.01297): rotation sweeps,
3-to-8 mixup, per-class probability spread across weight samples, and weight-sample statistics,
as in the paper's code (pawni/BayesByHypernet: the images in ``utils.py``, the weight statistics
in ``experiments.analysis``).

Images may be flat (``[784]``, a square is assumed), ``[H, W]`` or ``[C, H, W]``; the method sees
them in the shape given. Rotation uses ``torch.nn.functional.affine_grid``/``grid_sample``
(bilinear, zero padding, about the image centre, positive angle = counter-clockwise as displayed;
identical to ``scipy.ndimage.rotate(reshape=False, order=1, mode="grid-constant")``)
instead of the authors' ``scipy.ndimage.rotate(reshape=False)`` (cubic spline), so that there is no
SciPy dependency; the images differ only by the interpolation.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from bbh.attacks.gradient import InputTransform
from bbh.data.shift import rotate
from bbh.metrics.uncertainty import predictive_entropy

__all__ = [
    "PAPER_MIXUP",
    "PAPER_MIXUP_LAMBDAS",
    "PAPER_ROTATIONS",
    "Study",
    "WeightStatistics",
    "mixup_images",
    "mixup_study",
    "per_class_spread",
    "rotate_images",
    "rotation_study",
    "sample_probs",
    "weight_statistics",
]

#: MNIST test index -> angles (degrees): #270 (a 3) and #202 (a 1) 0-90, #217 (a 6) 0-180.
PAPER_ROTATIONS: dict[int, tuple[int, ...]] = {
    270: tuple(range(0, 91, 10)),
    202: tuple(range(0, 91, 10)),
    217: tuple(range(0, 181, 10)),
}
#: MNIST test indices of the 3-to-8 mixup ``(1 - lam) * img[270] + lam * img[391]``.
PAPER_MIXUP: tuple[int, int] = (270, 391)
PAPER_MIXUP_LAMBDAS: tuple[float, ...] = tuple(round(0.1 * i, 1) for i in range(11))


@dataclass(frozen=True)
class Study:
    """A sweep of inputs and the method's sampled predictions on them.

    ``values``: the swept quantity (angles or mixing weights); ``images``: ``[A, *input_shape]``;
    ``probs``: per-sample softmaxes ``[A, S, C]``.

    Args:
        name: ``rotation`` or ``mixup``.
        values: The swept values.
        images: The swept inputs ``[A, *input_shape]``.
        probs: Per-sample softmaxes ``[A, S, C]``.
    """

    name: str
    values: list[float]
    images: Tensor
    probs: Tensor

    def display_images(self) -> Tensor:
        """``[A, H, W]`` (grey) or ``[A, H, W, 3]`` for plotting.

        Returns:
            The images for ``imshow``.
        """
        return torch.stack([_display(img) for img in self.images])

    def to_dict(self) -> dict[str, Any]:
        """Mean, std and 5/95% quantiles over samples of each class probability, the predictive
        entropy (nats) and the predicted class, per swept value.

        Returns:
            The summary by name.
        """
        mean = self.probs.mean(dim=1)
        return {
            "name": self.name,
            "values": [float(v) for v in self.values],
            "num_samples": int(self.probs.shape[1]),
            "mean_probs": mean.tolist(),
            "std_probs": self.probs.std(dim=1, unbiased=self.probs.shape[1] > 1).tolist(),
            "q05_probs": self.probs.quantile(0.05, dim=1).tolist(),
            "q95_probs": self.probs.quantile(0.95, dim=1).tolist(),
            "entropy": predictive_entropy(mean).tolist(),
            "prediction": mean.argmax(dim=-1).tolist(),
        }


def rotate_images(image: Tensor, angles: Sequence[float]) -> Tensor:
    """``image`` rotated by each angle (degrees, counter-clockwise): ``[A, *image.shape]``.

    Args:
        image: One image ``[C, H, W]``, ``[H, W]`` or flat square ``[H * W]``.
        angles: The angles in degrees.

    Returns:
        ``[A, *image.shape]``.

    Raises:
        TypeError: ``image`` is not a floating tensor.
        ValueError: ``angles`` is empty or ``image`` has no image shape.
    """
    chw = _as_chw(image, "image")
    angles = [float(a) for a in angles]
    if not angles:
        raise ValueError("angles must not be empty")
    out = torch.cat([rotate(chw.unsqueeze(0), a) for a in angles])  # bbh.data.shift's
    return out.reshape(len(angles), *image.shape)


def mixup_images(image_a: Tensor, image_b: Tensor, lambdas: Sequence[float]) -> Tensor:
    """``(1 - lam) * image_a + lam * image_b`` for each ``lam``: ``[L, *image_a.shape]``.

    Args:
        image_a: The first image, any shape.
        image_b: The second, of the same shape.
        lambdas: The mixing weights.

    Returns:
        ``[L, *image_a.shape]``.

    Raises:
        ValueError: The images differ in shape, or ``lambdas`` is empty.
    """
    if image_a.shape != image_b.shape:
        raise ValueError(
            f"image_a and image_b must have the same shape, got "
            f"{tuple(image_a.shape)} and {tuple(image_b.shape)}"
        )
    lam = torch.tensor([float(v) for v in lambdas], dtype=image_a.dtype, device=image_a.device)
    if lam.numel() == 0:
        raise ValueError("lambdas must not be empty")
    lam = lam.reshape(-1, *([1] * image_a.dim()))
    return (1 - lam) * image_a + lam * image_b


def sample_probs(
    method: Any,
    x: Tensor,
    *,
    num_samples: int = 100,
    input_transform: InputTransform | None = None,
) -> Tensor:
    """Per-sample softmaxes ``[S, B, C]`` (one sample for a deterministic method).

    Args:
        method: A trained method (``bbh.Method``, or anything with ``predict_logits``).
        x: Inputs ``[B, ...]``.
        num_samples: Weight draws per input (one for a deterministic method).
        input_transform: Maps the inputs to the model's (e.g. CIFAR standardisation).

    Returns:
        ``[S, B, C]``, float64.
    """
    s = num_samples if getattr(method, "stochastic", True) else 1
    with torch.no_grad():
        inp = input_transform(x) if input_transform is not None else x
        return method.predict_logits(inp, s).double().softmax(dim=-1)


def rotation_study(
    method: Any,
    image: Tensor,
    angles: Sequence[float] = PAPER_ROTATIONS[270],
    *,
    num_samples: int = 100,
    input_transform: InputTransform | None = None,
) -> Study:
    """Sampled predictions on ``image`` rotated by each angle (the paper's code: ``utils.py``).

    Args:
        method: A trained method (``bbh.Method``, or anything with ``predict_logits``).
        image: One image (as for ``rotate_images``).
        angles: The angles in degrees.
        num_samples: Weight draws per input (one for a deterministic method).
        input_transform: Maps the inputs to the model's (e.g. CIFAR standardisation).

    Returns:
        The ``Study`` named ``rotation``.

    Raises:
        TypeError: ``image`` is not a floating tensor.
        ValueError: ``angles`` is empty or ``image`` has no image shape.
    """
    images = rotate_images(image, angles)
    probs = sample_probs(method, images, num_samples=num_samples, input_transform=input_transform)
    return Study("rotation", [float(a) for a in angles], images, probs.transpose(0, 1))


def mixup_study(
    method: Any,
    image_a: Tensor,
    image_b: Tensor,
    lambdas: Sequence[float] = PAPER_MIXUP_LAMBDAS,
    *,
    num_samples: int = 100,
    input_transform: InputTransform | None = None,
) -> Study:
    """Sampled predictions along ``(1 - lam) * image_a + lam * image_b`` (as ``utils.py``).

    Args:
        method: A trained method (``bbh.Method``, or anything with ``predict_logits``).
        image_a: The first image.
        image_b: The second, of the same shape.
        lambdas: The mixing weights.
        num_samples: Weight draws per input (one for a deterministic method).
        input_transform: Maps the inputs to the model's (e.g. CIFAR standardisation).

    Returns:
        The ``Study`` named ``mixup``.

    Raises:
        ValueError: The images differ in shape, or ``lambdas`` is empty.
    """
    images = mixup_images(image_a, image_b, lambdas)
    probs = sample_probs(method, images, num_samples=num_samples, input_transform=input_transform)
    return Study("mixup", [float(v) for v in lambdas], images, probs.transpose(0, 1))


def per_class_spread(
    method: Any,
    x: Tensor,
    *,
    num_samples: int = 100,
    input_transform: InputTransform | None = None,
) -> dict[str, Any]:
    """Spread of each class probability across weight samples, per input (as ``utils.py``).

    Returns lists ``[B][C]`` of mean, std, and 5/50/95% quantiles over the samples, plus the raw
    per-sample probabilities ``[S][B][C]`` under ``"samples"`` for box plots.

    Args:
        method: A trained method (``bbh.Method``, or anything with ``predict_logits``).
        x: Inputs ``[B, ...]``.
        num_samples: Weight draws per input (one for a deterministic method).
        input_transform: Maps the inputs to the model's (e.g. CIFAR standardisation).

    Returns:
        ``num_samples``, ``mean``, ``std``, ``q05``, ``q50``, ``q95`` and ``samples``.
    """
    p = sample_probs(method, x, num_samples=num_samples, input_transform=input_transform)
    return {
        "num_samples": int(p.shape[0]),
        "mean": p.mean(0).tolist(),
        "std": p.std(0, unbiased=p.shape[0] > 1).tolist(),
        "q05": p.quantile(0.05, dim=0).tolist(),
        "q50": p.quantile(0.5, dim=0).tolist(),
        "q95": p.quantile(0.95, dim=0).tolist(),
        "samples": p.tolist(),
    }


@dataclass(frozen=True)
class WeightStatistics:
    """Statistics of weight samples (as ``experiments.analysis``): per-parameter mean and std
    ``[D]``, the correlation matrix of the first ``K`` coordinates (the first conv kernel: 500 on
    MNIST, 432 on CIFAR) and the samples of the first few parameters for histograms.

    Args:
        num_samples: S.
        mean: Per-parameter means ``[D]``.
        std: Per-parameter standard deviations ``[D]``.
        kernel_correlation: The correlations of the first K coordinates ``[K, K]``.
        first_params: The samples of the first parameters ``[S, P]``.
    """

    num_samples: int
    mean: Tensor
    std: Tensor
    kernel_correlation: Tensor
    first_params: Tensor

    def to_dict(self) -> dict[str, Any]:
        """A compact JSON summary (no D- or K x K-sized arrays).

        Returns:
            The summary by name.
        """
        k = self.kernel_correlation.shape[0]
        off = self.kernel_correlation[~torch.eye(k, dtype=torch.bool)]
        return {
            "num_samples": self.num_samples,
            "num_params": int(self.std.numel()),
            "std_mean": float(self.std.mean()),
            "std_median": float(self.std.median()),
            "std_min": float(self.std.min()),
            "std_max": float(self.std.max()),
            "first_params_std": self.std[: self.first_params.shape[1]].tolist(),
            "kernel_size": k,
            "kernel_mean_abs_correlation": float(off.abs().mean()) if off.numel() else 0.0,
        }


def weight_statistics(
    weight_samples: Tensor | Iterable[Tensor],
    *,
    kernel_size: int = 500,
    num_first: int = 25,
) -> WeightStatistics:
    """Statistics of weight samples ``[S, D]``, or of an iterable of ``[S_i, D]`` chunks (so
    that many samples of a large network never sit in memory at once).

    ``std`` is the unbiased per-parameter standard deviation; correlations of coordinates with
    zero spread are set to 0 (1 on the diagonal).

    Args:
        weight_samples: Samples ``[S, D]``, or an iterable of chunks ``[S_i, D]``.
        kernel_size: K, the coordinates of the correlation matrix.
        num_first: The parameters whose samples are kept for histograms.

    Returns:
        The ``WeightStatistics``.

    Raises:
        ValueError: A chunk is not ``[S, D]``, the chunks differ in D, a value is not finite, or
            there are fewer than 2 samples.
    """
    chunks = [weight_samples] if isinstance(weight_samples, Tensor) else weight_samples
    n, total, total_sq = 0, None, None
    kernel, first = [], []
    for i, w in enumerate(chunks):
        if not isinstance(w, Tensor) or w.dim() != 2:
            shape = tuple(w.shape) if isinstance(w, Tensor) else type(w).__name__
            raise ValueError(f"weight_samples must be [S, D] tensors, got {shape} (chunk {i})")
        w = w.detach().double().cpu()
        if total is not None and w.shape[1] != total.shape[0]:
            raise ValueError("weight_samples chunks must all have the same D")
        if not bool(torch.isfinite(w).all()):
            raise ValueError("weight_samples contains NaN or infinite values")
        total = w.sum(0) if total is None else total + w.sum(0)
        total_sq = (w**2).sum(0) if total_sq is None else total_sq + (w**2).sum(0)
        kernel.append(w[:, :kernel_size])
        first.append(w[:, :num_first])
        n += w.shape[0]
    if total is None or total_sq is None or n < 2:
        raise ValueError(f"weight_samples must hold at least 2 samples, got {n}")
    mean = total / n
    var = ((total_sq - n * mean**2) / (n - 1)).clamp_min(0.0)
    k = torch.cat(kernel)
    kc = k - k.mean(0)
    cov = kc.T @ kc / (n - 1)
    sd = cov.diagonal().sqrt()
    corr = cov / (sd[:, None] * sd[None, :])
    corr = torch.nan_to_num(corr, nan=0.0, posinf=0.0, neginf=0.0)
    corr.fill_diagonal_(1.0)
    return WeightStatistics(n, mean, var.sqrt(), corr.clamp(-1.0, 1.0), torch.cat(first))


def _as_chw(image: Tensor, name: str) -> Tensor:
    if not isinstance(image, Tensor) or not image.is_floating_point():
        raise TypeError(f"{name} must be a floating tensor")
    if image.dim() == 1:
        side = math.isqrt(image.numel())
        if side * side != image.numel():
            raise ValueError(f"a flat {name} must be square, got {image.numel()} values")
        return image.reshape(1, side, side)
    if image.dim() == 2:
        return image.unsqueeze(0)
    if image.dim() == 3:
        return image
    raise ValueError(f"{name} must be [H*W], [H, W] or [C, H, W], got {tuple(image.shape)}")


def _display(image: Tensor) -> Tensor:
    chw = _as_chw(image.detach().cpu(), "image")
    return chw[0] if chw.shape[0] == 1 else chw.permute(1, 2, 0)
