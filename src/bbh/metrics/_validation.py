"""Input checks shared by the metric functions; every error names the offending argument."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor


def as_tensor(value: Any, name: str) -> Tensor:
    """``value`` as a tensor (numpy arrays and lists accepted); a clear error otherwise."""
    if isinstance(value, Tensor):
        return value.detach()
    try:
        return torch.as_tensor(value)
    except (TypeError, ValueError, RuntimeError) as err:
        raise TypeError(f"{name} must be a tensor or array, got {type(value).__name__}") from err


def check_finite(t: Tensor, name: str) -> None:
    if t.is_floating_point() and not bool(torch.isfinite(t).all()):
        bad = int((~torch.isfinite(t)).sum())
        raise ValueError(f"{name} contains {bad} NaN or infinite value(s)")


def check_logits(logits: Any, name: str = "logits") -> Tensor:
    """Floating ``[S, B, C]`` logits, finite, with S, B, C >= 1."""
    t = as_tensor(logits, name)
    if t.dim() != 3:
        raise ValueError(
            f"{name} must have shape [S, B, C] (samples, batch, classes), got {tuple(t.shape)}"
        )
    if not t.is_floating_point():
        raise TypeError(f"{name} must be a floating tensor, got {t.dtype}")
    if min(t.shape) < 1:
        raise ValueError(f"{name} must not be empty, got shape {tuple(t.shape)}")
    check_finite(t, name)
    return t


def check_probs(probs: Any, name: str = "probs", *, atol: float = 1e-4) -> Tensor:
    """Floating ``[B, C]`` probabilities: finite, in [0, 1], rows summing to 1."""
    t = as_tensor(probs, name)
    if t.dim() != 2:
        raise ValueError(f"{name} must have shape [B, C] (batch, classes), got {tuple(t.shape)}")
    if not t.is_floating_point():
        raise TypeError(f"{name} must be a floating tensor, got {t.dtype}")
    if min(t.shape) < 1:
        raise ValueError(f"{name} must not be empty, got shape {tuple(t.shape)}")
    check_finite(t, name)
    if bool((t < 0).any()) or bool((t > 1 + atol).any()):
        raise ValueError(f"{name} must lie in [0, 1]")
    sums = t.sum(dim=-1)
    if not bool(torch.allclose(sums, torch.ones_like(sums), atol=atol * t.shape[-1])):
        worst = float((sums - 1).abs().max())
        raise ValueError(f"rows of {name} must sum to 1 (largest deviation {worst:.3g})")
    return t


def to_probs(logits_or_probs: Any, name: str = "logits_or_probs") -> Tensor:
    """Predictive probabilities ``[B, C]`` from logits ``[S, B, C]`` (mean of the softmaxes) or
    from probabilities ``[B, C]`` (checked and returned as they are)."""
    t = as_tensor(logits_or_probs, name)
    if t.dim() == 3:
        return check_logits(t, name).softmax(dim=-1).mean(dim=0)
    if t.dim() == 2:
        return check_probs(t, name)
    raise ValueError(
        f"{name} must be logits [S, B, C] or probabilities [B, C], got shape {tuple(t.shape)}"
    )


def check_labels(labels: Any, batch: int, num_classes: int, name: str = "labels") -> Tensor:
    """Integer labels ``[B]`` in ``[0, num_classes)``."""
    t = as_tensor(labels, name)
    if t.dim() != 1:
        raise ValueError(f"{name} must have shape [B], got {tuple(t.shape)}")
    if t.is_floating_point() or t.dtype == torch.bool or t.is_complex():
        raise TypeError(f"{name} must be integer class indices, got {t.dtype}")
    if t.shape[0] != batch:
        raise ValueError(f"{name} has {t.shape[0]} entries but the predictions have batch {batch}")
    if t.numel() and (int(t.min()) < 0 or int(t.max()) >= num_classes):
        raise ValueError(
            f"{name} must lie in [0, {num_classes}), got values in [{int(t.min())}, {int(t.max())}]"
        )
    return t.long()


def check_scores(scores: Any, name: str) -> Tensor:
    """A non-empty, finite 1-D score vector as float64."""
    t = as_tensor(scores, name)
    if t.dim() != 1:
        raise ValueError(f"{name} must be 1-D, got shape {tuple(t.shape)}")
    if t.numel() == 0:
        raise ValueError(f"{name} is empty; at least one input is needed")
    t = t.double()
    check_finite(t, name)
    return t
