"""``evaluate_regression``: the regression suite for a method with ``likelihood="gaussian"``.

Predicts the test inputs in batches (``Method.predict``, a ``RegressionPrediction`` per batch)
and scores the Gaussian predictive with ``bbh.metrics.regression``: RMSE of the mean, Gaussian
NLL, coverage of ``mean +- 1`` and ``2`` total std, and the calibration error of central intervals
(Kuleshov et al. 2018), plus the average epistemic and total std.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from bbh.likelihoods import RegressionPrediction
from bbh.metrics.regression import regression_metrics
from bbh.validation import at_least, checked_args

__all__ = ["evaluate_regression", "predict_regression"]


@checked_args(num_samples=at_least(1), batch_size=at_least(1))
def predict_regression(
    method: Any, x: Tensor, *, num_samples: int = 100, batch_size: int = 500
) -> RegressionPrediction:
    """``method.predict`` on ``x [N, ...]``, ``batch_size`` inputs at a time, joined: a
    ``RegressionPrediction`` with ``mean``, ``epistemic_std`` and ``std`` ``[N, C]``.

    Each input's moments come from ``num_samples`` weight draws (one pass for a deterministic
    method); draws are fresh per batch.

    Args:
        method: A method built with ``likelihood="gaussian"``.
        x: Inputs ``[N, ...]``.
        num_samples: Weight draws per input, at least 1.
        batch_size: Inputs per ``predict`` call, at least 1.

    Returns:
        The joined ``RegressionPrediction``.

    Raises:
        ValueError: ``x`` is not a non-empty tensor, or ``num_samples`` or ``batch_size`` is
            below 1.
        TypeError: The method's ``predict`` does not return a ``RegressionPrediction``.
    """
    if not isinstance(x, Tensor) or x.dim() < 1 or x.shape[0] == 0:
        shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
        raise ValueError(f"x must be a non-empty tensor [N, ...], got {shape}")
    parts = []
    for xb in x.split(batch_size):
        pred = method.predict(xb, num_samples)
        if not isinstance(pred, RegressionPrediction):
            raise TypeError(
                f"evaluate_regression needs a method built with likelihood='gaussian'; "
                f"{type(method).__name__}.predict returned {type(pred).__name__}"
            )
        parts.append(pred)
    return RegressionPrediction(
        mean=torch.cat([p.mean for p in parts]),
        epistemic_std=torch.cat([p.epistemic_std for p in parts]),
        std=torch.cat([p.std for p in parts]),
        noise_std=parts[0].noise_std,
    )


def evaluate_regression(
    method: Any,
    test_x: Tensor,
    test_y: Tensor,
    *,
    num_samples: int = 100,
    batch_size: int = 500,
) -> dict[str, Any]:
    """Score ``method`` on ``(test_x [N, ...], test_y [N] or [N, C])``; a JSON-ready dict.

    Keys: ``rmse``, ``nll`` (per example, summed over the C outputs), ``coverage_1std``,
    ``coverage_2std``, ``calibration_error`` (``bbh.metrics.regression``), ``mean_epistemic_std``,
    ``mean_std``, ``noise_std``, ``num_examples`` and ``num_samples`` (the draws per input:
    1 for a deterministic method, M for an ensemble).

    Args:
        method: A method built with ``likelihood="gaussian"``.
        test_x: Test inputs ``[N, ...]``.
        test_y: Targets ``[N]`` or ``[N, C]``.
        num_samples: Weight draws per input.
        batch_size: Inputs per ``predict`` call.

    Returns:
        The metrics by name (the keys above).

    Raises:
        ValueError: ``test_y`` and ``test_x`` differ in length, or a metric's checks fail.
        TypeError: The method is not a regression method.
    """
    pred = predict_regression(method, test_x, num_samples=num_samples, batch_size=batch_size)
    y = torch.as_tensor(test_y)
    if y.shape[0] != pred.mean.shape[0]:
        raise ValueError(f"test_y has {y.shape[0]} entries but test_x has {pred.mean.shape[0]}")
    draws = num_samples if getattr(method, "stochastic", True) else 1
    return {
        **regression_metrics(pred.mean, pred.std, y.to(pred.mean.device)),
        "mean_epistemic_std": float(pred.epistemic_std.double().mean()),
        "mean_std": float(pred.std.double().mean()),
        "noise_std": pred.noise_std,
        "num_examples": int(pred.mean.shape[0]),
        "num_samples": int(getattr(method, "fixed_num_samples", draws)),
    }
