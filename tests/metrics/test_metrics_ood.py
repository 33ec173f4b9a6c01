"""OOD metrics against scikit-learn (OOD = positive class, higher score = more OOD)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import average_precision_score, roc_auc_score, roc_curve

from bbh.metrics import OOD_SCORES, aupr, auroc, fpr_at_95_tpr, ood_detection, ood_scores


def _scores(seed: int, ties: bool):
    rng = np.random.default_rng(seed)
    s_in = rng.normal(0.0, 1.0, 300)
    s_out = rng.normal(0.8, 1.2, 170)
    if ties:
        s_in, s_out = np.round(s_in, 1), np.round(s_out, 1)
    y = np.r_[np.zeros(len(s_in)), np.ones(len(s_out))]
    return s_in, s_out, y, np.r_[s_in, s_out]


@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_against_sklearn(seed: int, ties: bool) -> None:
    s_in, s_out, y, s = _scores(seed, ties)
    assert auroc(s_in, s_out) == pytest.approx(roc_auc_score(y, s), abs=1e-12)
    assert aupr(s_in, s_out) == pytest.approx(average_precision_score(y, s), abs=1e-12)
    fpr, tpr, _ = roc_curve(y, s, drop_intermediate=False)
    expected = fpr[np.argmax(tpr >= 0.95)]
    assert fpr_at_95_tpr(torch.from_numpy(s_in), torch.from_numpy(s_out)) == pytest.approx(expected)


def test_perfect_separation() -> None:
    assert auroc([0.0, 0.1], [0.5, 0.9]) == 1.0
    assert aupr([0.0, 0.1], [0.5, 0.9]) == 1.0
    assert fpr_at_95_tpr([0.0, 0.1], [0.5, 0.9]) == 0.0
    assert auroc([0.5, 0.9], [0.0, 0.1]) == 0.0


def test_ood_scores_and_detection() -> None:
    g = torch.Generator().manual_seed(0)
    confident = 10 * torch.nn.functional.one_hot(torch.randint(0, 4, (50,), generator=g), 4)
    logits_in = confident.float()[None] + 0.1 * torch.randn(5, 50, 4, generator=g)
    logits_out = torch.randn(5, 40, 4, generator=g)
    s_in, s_out = ood_scores(logits_in), ood_scores(logits_out)
    assert tuple(s_in) == OOD_SCORES
    res = ood_detection(s_in, s_out)
    for name in OOD_SCORES:
        assert res[name]["auroc"] > 0.9
        assert set(res[name]) == {"auroc", "aupr", "fpr_at_95_tpr"}
    assert "mutual_information" not in ood_scores(logits_in.softmax(-1).mean(0))


def test_empty_ood_set_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="scores_out is empty"):
        auroc([0.1, 0.2], [])
    with pytest.raises(ValueError, match=r"scores_out\['entropy'\] is empty"):
        ood_detection({"entropy": torch.rand(3)}, {"entropy": torch.rand(0)})
    with pytest.raises(ValueError, match="scores_in contains"):
        aupr([float("nan")], [0.1])
