"""Bayesian fine-tuning (``bbh.finetune``, ``bbh.training.start_from``): the posterior starts at
the trained net's function and training keeps its accuracy; methods that cannot fine-tune are
refused in one line."""

from __future__ import annotations

import pytest
import torch

import bbh
from bbh.nets import MLP
from bbh.training import FINETUNE_STARTS, start_from


def _data(n: int = 600, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 16, generator=g)
    w = torch.randn(16, 3, generator=g)
    return x, (x @ w + 0.3 * torch.randn(n, 3, generator=g)).argmax(1)


def _trained(hidden: list[int]) -> torch.nn.Module:
    x, y = _data()
    torch.manual_seed(0)
    point = bbh.build("map", MLP(16, hidden, 3))
    bbh.fit(point, x, y, steps=200, batch_size=50)
    return point.net.eval()


@pytest.fixture(scope="module")
def small_net() -> torch.nn.Module:
    return _trained([8])  # 163 weights: BbH's small-net (affine) generator


@pytest.fixture(scope="module")
def large_net() -> torch.nn.Module:
    return _trained([64])  # 1,283 weights: the chunked generator


def _accuracy(probs: torch.Tensor, y: torch.Tensor) -> float:
    return float((probs.argmax(1) == y).float().mean())


@pytest.mark.parametrize(
    ("net_name", "method", "options"),
    [
        ("small_net", "bbh", {}),
        ("large_net", "bbh", {}),
        ("small_net", "bbh", {"preset": "paper"}),  # layer-wise generators: zero means at build
        ("large_net", "bbb", {}),
    ],
)
def test_the_start_is_the_trained_function(net_name, method, options, request):
    net = request.getfixturevalue(net_name)
    x, _ = _data(200, seed=1)
    with torch.no_grad():
        reference = net(x).softmax(-1)
    torch.manual_seed(1)
    model = start_from(net, method, **options).eval()
    probs = model.predict(x, num_samples=50)
    assert (probs - reference).abs().max() < 0.05
    assert (probs - reference).abs().mean() < 0.005
    assert all(p.requires_grad is True for p in net.parameters())  # the user's net is untouched


def test_without_centring_the_chunked_start_drifts(large_net):
    """What ``start_from`` corrects: ``bbh.build`` alone puts the chunked generator's own spread
    (larger than sigma) on the trained weights."""
    x, _ = _data(200, seed=1)
    with torch.no_grad():
        reference = large_net(x).softmax(-1)
    torch.manual_seed(1)
    built = bbh.build("bbh", large_net).eval()
    centred = start_from(large_net, "bbh").eval()
    torch.manual_seed(2)
    drift_built = (built.predict(x, num_samples=50) - reference).abs().mean()
    torch.manual_seed(2)
    drift_centred = (centred.predict(x, num_samples=50) - reference).abs().mean()
    assert drift_centred < drift_built / 2


@pytest.mark.parametrize("method", ["bbh", "bbb"])
def test_finetuning_keeps_the_accuracy(method, large_net):
    x, y = _data()
    xt, yt = _data(400, seed=2)
    with torch.no_grad():
        before = _accuracy(large_net(xt).softmax(-1), yt)
    torch.manual_seed(0)
    model = bbh.finetune(large_net, x, y, method, steps=24, batch_size=50, temperature=1.0)
    after = _accuracy(model.eval().predict(xt, num_samples=20), yt)
    assert after >= before - 0.02


def test_finetune_chooses_the_temperature_on_validation(small_net):
    x, y = _data()
    torch.manual_seed(0)
    model = bbh.finetune(
        small_net, x[:500], y[:500], "bbb", steps=4, batch_size=100,
        validation=(x[500:], y[500:]),
    )  # fmt: skip
    assert model.temperature_candidates  # a search, whose choice lies on the candidates' range
    chosen = float(model.temperature)
    assert min(model.temperature_candidates) <= chosen <= max(model.temperature_candidates)


