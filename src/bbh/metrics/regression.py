"""Regression metrics on a Gaussian predictive: RMSE, NLL, interval coverage and calibration.

Every function takes the predictive ``mean`` ``[B]`` or ``[B, C]`` (``RegressionPrediction.mean``
from ``Method.predict``), where needed its standard deviation ``std`` of the same shape (the total
``RegressionPrediction.std``; a scalar is broadcast), and ``targets`` of the same shape (``[B]``
also for ``mean [B, 1]``). Scalars come back as Python floats (JSON-ready), computed in float64.

The interval metrics treat each example's predictive as ``N(mean, std^2)`` per output: the central
interval of level ``p`` is ``mean +- z_p std`` with ``z_p = Phi^-1((1 + p) / 2)`` (``p = 0.683``
at one std, ``0.954`` at two). ``interval_calibration_error`` is the calibration of these
intervals in the sense of Kuleshov et al. 2018, "Accurate uncertainties for deep learning using
calibrated regression": the mean over levels ``p`` of ``|p - observed coverage at p|``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from bbh.metrics._validation import as_tensor, check_finite

__all__ = [
    "CALIBRATION_LEVELS",
    "gaussian_nll",
    "interval_calibration_error",
    "interval_coverage",
    "regression_metrics",
    "rmse",
]

#: the central-interval levels of ``interval_calibration_error``: 0.05, 0.10, ..., 0.95
CALIBRATION_LEVELS: tuple[float, ...] = tuple(round(0.05 * k, 2) for k in range(1, 20))


def rmse(mean: Any, targets: Any) -> float:
    """Root mean squared error ``sqrt(mean_{i,c} (y_ic - mean_ic)^2)``.

    Args:
        mean: Predicted means ``[B]`` or ``[B, C]``.
        targets: Targets, of ``mean``'s shape.

    Returns:
        The RMSE.

    Raises:
        ValueError: The shapes disagree, a value is not finite or a standard deviation is not
            positive.
    """
    mu = _check_mean(mean)
    y = _check_targets(targets, mu)
    return float((y - mu).pow(2).mean().sqrt())


def gaussian_nll(mean: Any, std: Any, targets: Any) -> float:
    """Mean over examples of ``-log N(y_i; mean_i, diag(std_i^2))`` (summed over the C outputs),
    natural log. ``std`` must be positive.

    Args:
        mean: Predicted means ``[B]`` or ``[B, C]``.
        std: Predicted standard deviations, of ``mean``'s shape.
        targets: Targets, of ``mean``'s shape.

    Returns:
        The mean NLL in nats.

    Raises:
        ValueError: The shapes disagree, a value is not finite or a standard deviation is not
            positive.
    """
    mu = _check_mean(mean)
    sd = _check_std(std, mu, positive=True)
    y = _check_targets(targets, mu)
    z = (y - mu) / sd
    per_entry = 0.5 * z.pow(2) + sd.log() + 0.5 * math.log(2 * math.pi)
    return float(per_entry.reshape(mu.shape[0], -1).sum(-1).mean())


def interval_coverage(mean: Any, std: Any, targets: Any, num_std: float = 2.0) -> float:
    """Share of target entries inside ``mean +- num_std * std`` (ends included).

    For a calibrated Gaussian predictive: 0.683 at ``num_std=1``, 0.954 at 2.

    Args:
        mean: Predicted means ``[B]`` or ``[B, C]``.
        std: Predicted standard deviations, of ``mean``'s shape.
        targets: Targets, of ``mean``'s shape.
        num_std: The interval's half-width in standard deviations, positive.

    Returns:
        The share in ``[0, 1]``.

    Raises:
        ValueError: The shapes disagree, a value is not finite or a standard deviation is not
            positive.
    """
    if not (isinstance(num_std, (int, float)) and num_std > 0 and math.isfinite(num_std)):
        raise ValueError(f"num_std must be a positive number, got {num_std!r}")
    mu = _check_mean(mean)
    sd = _check_std(std, mu, positive=False)
    y = _check_targets(targets, mu)
    return float(((y - mu).abs() <= num_std * sd).double().mean())


def interval_calibration_error(
    mean: Any, std: Any, targets: Any, levels: Sequence[float] = CALIBRATION_LEVELS
) -> float:
    """Mean over ``levels`` p of ``|p - share of targets inside the central p-interval|``.

    0 for a calibrated predictive (in the limit of many examples); at most
    ``max(p, 1 - p)`` averaged over the levels. Kuleshov et al. 2018, with central intervals.

    Args:
        mean: Predicted means ``[B]`` or ``[B, C]``.
        std: Predicted standard deviations, of ``mean``'s shape.
        targets: Targets, of ``mean``'s shape.
        levels: The levels p, each in ``(0, 1)``.

    Returns:
        The mean absolute miscalibration.

    Raises:
        ValueError: The shapes disagree, a value is not finite or a standard deviation is not
            positive.
    """
    p = _check_levels(levels)
    mu = _check_mean(mean)
    sd = _check_std(std, mu, positive=True)
    y = _check_targets(targets, mu)
    # the level of the smallest central interval holding each target: 2 Phi(|z|) - 1
    u = torch.erf((y - mu).abs() / sd / math.sqrt(2.0)).flatten()
    observed = (u[None, :] <= p[:, None]).double().mean(dim=1)
    return float((observed - p).abs().mean())


def regression_metrics(mean: Any, std: Any, targets: Any) -> dict[str, float]:
    """Every metric of this module at once: ``rmse``, ``nll``, ``coverage_1std``,
    ``coverage_2std`` and ``calibration_error`` (over ``CALIBRATION_LEVELS``).

    Args:
        mean: Predicted means ``[B]`` or ``[B, C]``.
        std: Predicted standard deviations, of ``mean``'s shape.
        targets: Targets, of ``mean``'s shape.

    Returns:
        Metric name -> value.

    Raises:
        ValueError: The shapes disagree, a value is not finite or a standard deviation is not
            positive.
    """
    return {
        "rmse": rmse(mean, targets),
        "nll": gaussian_nll(mean, std, targets),
        "coverage_1std": interval_coverage(mean, std, targets, 1.0),
        "coverage_2std": interval_coverage(mean, std, targets, 2.0),
        "calibration_error": interval_calibration_error(mean, std, targets),
    }


def _check_mean(mean: Any) -> Tensor:
    t = as_tensor(mean, "mean")
    if t.dim() not in (1, 2):
        raise ValueError(f"mean must have shape [B] or [B, C], got {tuple(t.shape)}")
    if not t.is_floating_point():
        raise TypeError(f"mean must be a floating tensor, got {t.dtype}")
    if t.numel() == 0:
        raise ValueError(f"mean must not be empty, got shape {tuple(t.shape)}")
    check_finite(t, "mean")
    return t.double()


def _check_std(std: Any, mean: Tensor, *, positive: bool) -> Tensor:
    t = as_tensor(std, "std")
    if t.dim() > 0 and t.shape != mean.shape:
        raise ValueError(
            f"std must be a scalar or have the shape of mean {tuple(mean.shape)}, "
            f"got {tuple(t.shape)}"
        )
    t = t.double()
    check_finite(t, "std")
    if bool((t < 0).any()) or (positive and bool((t == 0).any())):
        bound = "> 0" if positive else ">= 0"
        raise ValueError(f"std must be {bound}, got a minimum of {float(t.min()):.3g}")
    return t.expand_as(mean)


def _check_targets(targets: Any, mean: Tensor) -> Tensor:
    t = as_tensor(targets, "targets")
    if t.shape != mean.shape:
        if not (t.dim() == 1 and mean.dim() == 2 and mean.shape[1] == 1):
            raise ValueError(
                f"targets must have the shape of mean {tuple(mean.shape)}"
                f"{' or [B]' if mean.dim() == 2 and mean.shape[1] == 1 else ''}, "
                f"got {tuple(t.shape)}"
            )
        if t.shape[0] != mean.shape[0]:
            raise ValueError(f"targets has {t.shape[0]} entries but mean has {mean.shape[0]}")
        t = t[:, None]
    if t.dtype == torch.bool or t.is_complex():
        raise TypeError(f"targets must be real numbers, got {t.dtype}")
    t = t.double()
    check_finite(t, "targets")
    return t


def _check_levels(levels: Sequence[float]) -> Tensor:
    try:
        p = torch.as_tensor(list(levels), dtype=torch.float64)
    except (TypeError, ValueError) as err:
        raise TypeError(f"levels must be a sequence of numbers, got {levels!r}") from err
    if p.dim() != 1 or p.numel() == 0 or bool(((p <= 0) | (p >= 1) | p.isnan()).any()):
        raise ValueError(
            f"levels must be a non-empty sequence of numbers in (0, 1), got {levels!r}"
        )
    return p
