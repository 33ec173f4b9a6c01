"""``evaluate_shift``: a method's accuracy, NLL, Brier score, ECE and accuracy-rejection area on
each of a list of shifted test sets (``bbh.data.shift``), and their means over the shifts.

This is the protocol of Ovadia et al. ("Can you trust your model's uncertainty? Evaluating
predictive uncertainty under dataset shift", NeurIPS 2019): the metrics against shift intensity
(rotated MNIST, 0-180 degrees; CIFAR under the corruptions of Hendrycks and Dietterich, ICLR 2019,
at severities 1-5), summarised by their means over the shifts.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from bbh.attacks.gradient import InputTransform
from bbh.data.shift import Shift
from bbh.evaluation.evaluate import predict_batched
from bbh.metrics._validation import check_labels
from bbh.metrics.classification import accuracy, brier_score, nll, reliability_bins
from bbh.metrics.rejection import ConfidenceScore, accuracy_rejection_curve
from bbh.progress import Progress
from bbh.validation import at_least, checked_args

__all__ = ["SHIFT_METRICS", "evaluate_shift"]

#: The per-shift metrics that ``evaluate_shift`` also averages over the shifts.
SHIFT_METRICS: tuple[str, ...] = (
    "accuracy",
    "nll",
    "brier",
    "ece",
    "rejection_area",
    "mean_entropy",
)


@checked_args(
    num_samples=at_least(1),
    batch_size=at_least(1),
    ece_bins=at_least(1),
    rejection_points=at_least(2),
)
def evaluate_shift(
    method: Any,
    test_x: Tensor,
    test_y: Tensor,
    shifts: Sequence[Shift],
    *,
    num_samples: int = 100,
    batch_size: int = 500,
    input_transform: InputTransform | None = None,
    ece_bins: int = 15,
    rejection_points: int = 101,
    confidence: ConfidenceScore | str = "max_probability",
    seed: int = 0,
    progress: bool = False,
) -> dict[str, Any]:
    """Evaluate ``method`` on ``test_x`` under each shift; returns a JSON-ready dict.

    Each shift is applied to the whole of ``test_x`` in pixel space (``Shift.apply``, seeded with
    ``seed``), then ``input_transform`` maps the shifted images to the model's inputs.

    Args:
        method: A trained classifier (``bbh.Method``, or anything with ``predict_logits``).
        test_x: Test images ``[N, C, H, W]`` in pixel space (floating in [0, 1], or uint8;
            rotation also takes ``[N, H, W]`` and flat square ``[N, H * W]``).
        test_y: Class ids ``[N]``.
        shifts: The shifts, e.g. ``bbh.data.rotation_shifts()`` or ``corruption_shifts()``.
        num_samples: Weight draws per input (1 for deterministic methods).
        batch_size: Inputs per ``predict_logits`` call.
        input_transform: Maps the shifted pixel-space images to the model's inputs (e.g. CIFAR
            standardisation); a uint8 ``test_x`` needs one that takes uint8.
        ece_bins: Equal-width confidence bins of the calibration error.
        rejection_points: Kept fractions of the accuracy-rejection curves.
        confidence: What ranks the inputs for the rejection curves (``ConfidenceScore``).
        seed: Seeds the random corruptions (the same for every shift).
        progress: Show a progress bar over the shifts.

    Returns:
        A dict of ``meta`` (method, sample and data sizes, options), ``shifts`` (one entry per
        shift: ``kind``, ``intensity``, ``name`` and the ``SHIFT_METRICS``), ``mean`` (each
        metric's mean over the shifts), ``by_kind`` (per kind, the intensities and each
        metric's values in the order given), ``by_intensity`` (per distinct intensity, sorted:
        each metric's mean, min and max over the kinds, for figures against intensity),
        ``rejection`` (the kept ``fractions`` and each shift's ``accuracy`` by name) and
        ``timing_s``.

    Raises:
        ValueError: ``shifts`` is empty or holds the same shift twice, ``test_x`` is empty,
            ``test_y`` is not integer ``[N]`` with ids in range, or an option is out of range.
    """
    t0 = time.monotonic()
    shifts = list(shifts)
    if not shifts:
        raise ValueError("shifts must not be empty")
    names = [s.name for s in shifts]
    if len(set(names)) != len(names):
        raise ValueError(f"shifts must be distinct, got {names}")
    if not isinstance(test_x, Tensor) or test_x.dim() < 2 or test_x.shape[0] == 0:
        raise ValueError("test_x must be a non-empty tensor of images [N, ...]")
    y0 = torch.as_tensor(test_y)
    if y0.dim() != 1 or y0.shape[0] != test_x.shape[0] or y0.is_floating_point():
        raise ValueError(
            f"test_y must be integer labels [N] with N = {test_x.shape[0]}, "
            f"got {y0.dtype} {tuple(y0.shape)}"
        )

    rows: list[dict[str, Any]] = []
    curves: dict[str, list[float]] = {}
    fractions: list[float] = []
    num_classes, drawn = 0, 0
    timing = {"shift": 0.0, "predict": 0.0}
    bar = Progress(len(shifts), "shifts", enabled=progress)
    for shift in shifts:
        t1 = time.monotonic()
        shifted = shift.apply(test_x, seed=seed)
        t2 = time.monotonic()
        pred = predict_batched(
            method,
            shifted,
            num_samples=num_samples,
            batch_size=batch_size,
            input_transform=input_transform,
        )
        timing["shift"] += t2 - t1
        timing["predict"] += time.monotonic() - t2
        probs = pred.probs
        num_classes, drawn = int(probs.shape[1]), pred.num_samples
        y = check_labels(test_y, probs.shape[0], num_classes, "test_y")
        curve = accuracy_rejection_curve(
            probs, y, confidence=confidence, num_points=rejection_points
        )
        fractions = curve.fractions.tolist()
        curves[shift.name] = curve.accuracy.tolist()
        rows.append(
            {
                "kind": shift.kind,
                "intensity": float(shift.intensity),
                "name": shift.name,
                "accuracy": accuracy(probs, y),
                "nll": nll(probs, y),
                "brier": brier_score(probs, y),
                "ece": reliability_bins(probs, y, num_bins=ece_bins).ece,
                "rejection_area": curve.area,
                "mean_entropy": float(pred.entropy.mean()),
            }
        )
        bar.update(1)
    bar.close()
    timing["total"] = time.monotonic() - t0

    return {
        "meta": {
            "method": type(method).__name__,
            "stochastic": bool(getattr(method, "stochastic", True)),
            "num_samples": drawn,
            "num_test": int(test_x.shape[0]),
            "num_classes": num_classes,
            "num_shifts": len(rows),
            "kinds": list(dict.fromkeys(r["kind"] for r in rows)),
            "ece_bins": ece_bins,
            "confidence": ConfidenceScore(confidence).value,
            "seed": seed,
        },
        "shifts": rows,
        "mean": {m: _mean([r[m] for r in rows]) for m in SHIFT_METRICS},
        "by_kind": _by_kind(rows),
        "by_intensity": _by_intensity(rows),
        "rejection": {"fractions": fractions, "accuracy": curves},
        "timing_s": timing,
    }


def _mean(values: list[float]) -> float:
    return float(sum(values) / len(values))


def _by_kind(rows: list[dict[str, Any]]) -> dict[str, dict[str, list[float]]]:
    out: dict[str, dict[str, list[float]]] = {}
    for r in rows:
        entry = out.setdefault(r["kind"], {"intensity": [], **{m: [] for m in SHIFT_METRICS}})
        entry["intensity"].append(r["intensity"])
        for m in SHIFT_METRICS:
            entry[m].append(r[m])
    return out


def _by_intensity(rows: list[dict[str, Any]]) -> dict[str, list[float]]:
    levels = sorted({r["intensity"] for r in rows})
    out: dict[str, list[float]] = {"intensity": levels}
    for m in SHIFT_METRICS:
        groups = [[r[m] for r in rows if r["intensity"] == v] for v in levels]
        out[m] = [_mean(g) for g in groups]
        out[f"{m}_min"] = [min(g) for g in groups]
        out[f"{m}_max"] = [max(g) for g in groups]
    return out
