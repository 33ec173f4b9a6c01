"""Metrics as pure functions of logits ``[S, B, C]``, predictive probabilities ``[B, C]`` or,
for regression, predictive means and standard deviations ``[B, C]``.

- ``classification``: accuracy, NLL, Brier score, ECE with reliability-diagram bins, the
  paper's degenerate calibration output (``true_class_confidence_bins``), and a bootstrap
  interval over the test examples for any of them (``bootstrap_interval``).
- ``uncertainty``: predictive entropy (clean and paper forms), expected entropy, mutual
  information, max probability, and the paper's "entropy AUC" (``entropy_cdf_area``).
- ``regression``: of a Gaussian predictive (mean and std ``[B, C]``, ``Method.predict`` for
  ``likelihood="gaussian"``): RMSE, Gaussian NLL, coverage of ``mean +- k std`` and the
  calibration error of central intervals (Kuleshov et al. 2018).
- ``rejection``: the accuracy-rejection curve (accuracy of the most confident fraction kept)
  and its area, confidence by max probability or predictive entropy.
- ``ood``: AUROC, AUPR and FPR at 95% TPR, OOD as the positive class (additions a reviewer
  asks for; the paper compares entropy-CDF areas instead, docs/evaluation.md).
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
from bbh.metrics.regression import (
    CALIBRATION_LEVELS,
    gaussian_nll,
    interval_calibration_error,
    interval_coverage,
    regression_metrics,
    rmse,
)
from bbh.metrics.rejection import (
    ConfidenceScore,
    RejectionCurve,
    accuracy_rejection_area,
    accuracy_rejection_curve,
)
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
    "CALIBRATION_LEVELS",
    "MI_ROUNDOFF",
    "OOD_SCORES",
    "PAPER_PROB_FLOOR",
    "ConfidenceScore",
    "EntropyForm",
    "RejectionCurve",
    "ReliabilityBins",
    "accuracy",
    "accuracy_rejection_area",
    "accuracy_rejection_curve",
    "aupr",
    "auroc",
    "bootstrap_interval",
    "brier_score",
    "entropy_cdf_area",
    "expected_calibration_error",
    "expected_entropy",
    "fpr_at_95_tpr",
    "gaussian_nll",
    "interval_calibration_error",
    "interval_coverage",
    "max_probability",
    "mutual_information",
    "nll",
    "ood_detection",
    "ood_scores",
    "predictive_entropy",
    "regression_metrics",
    "reliability_bins",
    "rmse",
    "true_class_confidence_bins",
]
