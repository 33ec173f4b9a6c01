"""Predictive uncertainty: entropy, expected entropy, mutual information, max probability, and
the paper's "entropy AUC" (the area under the entropy CDF; docs/evaluation.md).

All entropies use the natural log and are computed in float64. Per-input values come back as
tensors ``[B]``; the entropy-CDF area as a float.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import Tensor

from bbh.enums import EntropyForm
from bbh.metrics._validation import as_tensor, check_logits, check_scores, to_probs
from bbh.options import parse_enum

__all__ = [
    "MI_ROUNDOFF",
    "PAPER_PROB_FLOOR",
    "EntropyForm",
    "entropy_cdf_area",
    "expected_entropy",
    "floor_roundoff",
    "max_probability",
    "mutual_information",
    "predictive_entropy",
]

#: The authors floor probabilities inside the log: ``-sum_c p_c log max(p_c, 1e-5)`` (the paper's
#: code, pawni/BayesByHypernet, ``utils.calc_entropy``).
PAPER_PROB_FLOOR = 1e-5

#: Mutual information below this (nats) is float64 round-off and is set to exactly 0, so that a
#: deterministic model's scores tie (an OOD AUROC of 0.5) instead of ranking round-off noise.
MI_ROUNDOFF = 1e-10


def predictive_entropy(logits_or_probs: Any, *, form: EntropyForm | str = "clean") -> Tensor:
    """Entropy ``[B]`` of the predictive ``p = mean_s softmax(logits_s)``, in nats.

    Args:
        logits_or_probs: Logits ``[S, B, C]`` (their softmaxes are averaged) or probabilities
            ``[B, C]``.
        form: ``clean`` or ``paper`` (``EntropyForm``).

    Returns:
        Entropies ``[B]``, float64.

    Raises:
        ValueError: ``form`` is unknown, or the input is not ``[S, B, C]`` or ``[B, C]`` with
            finite values.
    """
    form = parse_enum(EntropyForm, form, "form")
    t = as_tensor(logits_or_probs, "logits_or_probs")
    if form is EntropyForm.CLEAN and t.dim() == 3:
        logits = check_logits(t, "logits_or_probs").double()
        log_p = torch.logsumexp(logits.log_softmax(dim=-1), dim=0) - math.log(logits.shape[0])
        return (-(log_p.exp() * log_p).sum(dim=-1)).clamp_min(0.0)
    probs = to_probs(t).double()
    if form is EntropyForm.PAPER:
        return -(probs * probs.clamp_min(PAPER_PROB_FLOOR).log()).sum(dim=-1)
    return (-torch.special.xlogy(probs, probs).sum(dim=-1)).clamp_min(0.0)


def expected_entropy(logits: Any) -> Tensor:
    """``mean_s H[softmax(logits_s)]`` ``[B]``: the aleatoric part of the predictive entropy.

    Args:
        logits: Logits ``[S, B, C]``.

    Returns:
        ``[B]``, float64.

    Raises:
        ValueError: ``logits`` is not ``[S, B, C]`` with finite values.
    """
    logits = check_logits(logits).double()
    log_p = logits.log_softmax(dim=-1)
    return -(log_p.exp() * log_p).sum(dim=-1).mean(dim=0)


def mutual_information(logits: Any) -> Tensor:
    """Mutual information between prediction and weights ``[B]`` (the BALD score):
    ``H[mean_s p_s] - mean_s H[p_s]``; values below ``MI_ROUNDOFF`` are round-off and set to 0.
    It is exactly 0 for a deterministic model (all samples equal).

    Args:
        logits: Logits ``[S, B, C]``.

    Returns:
        ``[B]``, float64.

    Raises:
        ValueError: ``logits`` is not ``[S, B, C]`` with finite values.
    """
    logits = check_logits(logits)
    return floor_roundoff(predictive_entropy(logits) - expected_entropy(logits))


def floor_roundoff(mutual_info: Tensor) -> Tensor:
    """Mutual information with values below ``MI_ROUNDOFF`` (round-off, or negative) set to 0."""
    return torch.where(mutual_info < MI_ROUNDOFF, torch.zeros_like(mutual_info), mutual_info)


def max_probability(logits_or_probs: Any) -> Tensor:
    """Largest predictive probability ``[B]`` (the confidence).

    Args:
        logits_or_probs: Logits ``[S, B, C]`` (their softmaxes are averaged) or probabilities
            ``[B, C]``.

    Returns:
        ``[B]``, float64.
    """
    return to_probs(logits_or_probs).double().max(dim=-1).values


def entropy_cdf_area(entropies: Any, num_classes: int) -> float:
    """The paper's "entropy AUC": the area under the empirical CDF of per-input entropies.

    Not a ROC AUC (docs/evaluation.md, "The paper's "entropy AUC" is the area under the entropy
    CDF"). Exactly the authors' binning (the paper's code, pawni/BayesByHypernet,
    ``utils.calc_ent_auc``): ``H_max = ln C``,
    ``bins = np.arange(0, H_max, H_max / 500)`` (last edge ~0.998 H_max), a ``density=True``
    histogram (entropies above the last edge are dropped before normalising), ``c_k =
    sum_{i<=k} hist_i * delta`` and score ``sum_k delta * c_k`` ~ ``0.998 H_max - mean(H)``.
    High on in-distribution data (confident), low on OOD data (uncertain). When no entropy falls
    inside the bins (the authors' code would give NaN) the score is 0, the CDF's value there.

    Args:
        entropies: Per-input entropies (any shape; flattened).
        num_classes: C, an int ``>= 2``.

    Returns:
        The area, in ``[0, ln C]``.

    Raises:
        ValueError: ``num_classes`` is not an int ``>= 2``, or the entropies are empty or not
            finite.
    """
    if not isinstance(num_classes, int) or num_classes < 2:
        raise ValueError(f"num_classes must be an int >= 2, got {num_classes!r}")
    ents = check_scores(as_tensor(entropies, "entropies").reshape(-1), "entropies").numpy()
    h_max = math.log(num_classes)
    bins = np.arange(0, h_max, h_max / 500)
    inside = (ents >= bins[0]) & (ents <= bins[-1])
    if not inside.any():
        return 0.0
    hist, _ = np.histogram(ents, bins=bins, density=True)
    delta = np.diff(bins)
    cdf = np.cumsum(hist * delta)
    return float(np.sum(delta * cdf))
