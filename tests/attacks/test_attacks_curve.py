"""Robustness curves: per-epsilon accuracy, entropy and the share flagged uncertain."""

from __future__ import annotations

import json

import pytest

from bbh.attacks import PAPER_EPSILONS, robustness_curve
from bbh.metrics import accuracy


@pytest.mark.parametrize("attack", ["fgsm_paper", "fgsm", "pgd"])
def test_curve_shape_and_monotone_damage(dropout, data, attack) -> None:
    x, y = data
    curve = robustness_curve(
        dropout,
        x,
        y,
        PAPER_EPSILONS,
        attack=attack,
        num_samples=8,
        attack_samples=2,
        num_grad_samples=3,
        steps=3,
        uncertainty_threshold=0.5,
        batch_size=16,
    )
    json.dumps(curve)
    for key in ("accuracy", "mean_entropy", "entropy_cdf_area", "flagged_uncertain"):
        assert len(curve[key]) == len(PAPER_EPSILONS)
    assert curve["epsilons"] == list(PAPER_EPSILONS)
    assert curve["accuracy"][-1] < curve["accuracy"][0]
    assert all(0.0 <= v <= 1.0 for v in curve["flagged_uncertain"])


def test_eps_zero_is_clean_accuracy(linear, data) -> None:
    x, y = data
    curve = robustness_curve(linear, x, y, [0.0, 0.2], attack="fgsm", batch_size=7)
    assert curve["accuracy"][0] == pytest.approx(accuracy(linear.predict(x, 1), y))
    assert curve["num_samples"] == 1  # deterministic methods are evaluated once
    assert curve["flagged_uncertain"] is None


def test_curve_bad_input(linear, data) -> None:
    x, y = data
    with pytest.raises(ValueError, match="eps must be a finite number >= 0"):
        robustness_curve(linear, x, y, [0.0, -0.05])
    with pytest.raises(ValueError, match="unknown attack"):
        robustness_curve(linear, x, y, [0.1], attack="cw")
    with pytest.raises(ValueError, match="epsilons must not be empty"):
        robustness_curve(linear, x, y, [])
    with pytest.raises(ValueError, match="y must have shape"):
        robustness_curve(linear, x, y[:3], [0.1])
    with pytest.raises(ValueError, match="uncertainty_threshold"):
        robustness_curve(linear, x, y, [0.1], uncertainty_threshold=float("nan"))