@pytest.mark.parametrize(
    ("method", "message"),
    [
        ("ensemble", "a deep ensemble is not a fine-tuning method"),
        ("mnf", "mnf cannot fine-tune a trained net"),
        ("bayes", "unknown method 'bayes'"),
    ],
)
def test_methods_that_cannot_finetune_are_refused(method, message, small_net):
    with pytest.raises(ValueError, match=message) as err:
        bbh.finetune(small_net, *_data(50), method, steps=1)
    assert "\n" not in str(err.value)


def test_finetune_warms_up_unless_told_otherwise(small_net, monkeypatch):
    import bbh.training.finetuning as finetuning

    seen: list[dict] = []
    monkeypatch.setattr(finetuning, "fit", lambda *args, **kwargs: seen.append(kwargs))
    x, y = _data(100)
    bbh.finetune(small_net, x, y, "map", steps=2, batch_size=50)
    bbh.finetune(small_net, x, y, "map", steps=2, batch_size=50, fit_options={"lr_warmup": 0.0})
    assert [kw["lr_warmup"] for kw in seen] == [finetuning.FINETUNE_WARMUP, 0.0]


def test_every_finetune_method_is_registered():
    assert set(FINETUNE_STARTS) <= set(bbh.methods.available())


def test_mc_dropout_starts_at_the_net_with_dropout(small_net):
    x, _ = _data(200, seed=1)
    torch.manual_seed(0)
    model = start_from(small_net, "mc_dropout", p=0.05).eval()
    with torch.no_grad():
        reference = small_net(x).softmax(-1)
    assert (model.predict(x, num_samples=50) - reference).abs().mean() < 0.05


def _frozen_trunk() -> torch.nn.Module:
    """A BatchNorm trunk with trained-looking statistics, frozen but for the last layer; its
    first BatchNorm has no parameters (``affine=False``)."""
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Linear(16, 12), torch.nn.BatchNorm1d(12, affine=False), torch.nn.ReLU(),
        torch.nn.Linear(12, 12), torch.nn.BatchNorm1d(12), torch.nn.ReLU(), torch.nn.Linear(12, 3),
    )  # fmt: skip
    with torch.no_grad():
        for bn in (net[1], net[4]):
            bn.running_mean.uniform_(-1, 1)
            bn.running_var.uniform_(0.5, 2)
    net.requires_grad_(False)
    net[6].requires_grad_(True)
    return net


@pytest.mark.parametrize("method", ["bbh", "map"])
def test_frozen_batchnorm_keeps_its_statistics_through_a_finetune(method):
    """``frozen_norms="eval"`` (default): the frozen BatchNorm stays in eval mode in training,
    so its running statistics are the trained net's after the fine-tune; with ``"train"`` the
    fine-tune's batches move them. A BatchNorm without parameters is left to PyTorch."""
    net = _frozen_trunk()
    assert bbh.training.frozen_batchnorms(net) == ["4"]
    x, y = _data(200)
    options = {"temperature": 1.0} if method == "bbh" else {}
    kept = bbh.finetune(net, x, y, method, steps=4, batch_size=50, **options)
    moved = bbh.finetune(net, x, y, method, steps=4, batch_size=50, frozen_norms="train",
                         **options)  # fmt: skip
    assert torch.equal(kept.net[4].running_mean, net[4].running_mean)
    assert torch.equal(kept.net[4].running_var, net[4].running_var)
    assert not torch.equal(moved.net[4].running_mean, net[4].running_mean)
    assert not torch.equal(kept.net[1].running_mean, net[1].running_mean)  # affine=False: moved
    kept.train()
    assert kept.training and kept.net[1].training and not kept.net[4].training
    assert moved.train().net[4].training


def test_frozen_norms_is_checked():
    with pytest.raises(ValueError, match="frozen_norms must be one of"):
        start_from(_frozen_trunk(), "map", frozen_norms="frozen")
