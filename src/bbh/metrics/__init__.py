"""Metrics as pure functions of logits ``[S, B, C]`` or predictive probabilities ``[B, C]``.

- ``classification``: accuracy, NLL, Brier score, ECE with reliability-diagram bins, the
  paper's degenerate calibration output (``true_class_confidence_bins``), and a bootstrap
  interval over the test examples for any of them (``bootstrap_interval``).
- ``uncertainty``: predictive entropy (clean and paper forms), expected entropy, mutual
  information, max probability, and the paper's "entropy AUC" (``entropy_cdf_area``).
- ``ood``: AUROC, AUPR and FPR at 95% TPR, OOD as the positive class (PAPER.md §9 gives the
  paper's protocol; these OOD metrics are additions a reviewer asks for).
"""

from bbh.metrics.classification import (
    ReliabilityBins,
    accuracy,
    bootstrap_interval,
    brier_score,
    expected_calibration_error,
    nll,
    reliability_bins,
    true_class_confidence_bins,
)
from bbh.metrics.ood import OOD_SCORES, aupr, auroc, fpr_at_95_tpr, ood_detection, ood_scores
from bbh.metrics.uncertainty import (
    MI_ROUNDOFF,
    PAPER_PROB_FLOOR,
    EntropyForm,
    entropy_cdf_area,
    expected_entropy,
    max_probability,
    mutual_information,
    predictive_entropy,
)

__all__ = [
    "MI_ROUNDOFF",
    "OOD_SCORES",
    "PAPER_PROB_FLOOR",
    "EntropyForm",
    "ReliabilityBins",
    "accuracy",
    "aupr",
    "auroc",
    "bootstrap_interval",
    "brier_score",
    "entropy_cdf_area",
    "expected_calibration_error",
    "expected_entropy",
    "fpr_at_95_tpr",
    "max_probability",
    "mutual_information",
    "nll",
    "ood_detection",
    "ood_scores",
    "predictive_entropy",
    "reliability_bins",
    "true_class_confidence_bins",
]
