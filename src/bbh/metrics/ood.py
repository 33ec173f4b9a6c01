"""Out-of-distribution detection: AUROC, AUPR and FPR at 95% TPR.

Convention (everywhere in ``bbh``): **OOD inputs are the positive class and a higher score means
"more OOD"**. ``scores_in`` are the scores of in-distribution inputs (negatives), ``scores_out``
those of OOD inputs (positives). ``aupr`` is therefore the AUPR with OOD as positive (sometimes
called AUPR-Out), computed as average precision (step-wise, as scikit-learn does), and
``fpr_at_95_tpr`` is the share of in-distribution inputs flagged at the strictest threshold that
still flags at least 95% of the OOD inputs.

The scores (``ood_scores``): predictive ``entropy``, ``mutual_information`` (needs logits
``[S, B, C]``) and ``max_probability``, used as ``1 - max_c p_c`` so that higher is more OOD.
These are a reviewer's additions; the paper compares entropy-CDF areas instead
(``bbh.metrics.uncertainty.entropy_cdf_area``; docs/evaluation.md).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from torch import Tensor

from bbh.metrics._validation import as_tensor, check_scores
from bbh.metrics.uncertainty import max_probability, mutual_information, predictive_entropy

__all__ = ["OOD_SCORES", "aupr", "auroc", "fpr_at_95_tpr", "ood_detection", "ood_scores"]

#: Score names, in the order ``ood_scores`` returns them.
OOD_SCORES = ("entropy", "mutual_information", "max_probability")


def auroc(scores_in: Any, scores_out: Any) -> float:
    """Area under the ROC curve, OOD positive: ``P(s_out > s_in) + P(s_out = s_in) / 2``.

    Args:
        scores_in: In-distribution scores ``[N_in]`` (higher: more OOD).
        scores_out: OOD scores ``[N_out]``.

    Returns:
        The AUROC in ``[0, 1]``.

    Raises:
        ValueError: A score vector is not 1-D, is empty or holds a non-finite value.
    """
    neg, pos = _split(scores_in, scores_out)
    allv = np.concatenate([neg, pos])
    ranks = _average_ranks(allv)
    n_pos, n_neg = len(pos), len(neg)
    rank_sum = ranks[n_neg:].sum()
    return float((rank_sum - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def aupr(scores_in: Any, scores_out: Any) -> float:
    """Average precision with OOD as the positive class: ``sum_k (R_k - R_{k-1}) P_k`` over the
    distinct thresholds (no interpolation; equals scikit-learn's ``average_precision_score``).

    Args:
        scores_in: In-distribution scores ``[N_in]`` (higher: more OOD).
        scores_out: OOD scores ``[N_out]``.

    Returns:
        The AUPR in ``[0, 1]``.

    Raises:
        ValueError: A score vector is not 1-D, is empty or holds a non-finite value.
    """
    tps, fps, n_pos, _ = _curve(scores_in, scores_out)
    precision = tps / (tps + fps)
    recall = tps / n_pos
    return float(np.sum(np.diff(recall, prepend=0.0) * precision))


def fpr_at_95_tpr(scores_in: Any, scores_out: Any, *, tpr: float = 0.95) -> float:
    """False-positive rate (in-distribution inputs flagged as OOD) at the first threshold whose
    true-positive rate (OOD inputs flagged) reaches ``tpr``.

    Args:
        scores_in: In-distribution scores ``[N_in]`` (higher: more OOD).
        scores_out: OOD scores ``[N_out]``.
        tpr: The true-positive rate to reach, in ``(0, 1]``.

    Returns:
        The false-positive rate in ``[0, 1]``.

    Raises:
        ValueError: ``tpr`` is out of range, or a score vector fails the checks of ``auroc``.
    """
    if not 0.0 < tpr <= 1.0:
        raise ValueError(f"tpr must be in (0, 1], got {tpr!r}")
    tps, fps, n_pos, n_neg = _curve(scores_in, scores_out)
    k = int(np.argmax(tps / n_pos >= tpr - 1e-12))
    return float(fps[k] / n_neg)


def ood_scores(logits_or_probs: Any) -> dict[str, Tensor]:
    """Per-input OOD scores ``[B]`` (higher = more OOD): ``entropy`` (clean form),
    ``mutual_information`` (only from logits ``[S, B, C]``) and ``max_probability``
    (as ``1 - max_c p_c``).

    Args:
        logits_or_probs: Logits ``[S, B, C]`` (their softmaxes are averaged) or probabilities
            ``[B, C]``.

    Returns:
        Score name -> ``[B]``.
    """
    t = as_tensor(logits_or_probs, "logits_or_probs")
    out = {"entropy": predictive_entropy(t)}
    if t.dim() == 3:
        out["mutual_information"] = mutual_information(t)
    out["max_probability"] = 1.0 - max_probability(t)
    return out


def ood_detection(
    scores_in: dict[str, Any], scores_out: dict[str, Any]
) -> dict[str, dict[str, float]]:
    """AUROC, AUPR and FPR@95%TPR for every score present in both dicts (see ``ood_scores``).

    Args:
        scores_in: Score name -> in-distribution scores ``[N_in]`` (``ood_scores``).
        scores_out: Score name -> OOD scores ``[N_out]``.

    Returns:
        Score name -> ``{"auroc", "aupr", "fpr_at_95_tpr"}``.

    Raises:
        TypeError: ``scores_in`` or ``scores_out`` is not a dict.
        ValueError: They share no score name, or a score vector fails the checks of ``auroc``.
    """
    if not isinstance(scores_in, dict) or not isinstance(scores_out, dict):
        raise TypeError("scores_in and scores_out must be dicts of score name -> per-input scores")
    names = [n for n in scores_in if n in scores_out]
    if not names:
        raise ValueError("scores_in and scores_out share no score name")
    result = {}
    for name in names:
        s_in = check_scores(scores_in[name], f"scores_in[{name!r}]")
        s_out = check_scores(scores_out[name], f"scores_out[{name!r}]")
        result[name] = {
            "auroc": auroc(s_in, s_out),
            "aupr": aupr(s_in, s_out),
            "fpr_at_95_tpr": fpr_at_95_tpr(s_in, s_out),
        }
    return result


def _split(scores_in: Any, scores_out: Any) -> tuple[np.ndarray, np.ndarray]:
    neg = check_scores(scores_in, "scores_in").numpy()
    pos = check_scores(scores_out, "scores_out").numpy()
    return neg, pos


def _average_ranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks, ties given their average rank."""
    order = np.argsort(values, kind="mergesort")
    _, starts, counts = np.unique(values[order], return_index=True, return_counts=True)
    avg = starts + (counts + 1) / 2.0
    ranks = np.empty(len(values), dtype=np.float64)
    ranks[order] = np.repeat(avg, counts)
    return ranks


def _curve(scores_in: Any, scores_out: Any) -> tuple[np.ndarray, np.ndarray, int, int]:
    """Cumulative true and false positives at each distinct threshold, from high to low."""
    neg, pos = _split(scores_in, scores_out)
    scores = np.concatenate([neg, pos])
    is_pos = np.concatenate([np.zeros(len(neg)), np.ones(len(pos))])
    order = np.argsort(-scores, kind="mergesort")
    scores, is_pos = scores[order], is_pos[order]
    last = np.r_[np.nonzero(np.diff(scores))[0], len(scores) - 1]
    tps = np.cumsum(is_pos)[last]
    fps = (last + 1) - tps
    return tps, fps, len(pos), len(neg)
