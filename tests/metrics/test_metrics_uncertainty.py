"""Entropy, mutual information and the paper's entropy-CDF area on hand-made cases."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from bbh.metrics import (
    entropy_cdf_area,
    expected_entropy,
    max_probability,
    mutual_information,
    predictive_entropy,
)


def test_entropy_of_uniform_and_one_hot() -> None:
    probs = torch.tensor([[0.25] * 4, [1.0, 0.0, 0.0, 0.0]], dtype=torch.float64)
    h = predictive_entropy(probs)
    assert h.tolist() == pytest.approx([math.log(4), 0.0])
    assert predictive_entropy(probs, form="paper").tolist() == pytest.approx([math.log(4), 0.0])


def test_paper_form_floors_small_probabilities() -> None:
    probs = torch.tensor([[1 - 1e-7, 1e-7]], dtype=torch.float64)
    clean = -(probs * probs.log()).sum()
    paper = -(probs * probs.clamp_min(1e-5).log()).sum()
    assert float(predictive_entropy(probs)) == pytest.approx(float(clean))
    assert float(predictive_entropy(probs, form="paper")) == pytest.approx(float(paper))
    with pytest.raises(ValueError, match="unknown form"):
        predictive_entropy(probs, form="tsallis")


def test_entropy_from_logits_equals_entropy_of_mean_probs() -> None:
    logits = torch.randn(6, 10, 3, dtype=torch.float64) * 5
    probs = logits.softmax(-1).mean(0)
    assert torch.allclose(predictive_entropy(logits), predictive_entropy(probs))


def test_deterministic_model_has_zero_mutual_information() -> None:
    logits = torch.randn(1, 8, 5).expand(20, 8, 5)
    mi = mutual_information(logits)
    assert mi.shape == (8,)
    assert torch.equal(mi, torch.zeros(8, dtype=torch.float64))  # exactly: ties in OOD scores
    assert torch.allclose(expected_entropy(logits), predictive_entropy(logits))


def test_disagreeing_confident_samples_have_mutual_information_log2() -> None:
    # two samples, each certain, of different classes: H[mean] = ln 2, E[H] = 0
    logits = torch.tensor([[[50.0, -50.0]], [[-50.0, 50.0]]], dtype=torch.float64)
    assert float(mutual_information(logits)) == pytest.approx(math.log(2), abs=1e-9)
    assert float(expected_entropy(logits)) == pytest.approx(0.0, abs=1e-9)


def test_max_probability() -> None:
    probs = torch.tensor([[0.2, 0.8], [0.6, 0.4]], dtype=torch.float64)
    assert max_probability(probs).tolist() == pytest.approx([0.8, 0.6])


def _paper_calc_ent_auc(ents: np.ndarray, h_max: float) -> float:
    """The authors' computation, transcribed (the paper's ``utils.py``)."""
    bins = np.arange(0, h_max, h_max / 500)
    hist, _ = np.histogram(ents, bins=bins, density=True)
    cdf = np.cumsum(hist * np.diff(bins))
    return float(np.sum(np.diff(bins) * cdf))


def test_entropy_cdf_area_matches_paper_and_approximation() -> None:
    rng = np.random.default_rng(0)
    ents = rng.uniform(0, 0.9 * math.log(10), size=1000)
    area = entropy_cdf_area(torch.from_numpy(ents), 10)
    assert area == pytest.approx(_paper_calc_ent_auc(ents, math.log(10)))
    assert area == pytest.approx(0.998 * math.log(10) - ents.mean(), abs=0.01)


def test_entropy_cdf_area_extremes() -> None:
    h_max = math.log(10)
    assert entropy_cdf_area(np.zeros(50), 10) == pytest.approx(0.998 * h_max, rel=1e-3)
    assert entropy_cdf_area(np.full(5, h_max), 10) == 0.0  # all above the last edge
    with pytest.raises(ValueError, match="entropies is empty"):
        entropy_cdf_area(np.array([]), 10)
    with pytest.raises(ValueError, match="num_classes"):
        entropy_cdf_area(np.zeros(3), 1)


def test_mutual_information_needs_samples() -> None:
    with pytest.raises(ValueError, match=r"logits must have shape \[S, B, C\]"):
        mutual_information(torch.rand(4, 3).softmax(-1))
    with pytest.raises(ValueError, match="logits contains"):
        mutual_information(torch.tensor([[[float("nan"), 0.0]]]))
