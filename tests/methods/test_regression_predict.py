"""``predict`` for ``likelihood="gaussian"``: the predictive mean and standard deviations of every
method after a short fit of a 1-16-1 MLP to ``y = sin(x) + noise``; classification unchanged."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from method_helpers import make_net, small_options

from bbh import RegressionPrediction
from bbh.methods import available, build
from bbh.metrics import rmse
from bbh.nets.mlp import MLP
from bbh.training import fit

NOISE = 0.1
#: per case: registry name and options (fixed temperatures: no validation search here)
CASES: dict[str, tuple[str, dict[str, Any]]] = {
    "map": ("map", {}),
    "mc_dropout": ("mc_dropout", {"p": 0.1, "weight_decay": "none"}),
    "ensemble": ("ensemble", {"num_members": 3}),
    "bbb": ("bbb", {"temperature": 1.0}),
    "mnf": ("mnf", {}),
    "bbh": ("bbh", {"temperature": 1.0}),
    "bbh_exact_last_layer": ("bbh", {"temperature": 1.0, "last_layer": "exact"}),
}


def sine_data() -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(64, 1, generator=gen) * 6 - 3
    return x, torch.sin(x[:, 0]) + NOISE * torch.randn(64, generator=gen)


def test_every_registered_method_has_a_regression_case() -> None:
    assert {name for name, _ in CASES.values()} == set(available())


@pytest.mark.parametrize("case", sorted(CASES))
def test_regression_predict_returns_mean_and_stds(case: str) -> None:
    name, options = CASES[case]
    x, y = sine_data()
    torch.manual_seed(0)
    method = build(name, MLP(1, [16], 1), likelihood="gaussian", noise_scale=NOISE, **options)
    fit(method, x, y, steps=150, batch_size=64, lr=1e-2, seed=0, log_every=150)

    grid = torch.linspace(-2.5, 2.5, 50)[:, None]
    torch.manual_seed(1)
    pred = method.predict(grid, 16)
    assert isinstance(pred, RegressionPrediction)
    for field in (pred.mean, pred.epistemic_std, pred.std):
        assert field.shape == (50, 1) and torch.isfinite(field).all()
    assert pred.noise_std == NOISE
    assert (pred.epistemic_std >= 0).all() and (pred.std >= pred.epistemic_std).all()
    torch.testing.assert_close(pred.std.pow(2), pred.epistemic_std.pow(2) + NOISE**2)
    # a fitted mean, not a softmax (which is 1.0 everywhere for one output)
    assert rmse(pred.mean, torch.sin(grid)) < 0.25

    # the moments of the same draws predict_logits returns ([S, B, 1]; one pass for MAP)
    torch.manual_seed(1)
    f = method.predict_logits(grid, 16 if method.stochastic else 1)
    torch.testing.assert_close(pred.mean, f.mean(0))
    torch.testing.assert_close(pred.epistemic_std, f.std(0, correction=0))
    if method.stochastic:
        assert pred.epistemic_std.max() > 1e-3
    else:
        assert (pred.epistemic_std == 0).all() and (pred.std == NOISE).all()


def test_regression_prediction_of_several_outputs() -> None:
    """``C = 2`` outputs: per-output moments; S = 1 has no epistemic spread."""
    outputs = torch.tensor([[[0.0, 1.0]], [[2.0, 1.0]]])  # [S=2, B=1, C=2]
    pred = RegressionPrediction.from_samples(outputs, noise_std=0.5)
    torch.testing.assert_close(pred.mean, torch.tensor([[1.0, 1.0]]))
    torch.testing.assert_close(pred.epistemic_std, torch.tensor([[1.0, 0.0]]))
    torch.testing.assert_close(pred.std, torch.tensor([[1.25**0.5, 0.5]]))
    single = RegressionPrediction.from_samples(outputs[:1], noise_std=0.5)
    assert (single.epistemic_std == 0).all()
    with pytest.raises(ValueError, match=r"outputs must have shape \[S, B, C\]"):
        RegressionPrediction.from_samples(outputs[0], noise_std=0.5)


@pytest.mark.parametrize("name", available())
def test_classification_predict_is_the_mean_of_the_softmaxes(name: str) -> None:
    net, x, _ = make_net("mlp")
    torch.manual_seed(0)
    method = build(name, net, **small_options(name))
    torch.manual_seed(3)
    probs = method.predict(x, 4)
    torch.manual_seed(3)
    expected = method.predict_logits(x, 4).softmax(-1).mean(0)
    assert isinstance(probs, torch.Tensor) and probs.shape == (8, 3)
    torch.testing.assert_close(probs, expected)
    with pytest.raises(ValueError, match="num_samples must be an int >= 1"):
        method.predict(x, 0)
