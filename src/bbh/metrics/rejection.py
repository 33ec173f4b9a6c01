"""The accuracy-rejection curve: the accuracy of the most confident fraction of the inputs kept.

A model whose confidence ranks its errors last loses accuracy only when it must keep its least
confident inputs; the curve and its area say how well a user can trust the model to flag its own
mistakes (Ovadia et al., "Can you trust your model's uncertainty?", NeurIPS 2019, figures of
accuracy against confidence threshold; Nadeem et al. 2009 for accuracy-rejection curves).

Confidence is the predictive ``max_c p_c`` (default) or minus the predictive entropy. Inputs of
equal confidence are taken in random order, in expectation: a group of ties that is cut by the
kept fraction contributes its mean correctness per kept input, so the curve does not depend on
the order of the inputs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from bbh.enums import ConfidenceScore
from bbh.metrics._validation import check_labels, to_probs
from bbh.metrics.uncertainty import predictive_entropy
from bbh.options import parse_enum

__all__ = [
    "ConfidenceScore",
    "RejectionCurve",
    "accuracy_rejection_area",
    "accuracy_rejection_curve",
]


@dataclass(frozen=True)
class RejectionCurve:
    """Accuracy of the most confident inputs kept, per kept fraction.

    Args:
        fractions: The kept fractions ``[P]`` in ``[0, 1]`` (0 means the single most confident
            input: at least one input is kept).
        accuracy: The accuracy of the ``ceil(f * N)`` most confident inputs ``[P]``.
        area: ``accuracy_rejection_area``: the mean of the accuracy over every kept count
            ``1..N``.
        confidence: The confidence score that ranked the inputs.
    """

    fractions: Tensor
    accuracy: Tensor
    area: float
    confidence: str

    def to_dict(self) -> dict[str, Any]:
        """Plain lists and floats (valid JSON).

        Returns:
            ``fractions``, ``accuracy``, ``area`` and ``confidence``.
        """
        return {
            "fractions": [float(v) for v in self.fractions.tolist()],
            "accuracy": [float(v) for v in self.accuracy.tolist()],
            "area": self.area,
            "confidence": self.confidence,
        }


def accuracy_rejection_curve(
    logits_or_probs: Any,
    labels: Any,
    *,
    confidence: ConfidenceScore | str = "max_probability",
    num_points: int = 101,
) -> RejectionCurve:
    """The accuracy-rejection curve on ``num_points`` kept fractions from 0 to 1, and its area.

    At kept fraction ``f`` the ``k = max(1, ceil(f * N))`` most confident inputs are kept and
    their accuracy is reported (ties at the cut count with their group's mean correctness). At
    ``f = 1`` it is the accuracy; a model that ranks its errors last rises towards 1 as ``f``
    falls, one whose confidence says nothing stays flat.

    Args:
        logits_or_probs: Logits ``[S, B, C]`` (their softmaxes are averaged) or probabilities
            ``[B, C]``.
        labels: Integer class ids ``[B]`` in ``[0, C)``.
        confidence: ``max_probability`` or ``entropy`` (``ConfidenceScore``).
        num_points: P, the kept fractions ``linspace(0, 1, P)``, at least 2.

    Returns:
        The ``RejectionCurve``.

    Raises:
        ValueError: ``confidence`` is unknown, ``num_points`` is below 2, a shape does not fit,
            a value is not finite or a class id is out of range.
        TypeError: ``labels`` are not integers.
    """
    if not isinstance(num_points, int) or num_points < 2:
        raise ValueError(f"num_points must be an int >= 2, got {num_points!r}")
    acc_at, score = _accuracy_by_kept_count(logits_or_probs, labels, confidence)
    n = acc_at.shape[0]
    fractions = torch.linspace(0.0, 1.0, num_points, dtype=torch.float64)
    kept = [max(1, math.ceil(round(float(f) * n, 9))) for f in fractions]
    accuracy = acc_at[torch.tensor(kept) - 1]
    return RejectionCurve(fractions, accuracy, float(acc_at.mean()), score.value)


def accuracy_rejection_area(
    logits_or_probs: Any, labels: Any, *, confidence: ConfidenceScore | str = "max_probability"
) -> float:
    """The area under the accuracy-rejection curve: the mean over every kept count ``k = 1..N``
    of the accuracy of the ``k`` most confident inputs (a right Riemann sum over the kept
    fraction ``k / N``). It is the accuracy when the confidence ranks at random (in
    expectation), and larger the more the errors sit among the least confident inputs; 1 when
    every prediction is right, 0 when every one is wrong.

    Args:
        logits_or_probs: Logits ``[S, B, C]`` (their softmaxes are averaged) or probabilities
            ``[B, C]``.
        labels: Integer class ids ``[B]`` in ``[0, C)``.
        confidence: ``max_probability`` or ``entropy`` (``ConfidenceScore``).

    Returns:
        The area in ``[0, 1]``.

    Raises:
        ValueError: ``confidence`` is unknown, a shape does not fit, a value is not finite or a
            class id is out of range.
        TypeError: ``labels`` are not integers.
    """
    acc_at, _ = _accuracy_by_kept_count(logits_or_probs, labels, confidence)
    return float(acc_at.mean())


def _accuracy_by_kept_count(
    logits_or_probs: Any, labels: Any, confidence: ConfidenceScore | str
) -> tuple[Tensor, ConfidenceScore]:
    """The accuracy of the ``k`` most confident inputs for ``k = 1..N`` (``[N]``, float64)."""
    score = parse_enum(ConfidenceScore, confidence, "confidence")
    probs = to_probs(logits_or_probs).double()
    y = check_labels(labels, probs.shape[0], probs.shape[1])
    correct = (probs.argmax(dim=-1) == y).double()
    if score is ConfidenceScore.MAX_PROBABILITY:
        conf = probs.max(dim=-1).values
    else:
        conf = -predictive_entropy(probs)
    order = torch.argsort(conf, descending=True, stable=True)
    conf, correct = conf[order], correct[order]
    # each input of a group of ties counts with the group's mean correctness
    _, group, sizes = torch.unique_consecutive(conf, return_inverse=True, return_counts=True)
    group_sum = torch.zeros(sizes.shape[0], dtype=torch.float64).index_add_(0, group, correct)
    expected = (group_sum / sizes.double())[group]
    kept = torch.arange(1, conf.shape[0] + 1, dtype=torch.float64)
    return expected.cumsum(0) / kept, score
