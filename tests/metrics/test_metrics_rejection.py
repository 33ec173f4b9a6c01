"""The accuracy-rejection curve and its area against hand computations and edge cases."""

from __future__ import annotations

import math

import pytest
import torch

from bbh.metrics import (
    RejectionCurve,
    accuracy,
    accuracy_rejection_area,
    accuracy_rejection_curve,
)


def _probs(confidences: list[float], correct: list[bool]) -> tuple[torch.Tensor, torch.Tensor]:
    """Two-class probabilities whose max is each confidence, predicting class 0; the label is 0
    where the prediction is correct."""
    p = torch.tensor(confidences, dtype=torch.float64)
    probs = torch.stack([p, 1 - p], dim=1)
    labels = torch.tensor([0 if c else 1 for c in correct])
    return probs, labels


def test_area_and_curve_match_a_hand_computation() -> None:
    probs, y = _probs([0.9, 0.6, 0.8, 0.7], [True, False, False, True])
    # ranked: 0.9 (right), 0.8 (wrong), 0.7 (right), 0.6 (wrong): accuracy of the top k
    by_k = [1.0, 1 / 2, 2 / 3, 2 / 4]
    assert accuracy_rejection_area(probs, y) == pytest.approx(sum(by_k) / 4)
    curve = accuracy_rejection_curve(probs, y, num_points=5)  # f = 0, .25, .5, .75, 1
    assert isinstance(curve, RejectionCurve)
    assert curve.fractions.tolist() == pytest.approx([0.0, 0.25, 0.5, 0.75, 1.0])
    # k = max(1, ceil(f N)) = 1, 1, 2, 3, 4
    assert curve.accuracy.tolist() == pytest.approx([1.0, 1.0, 0.5, 2 / 3, 0.5])
    assert curve.accuracy[-1].item() == pytest.approx(accuracy(probs, y))
    assert curve.area == pytest.approx(sum(by_k) / 4)
    d = curve.to_dict()
    assert set(d) == {"fractions", "accuracy", "area", "confidence"}
    assert d["confidence"] == "max_probability"


def test_ties_count_with_their_group_mean_whatever_the_order() -> None:
    probs, y = _probs([0.9, 0.9, 0.6], [True, False, True])
    # the tied pair counts 0.5 per kept input: top 1 -> 0.5, top 2 -> 1/2, top 3 -> 2/3
    assert accuracy_rejection_area(probs, y) == pytest.approx((0.5 + 0.5 + 2 / 3) / 3)
    flipped = accuracy_rejection_area(probs[[1, 0, 2]], y[[1, 0, 2]])
    assert flipped == pytest.approx(accuracy_rejection_area(probs, y))


def test_all_tied_is_flat_at_the_accuracy() -> None:
    probs, y = _probs([0.7] * 5, [True, False, True, True, False])
    curve = accuracy_rejection_curve(probs, y, num_points=11)
    assert curve.accuracy.tolist() == pytest.approx([0.6] * 11)
    assert curve.area == pytest.approx(0.6)


@pytest.mark.parametrize(("correct", "expected"), [(True, 1.0), (False, 0.0)])
def test_all_correct_and_all_wrong(correct: bool, expected: float) -> None:
    probs, y = _probs([0.9, 0.55, 0.8, 0.7, 0.6], [correct] * 5)
    curve = accuracy_rejection_curve(probs, y)
    assert torch.all(curve.accuracy == expected)
    assert curve.area == expected
    assert accuracy_rejection_area(probs, y, confidence="entropy") == expected


def test_entropy_ranks_by_the_whole_distribution() -> None:
    # same max probability, different entropy: the flatter rest is less confident by entropy
    probs = torch.tensor([[0.5, 0.5, 0.0], [0.5, 0.25, 0.25]], dtype=torch.float64)
    y = torch.tensor([1, 0])  # the first (argmax 0) is wrong, the second right
    assert accuracy_rejection_area(probs, y) == pytest.approx(0.5)  # tied by max probability
    # by entropy the first (ln 2) is more confident than the second (1.5 ln 2): 0, then 1/2
    assert accuracy_rejection_area(probs, y, confidence="entropy") == pytest.approx(0.25)


def test_logits_are_reduced_to_the_predictive_mean() -> None:
    logits = torch.randn(4, 30, 3, generator=torch.Generator().manual_seed(0))
    y = torch.randint(0, 3, (30,), generator=torch.Generator().manual_seed(1))
    probs = logits.softmax(-1).mean(0)
    assert accuracy_rejection_area(logits, y) == pytest.approx(accuracy_rejection_area(probs, y))


def test_a_perfect_ranking_beats_the_accuracy_and_a_reversed_one_falls_below() -> None:
    good, y = _probs([0.95, 0.9, 0.8, 0.6, 0.55], [True, True, True, False, False])
    bad, _ = _probs([0.55, 0.6, 0.8, 0.9, 0.95], [True, True, True, False, False])
    assert accuracy_rejection_area(good, y) > accuracy(good, y) > accuracy_rejection_area(bad, y)


def test_bad_options_are_clear_errors() -> None:
    probs, y = _probs([0.9, 0.6], [True, False])
    with pytest.raises(ValueError, match="confidence"):
        accuracy_rejection_area(probs, y, confidence="margin")
    with pytest.raises(ValueError, match="num_points"):
        accuracy_rejection_curve(probs, y, num_points=1)
    with pytest.raises(ValueError, match="labels"):
        accuracy_rejection_area(probs, torch.tensor([0, 1, 0]))
    assert math.isfinite(accuracy_rejection_area(probs, y))
