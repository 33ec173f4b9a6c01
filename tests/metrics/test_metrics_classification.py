"""Classification metrics against scikit-learn and hand-computed bins."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from sklearn.calibration import calibration_curve
from sklearn.metrics import brier_score_loss, log_loss

from bbh.metrics import (
    accuracy,
    bootstrap_interval,
    brier_score,
    expected_calibration_error,
    nll,
    reliability_bins,
    true_class_confidence_bins,
)


def _random(seed: int = 0, s: int = 7, b: int = 200, c: int = 5):
    g = torch.Generator().manual_seed(seed)
    logits = 2.0 * torch.randn(s, b, c, generator=g, dtype=torch.float64)
    labels = torch.randint(0, c, (b,), generator=g)
    return logits, labels


def test_accuracy_matches_argmax_of_mean_softmax() -> None:
    logits, y = _random()
    probs = logits.softmax(-1).mean(0)
    expected = float((probs.argmax(-1) == y).double().mean())
    assert accuracy(logits, y) == pytest.approx(expected)
    assert accuracy(probs, y) == pytest.approx(expected)


def test_nll_matches_sklearn_log_loss() -> None:
    logits, y = _random(1)
    probs = logits.softmax(-1).mean(0)
    ref = log_loss(y.numpy(), probs.numpy(), labels=list(range(5)))
    assert nll(logits, y) == pytest.approx(ref, rel=1e-9)
    assert nll(probs, y) == pytest.approx(ref, rel=1e-9)


def test_brier_matches_sklearn_summed_over_classes() -> None:
    logits, y = _random(2)
    probs = logits.softmax(-1).mean(0).numpy()
    ref = sum(brier_score_loss((y.numpy() == c).astype(int), probs[:, c]) for c in range(5))
    assert brier_score(logits, y) == pytest.approx(ref, rel=1e-9)


def test_ece_against_hand_computed_bins() -> None:
    # 4 bins of width 0.25; confidences 0.3, 0.4 (bin 1), 0.6 (bin 2), 0.9, 1.0 (bin 3)
    probs = torch.tensor(
        [
            [0.3, 0.7 / 3, 0.7 / 3, 0.7 / 3],
            [0.4, 0.2, 0.2, 0.2],
            [0.6, 0.2, 0.1, 0.1],
            [0.9, 0.05, 0.05, 0.0],
            [1.0, 0.0, 0.0, 0.0],
        ],
        dtype=torch.float64,
    )
    y = torch.tensor([0, 1, 0, 0, 2])  # correct: yes, no, yes, yes, no
    bins = reliability_bins(probs, y, num_bins=4)
    assert bins.counts.tolist() == [0, 2, 1, 2]
    assert bins.accuracy[1:].tolist() == pytest.approx([0.5, 1.0, 0.5])
    assert bins.confidence[1:].tolist() == pytest.approx([0.35, 0.6, 0.95])
    assert math.isnan(float(bins.accuracy[0]))
    expected = 2 / 5 * 0.15 + 1 / 5 * 0.4 + 2 / 5 * 0.45
    assert bins.ece == pytest.approx(expected)
    assert expected_calibration_error(probs, y, num_bins=4) == pytest.approx(expected)
    d = bins.to_dict()
    assert d["accuracy"][0] is None and d["counts"] == [0, 2, 1, 2]


def test_bin_edge_goes_to_lower_bin() -> None:
    probs = torch.tensor([[0.5, 0.5], [0.75, 0.25]], dtype=torch.float64)
    bins = reliability_bins(probs, torch.tensor([0, 0]), num_bins=4)
    assert bins.counts.tolist() == [0, 1, 1, 0]  # 0.5 in (0.25, 0.5], 0.75 in (0.5, 0.75]


def test_ece_is_zero_for_perfectly_calibrated_bins() -> None:
    probs = torch.tensor([[0.9, 0.1]] * 10, dtype=torch.float64)
    y = torch.tensor([0] * 9 + [1])
    assert expected_calibration_error(probs, y, num_bins=10) == pytest.approx(0.0, abs=1e-12)


def test_true_class_confidence_bins_match_sklearn_prob_pred() -> None:
    logits, y = _random(3, b=500)
    probs = logits.softmax(-1).mean(0)
    p_true = probs.gather(1, y[:, None]).squeeze(1).numpy()
    _, prob_pred = calibration_curve(np.ones_like(p_true), p_true, n_bins=50)
    out = true_class_confidence_bins(probs, y)
    assert np.allclose(out["mean_true_class_probability"], prob_pred)
    assert sum(out["counts"]) == 500


@pytest.mark.parametrize(
    ("args", "match"),
    [
        ((torch.rand(3, 4) / 2, torch.tensor([0, 1, 2])), "rows of logits_or_probs must sum to 1"),
        ((torch.randn(2, 3, 4, 5), torch.tensor([0, 1, 2])), "logits_or_probs must be"),
        ((torch.randn(2, 3, 4), torch.tensor([0, 1, 4])), r"labels must lie in \[0, 4\)"),
        ((torch.randn(2, 3, 4), torch.tensor([0, 1])), "labels has 2 entries"),
        ((torch.randn(2, 3, 4), torch.tensor([0.0, 1.0, 2.0])), "labels must be integer"),
        (
            (torch.full((2, 3, 4), float("nan")), torch.tensor([0, 1, 2])),
            "logits_or_probs contains",
        ),
    ],
)
def test_bad_input_names_the_argument(args, match) -> None:
    for fn in (accuracy, nll, brier_score, expected_calibration_error):
        with pytest.raises((ValueError, TypeError), match=match):
            fn(*args)


def test_num_bins_must_be_positive() -> None:
    logits, y = _random()
    with pytest.raises(ValueError, match="num_bins"):
        reliability_bins(logits, y, num_bins=0)


def test_bootstrap_interval_covers_the_value_and_narrows_with_more_examples() -> None:
    gen = torch.Generator().manual_seed(0)

    def predictions(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        y = torch.randint(0, 4, (n,), generator=gen)
        logits = torch.randn(n, 4, generator=gen) + 2.0 * torch.nn.functional.one_hot(y, 4)
        return logits.softmax(-1), y

    small, large = predictions(200), predictions(20_000)
    widths = []
    for probs, y in (small, large):
        for metric in (accuracy, nll, expected_calibration_error):
            low, high = bootstrap_interval(metric, probs, y, replicates=100)
            assert low < metric(probs, y) < high
        low, high = bootstrap_interval(accuracy, probs, y, replicates=100)
        widths.append(high - low)
    assert widths[1] < widths[0] / 5  # ~ 1 / sqrt(n): 100x fewer examples, ~10x wider
    again = bootstrap_interval(nll, *small, replicates=100)
    assert again == bootstrap_interval(nll, *small, replicates=100)  # seeded
    assert bootstrap_interval(nll, *small, replicates=100, seed=1) != again
    with pytest.raises(ValueError, match="replicates"):
        bootstrap_interval(nll, *small, replicates=1)
    with pytest.raises(ValueError, match="level"):
        bootstrap_interval(nll, *small, level=1.5)
