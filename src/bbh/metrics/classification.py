"""Classification metrics on the predictive distribution: accuracy, NLL, Brier score, ECE.

Every function takes ``logits_or_probs``: logits ``[S, B, C]`` from ``Method.predict_logits``
(reduced to the predictive ``mean_s softmax``, as the paper does) or predictive probabilities
``[B, C]``, and integer ``labels`` ``[B]``. Scalars come back as Python floats (JSON-ready).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from bbh.metrics._validation import as_tensor, check_labels, check_logits, to_probs

__all__ = [
    "ReliabilityBins",
    "accuracy",
    "bootstrap_interval",
    "brier_score",
    "expected_calibration_error",
    "nll",
    "reliability_bins",
    "true_class_confidence_bins",
]


def accuracy(logits_or_probs: Any, labels: Any) -> float:
    """Share of inputs whose predictive argmax equals the label (the paper's accuracy).

    Args:
        logits_or_probs: Logits ``[S, B, C]`` (their softmaxes are averaged) or probabilities
            ``[B, C]``.
        labels: Integer class ids ``[B]`` in ``[0, C)``.

    Returns:
        The accuracy in ``[0, 1]``.

    Raises:
        ValueError: A shape does not fit, a value is not finite or a class id is out of range.
        TypeError: ``labels`` are not integers.
    """
    probs = to_probs(logits_or_probs)
    y = check_labels(labels, probs.shape[0], probs.shape[1])
    return float((probs.argmax(dim=-1) == y).double().mean())


def nll(logits_or_probs: Any, labels: Any, *, eps: float = 1e-12) -> float:
    """Mean negative log predictive probability of the label, natural log.

    From logits it is computed stably as ``-log mean_s softmax``; from probabilities the
    probability is floored at ``eps`` (scikit-learn's ``log_loss`` clips similarly).

    Args:
        logits_or_probs: Logits ``[S, B, C]`` (their softmaxes are averaged) or probabilities
            ``[B, C]``.
        labels: Integer class ids ``[B]`` in ``[0, C)``.
        eps: The floor of probabilities (not used for logits).

    Returns:
        The mean NLL in nats.

    Raises:
        ValueError: A shape does not fit, a value is not finite or a class id is out of range.
        TypeError: ``labels`` are not integers.
    """
    t = as_tensor(logits_or_probs, "logits_or_probs")
    if t.dim() == 3:
        logits = check_logits(t, "logits_or_probs").double()
        y = check_labels(labels, logits.shape[1], logits.shape[2])
        log_p = torch.logsumexp(logits.log_softmax(dim=-1), dim=0) - math.log(logits.shape[0])
        return float(-log_p.gather(1, y[:, None]).mean())
    probs = to_probs(t).double()
    y = check_labels(labels, probs.shape[0], probs.shape[1])
    return float(-probs.gather(1, y[:, None]).clamp_min(eps).log().mean())


def brier_score(logits_or_probs: Any, labels: Any) -> float:
    """Multi-class Brier score ``mean_i sum_c (p_ic - 1[y_i = c])^2`` (range [0, 2]).

    Args:
        logits_or_probs: Logits ``[S, B, C]`` (their softmaxes are averaged) or probabilities
            ``[B, C]``.
        labels: Integer class ids ``[B]`` in ``[0, C)``.

    Returns:
        The Brier score.

    Raises:
        ValueError: A shape does not fit, a value is not finite or a class id is out of range.
        TypeError: ``labels`` are not integers.
    """
    probs = to_probs(logits_or_probs).double()
    y = check_labels(labels, probs.shape[0], probs.shape[1])
    onehot = torch.nn.functional.one_hot(y, probs.shape[1]).double()
    return float(((probs - onehot) ** 2).sum(dim=-1).mean())


@dataclass(frozen=True)
class ReliabilityBins:
    """Data for a reliability diagram: ``num_bins`` equal-width confidence bins on [0, 1].

    Bin ``k`` holds confidences in ``(edges[k], edges[k+1]]`` (bin 0 also holds 0).
    ``accuracy`` and ``confidence`` are NaN for empty bins.
    ``ece = sum_k counts[k] / N * |accuracy[k] - confidence[k]|``.

    Args:
        edges: The bin edges ``[K + 1]``.
        counts: The inputs per bin ``[K]``, int64.
        accuracy: The accuracy per bin ``[K]``.
        confidence: The mean max-probability per bin ``[K]``.
        ece: The expected calibration error.
    """

    edges: Tensor  # [K + 1]
    counts: Tensor  # [K], int64
    accuracy: Tensor  # [K], per-bin accuracy
    confidence: Tensor  # [K], per-bin mean max-probability
    ece: float

    def to_dict(self) -> dict[str, Any]:
        """Plain lists, with ``None`` for the NaNs of empty bins (valid JSON).

        Returns:
            ``edges``, ``counts``, ``accuracy``, ``confidence`` and ``ece``.
        """

        def _list(t: Tensor) -> list[float | None]:
            return [None if math.isnan(v) else float(v) for v in t.tolist()]

        return {
            "edges": [float(v) for v in self.edges.tolist()],
            "counts": [int(v) for v in self.counts.tolist()],
            "accuracy": _list(self.accuracy),
            "confidence": _list(self.confidence),
            "ece": self.ece,
        }


def reliability_bins(logits_or_probs: Any, labels: Any, *, num_bins: int = 15) -> ReliabilityBins:
    """Equal-width binning of the predictive confidence ``max_c p_c`` against correctness.

    Args:
        logits_or_probs: Logits ``[S, B, C]`` (their softmaxes are averaged) or probabilities
            ``[B, C]``.
        labels: Integer class ids ``[B]`` in ``[0, C)``.
        num_bins: K, a positive int.

    Returns:
        The bins and the ECE.

    Raises:
        ValueError: A shape does not fit, a value is not finite or a class id is out of range.
        TypeError: ``labels`` are not integers.
    """
    if not isinstance(num_bins, int) or num_bins < 1:
        raise ValueError(f"num_bins must be a positive int, got {num_bins!r}")
    probs = to_probs(logits_or_probs).double()
    y = check_labels(labels, probs.shape[0], probs.shape[1])
    conf, pred = probs.max(dim=-1)
    correct = (pred == y).double()
    edges = torch.linspace(0.0, 1.0, num_bins + 1, dtype=torch.float64)
    idx = torch.bucketize(conf, edges[1:-1], right=False)  # (lo, hi], 0 in bin 0
    counts = torch.bincount(idx, minlength=num_bins)
    n = counts.clamp_min(1).double()
    acc = torch.zeros(num_bins, dtype=torch.float64).index_add_(0, idx, correct) / n
    mean_conf = torch.zeros(num_bins, dtype=torch.float64).index_add_(0, idx, conf) / n
    ece = float((counts.double() / conf.numel() * (acc - mean_conf).abs()).sum())
    empty = counts == 0
    acc[empty] = float("nan")
    mean_conf[empty] = float("nan")
    return ReliabilityBins(edges, counts, acc, mean_conf, ece)


def expected_calibration_error(logits_or_probs: Any, labels: Any, *, num_bins: int = 15) -> float:
    """Expected calibration error: L1, ``num_bins`` equal-width bins of the max probability.

    Args:
        logits_or_probs: Logits ``[S, B, C]`` (their softmaxes are averaged) or probabilities
            ``[B, C]``.
        labels: Integer class ids ``[B]`` in ``[0, C)``.
        num_bins: K, a positive int.

    Returns:
        The ECE in ``[0, 1]``.

    Raises:
        ValueError: A shape does not fit, a value is not finite or a class id is out of range.
        TypeError: ``labels`` are not integers.
    """
    return reliability_bins(logits_or_probs, labels, num_bins=num_bins).ece


def true_class_confidence_bins(
    logits_or_probs: Any, labels: Any, *, num_bins: int = 50
) -> dict[str, list[float]]:
    """The paper's calibration output, named for what it is (docs/evaluation.md, "The paper's
    calibration output").

    The authors' code (pawni/BayesByHypernet, ``utils.build_result_dict``) calls
    ``sklearn.calibration_curve(y_true=ones, y_prob=p[true class], n_bins=50)``,
    whose only informative output is the mean true-class probability in each non-empty
    equal-width bin (its ``prob_pred``). This returns those means with the bin counts; it is
    *not* a reliability diagram (use ``reliability_bins`` for that).

    Args:
        logits_or_probs: Logits ``[S, B, C]`` (their softmaxes are averaged) or probabilities
            ``[B, C]``.
        labels: Integer class ids ``[B]`` in ``[0, C)``.
        num_bins: Equal-width bins on ``[0, 1]``.

    Returns:
        ``mean_true_class_probability`` and ``counts`` of the non-empty bins.

    Raises:
        ValueError: A shape does not fit, a value is not finite or a class id is out of range.
        TypeError: ``labels`` are not integers.
    """
    probs = to_probs(logits_or_probs).double()
    y = check_labels(labels, probs.shape[0], probs.shape[1])
    p_true = probs.gather(1, y[:, None]).squeeze(1)
    # sklearn: np.searchsorted(bins[1:-1], y_prob) with bins = linspace(0, 1, n_bins + 1)
    edges = torch.linspace(0.0, 1.0, num_bins + 1, dtype=torch.float64)
    idx = torch.bucketize(p_true, edges[1:-1], right=False)
    counts = torch.bincount(idx, minlength=num_bins)
    sums = torch.zeros(num_bins, dtype=torch.float64).index_add_(0, idx, p_true)
    keep = counts > 0
    return {
        "mean_true_class_probability": (sums[keep] / counts[keep]).tolist(),
        "counts": [int(c) for c in counts[keep].tolist()],
    }


def bootstrap_interval(
    metric: Callable[[Tensor, Tensor], float],
    logits_or_probs: Any,
    labels: Any,
    *,
    replicates: int = 200,
    level: float = 0.95,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile bootstrap interval of ``metric(probs, labels)`` over the examples.

    Resamples the B examples with replacement ``replicates`` times (seeded, so the interval is
    reproducible) and returns the ``(1 - level) / 2`` and ``(1 + level) / 2`` quantiles: how much
    the metric moves with which test examples were drawn. On MNIST-sized test sets with ~1%
    error, ECE's interval is about as wide as the differences between good models. ECE is
    biased upward on a finite set, and more so on a resample, so its interval can sit a little
    above the value itself; compare two methods' ECE on the same resamples (paired), as
    ``benchmarks/posterior/calibration_summary.py`` does.

    Args:
        metric: ``metric(probs, labels) -> float``, e.g. ``accuracy`` or ``nll``.
        logits_or_probs: Logits ``[S, B, C]`` (their softmaxes are averaged) or probabilities
            ``[B, C]``.
        labels: Integer class ids ``[B]`` in ``[0, C)``.
        replicates: Resamples, an int ``>= 2``.
        level: The interval's coverage, in ``(0, 1)``.
        seed: Seeds the resampling.

    Returns:
        ``(low, high)``.

    Raises:
        ValueError: ``replicates`` or ``level`` is out of range, or the inputs fail the checks
            of ``accuracy``.
    """
    if not isinstance(replicates, int) or replicates < 2:
        raise ValueError(f"replicates must be an int >= 2, got {replicates!r}")
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level!r}")
    probs = to_probs(logits_or_probs)
    y = check_labels(labels, probs.shape[0], probs.shape[1])
    gen = torch.Generator().manual_seed(seed)
    n = probs.shape[0]
    values = torch.tensor(
        [
            metric(probs[i], y[i])
            for i in (torch.randint(0, n, (n,), generator=gen) for _ in range(replicates))
        ],
        dtype=torch.float64,
    )
    low, high = torch.quantile(
        values, torch.tensor([(1 - level) / 2, (1 + level) / 2], dtype=torch.float64)
    )
    return float(low), float(high)
