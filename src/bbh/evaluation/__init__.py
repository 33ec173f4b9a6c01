"""Evaluation (docs/evaluation.md): ``evaluate`` builds one JSON-ready dict with the paper's
protocol and the extended suite; ``evaluate_regression`` scores a regression method
(``likelihood="gaussian"``) with the regression metrics; ``studies`` holds the qualitative MNIST
studies; ``evaluate_shift`` scores a method under dataset shift (``bbh.data.shift``); ``figures``
writes PNGs (matplotlib, the ``plot`` extra, imported lazily).
"""

from bbh.evaluation.evaluate import (
    AttackConfig,
    Predictions,
    evaluate,
    predict_batched,
    to_jsonable,
    write_json,
)
from bbh.evaluation.regression import evaluate_regression, predict_regression
from bbh.evaluation.shift import SHIFT_METRICS, evaluate_shift
from bbh.evaluation.studies import (
    PAPER_MIXUP,
    PAPER_MIXUP_LAMBDAS,
    PAPER_ROTATIONS,
    Study,
    WeightStatistics,
    mixup_images,
    mixup_study,
    per_class_spread,
    rotate_images,
    rotation_study,
    sample_probs,
    weight_statistics,
)
from bbh.progress import Progress

__all__ = [
    "PAPER_MIXUP",
    "PAPER_MIXUP_LAMBDAS",
    "PAPER_ROTATIONS",
    "SHIFT_METRICS",
    "AttackConfig",
    "Predictions",
    "Progress",
    "Study",
    "WeightStatistics",
    "evaluate",
    "evaluate_regression",
    "evaluate_shift",
    "mixup_images",
    "mixup_study",
    "per_class_spread",
    "predict_batched",
    "predict_regression",
    "rotate_images",
    "rotation_study",
    "sample_probs",
    "to_jsonable",
    "weight_statistics",
    "write_json",
]
