"""``evaluate_regression``: batched regression predictions scored by ``bbh.metrics.regression``."""

from __future__ import annotations

import pytest
import torch

from bbh.evaluation import evaluate, evaluate_regression, predict_regression
from bbh.methods import build
from bbh.metrics import regression_metrics
from bbh.nets.mlp import MLP
from bbh.training import fit


def sine(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 1, generator=gen) * 6 - 3
    return x, torch.sin(x[:, 0]) + 0.1 * torch.randn(n, generator=gen)


@pytest.fixture(scope="module")
def fitted_map() -> torch.nn.Module:
    torch.manual_seed(0)
    method = build("map", MLP(1, [16], 1), likelihood="gaussian", noise_scale=0.1)
    x, y = sine(64, 0)
    fit(method, x, y, steps=250, batch_size=64, lr=1e-2, seed=0, log_every=250)
    return method


def test_evaluate_regression_scores_held_out_data(fitted_map) -> None:
    x, y = sine(100, 1)
    got = evaluate_regression(fitted_map, x, y, batch_size=7)  # batches of 7, last one 2
    pred = fitted_map.predict(x, 1)
    assert {k: got[k] for k in regression_metrics(pred.mean, pred.std, y)} == pytest.approx(
        regression_metrics(pred.mean, pred.std, y)
    )
    assert got["rmse"] < 0.2 and 0.5 < got["coverage_2std"] <= 1.0
    assert got["num_examples"] == 100 and got["num_samples"] == 1  # MAP: one pass
    assert got["mean_epistemic_std"] == 0.0 and got["mean_std"] == pytest.approx(0.1)


def test_predict_regression_joins_batches_of_a_stochastic_method() -> None:
    torch.manual_seed(0)
    method = build("mc_dropout", MLP(1, [8], 2), likelihood="gaussian", noise_scale=0.5, p=0.3)
    x = torch.randn(11, 1)
    pred = predict_regression(method, x, num_samples=5, batch_size=4)
    assert pred.mean.shape == pred.std.shape == pred.epistemic_std.shape == (11, 2)
    assert pred.noise_std == 0.5 and (pred.std >= pred.epistemic_std).all()
    assert evaluate_regression(method, x, torch.randn(11, 2), num_samples=5)["num_samples"] == 5


def test_classifiers_and_regressors_each_get_a_clear_error(fitted_map) -> None:
    x, y = sine(10, 2)
    with pytest.raises(ValueError, match=r"evaluate scores classifiers.*evaluate_regression"):
        evaluate(fitted_map, x, y.long(), attacks=None, progress=False)
    classifier = build("map", MLP(1, [4], 3))
    with pytest.raises(TypeError, match="needs a method built with likelihood='gaussian'"):
        evaluate_regression(classifier, x, y)
    with pytest.raises(ValueError, match="test_y has 9 entries but test_x has 10"):
        evaluate_regression(fitted_map, x, y[:9])
    with pytest.raises(ValueError, match=r"x must be a non-empty tensor"):
        predict_regression(fitted_map, x[:0])
