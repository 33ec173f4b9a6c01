"""BbH's ``sigma_noise``: the semi-implicit noise as per-example output noise in training.

The local reparameterisation trick (Kingma, Salimans and Welling 2015) and Flipout (Wen et al.
2018) leave each example's output distribution, so the expected NLL and its gradient, as they
are (exactly for ``nn.Linear``; Flipout also for ``nn.Conv2d``) and cut the variance of the
gradient of ``log sigma``.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor, nn

import bbh
from bbh.methods.bbh import BayesByHypernet, NLLMode

SIGMA = 0.3  # large enough that the noise matters to the NLL


def _mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 3))


def _conv() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 3, 3), nn.Tanh(), nn.Flatten(), nn.Linear(3 * 4 * 4, 3))


def _model(net: nn.Module, sigma_noise: str, **options: object) -> BayesByHypernet:
    options = {"temperature": 1.0, "num_samples": 2, "nll": "split", **options}
    model = bbh.build("bbh", net, sigma_noise=sigma_noise, **options)
    assert isinstance(model, BayesByHypernet)
    post = model.posterior
    with torch.no_grad():  # every sigma at SIGMA
        post.log_sigma_param.fill_(math.log(SIGMA) / post.log_sigma_scale)
    return model


def _batch(net: nn.Module, b: int = 32) -> tuple[Tensor, Tensor]:
    gen = torch.Generator().manual_seed(1)
    shape = (b, 6) if isinstance(net[0], nn.Linear) else (b, 1, 6, 6)
    return torch.randn(shape, generator=gen), torch.randint(0, 3, (b,), generator=gen)


def _nll_draws(model: BayesByHypernet, mean: Tensor, x: Tensor, y: Tensor, draws: int) -> Tensor:
    """Per-draw mean NLL ``[draws]`` of one fixed ``G(z)`` with fresh ``sigma`` noise."""
    with torch.no_grad():
        if model.sigma_noise.value == "sample":
            sigma = model.posterior.sigma()
            flat = mean + sigma * torch.randn(draws, mean.shape[0])
            out = model.predict_logits_with(flat, x)
        else:
            out = model._local_forward(mean.expand(draws, -1), x)
        return -model.likelihood.log_prob(out, y).mean(1)


def test_default_is_sample_and_unchanged() -> None:
    net = _mlp()
    x, y = _batch(net)
    losses = []
    for options in ({}, {"sigma_noise": "sample"}):
        torch.manual_seed(3)
        model = bbh.build("bbh", net, temperature=1.0, num_samples=2, nll="split", **options)
        assert "sigma_noise" not in model.resolved_options
        assert model._local_nets == ()
        torch.manual_seed(4)
        loss, _ = model.loss(x, y, num_data=100)
        loss.backward()
        losses.append((loss.detach(), model.posterior.log_sigma_param.grad.clone()))
    assert torch.equal(losses[0][0], losses[1][0])
    assert torch.equal(losses[0][1], losses[1][1])


@pytest.mark.parametrize(
    ("make_net", "noise"),
    [(_mlp, "local"), (_mlp, "flipout"), (_conv, "flipout"), (_conv, "local")],
)
def test_expected_nll_matches_sample(make_net: object, noise: str) -> None:
    """Same G(z), same sigma: the mean NLL over many noise draws agrees within MC error."""
    net = make_net()  # type: ignore[operator]
    x, y = _batch(net)
    torch.manual_seed(5)
    sample, other = _model(net, "sample"), _model(net, noise)
    other.load_state_dict(sample.state_dict())
    mean = sample.posterior.sample(1).mean[0].detach()
    a = _nll_draws(sample, mean, x, y, 1500)
    b = _nll_draws(other, mean, x, y, 1500)
    se = math.sqrt(a.var() / a.numel() + b.var() / b.numel())
    assert abs(float(a.mean() - b.mean())) < 4 * se, (float(a.mean()), float(b.mean()), se)


def _sigma_grads(model: BayesByHypernet, mean: Tensor, x: Tensor, y: Tensor, n: int) -> Tensor:
    """Gradients ``[n, D]`` of the split NLL w.r.t. ``log sigma``, one fixed pair of means."""
    param = model.posterior.log_sigma_param
    grads = []
    for _ in range(n):
        if model.sigma_noise.value == "sample":
            sigma = model.posterior.sigma()
            flat = mean + sigma * torch.randn_like(mean)
            nll = model._nll(flat, x, y)
        else:
            nll = model._nll(mean, x, y, local=True)
        (grad,) = torch.autograd.grad(nll, param)
        grads.append(grad * model.posterior.log_sigma_scale)  # d / d log sigma
    return torch.stack(grads)


@pytest.mark.parametrize("noise", ["local", "flipout"])
def test_sigma_gradient_same_mean_less_variance(noise: str) -> None:
    """Logistic regression (a bare ``nn.Linear``), S = 2 splitting a batch of 64."""
    torch.manual_seed(0)
    net = nn.Linear(6, 3)
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(64, 6, generator=gen)
    y = torch.randint(0, 3, (64,), generator=gen)
    torch.manual_seed(6)
    sample, other = _model(net, "sample"), _model(net, noise)
    other.load_state_dict(sample.state_dict())
    assert sample.nll_mode is NLLMode.SPLIT
    mean = sample.posterior.sample(2).mean.detach() * 3  # means away from zero
    g_s = _sigma_grads(sample, mean, x, y, 200)
    g_o = _sigma_grads(other, mean, x, y, 200)
    # same mean: a z-score per weight, chi-square-like on average
    se2 = g_s.var(0) / 200 + g_o.var(0) / 200
    z2 = (g_s.mean(0) - g_o.mean(0)).pow(2) / se2
    assert float(z2.mean()) < 2.0, z2
    ratio = float(g_o.var(0).sum() / g_s.var(0).sum())
    assert ratio < 0.5, ratio


def test_training_reaches_every_parameter_and_round_trips() -> None:
    net = _conv()
    x, y = _batch(net, 8)
    model = _model(net, "local", nll="split")
    loss, logs = model.loss(x, y, num_data=100)
    loss.backward()
    assert torch.isfinite(loss) and set(logs) >= {"nll", "kl", "loss"}
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    assert model.predict_logits(x, 3).shape == (3, 8, 3)
    # the local copy is not part of the module: same state as a default model
    default = _model(net, "sample", nll="split")
    assert sorted(model.state_dict()) == sorted(default.state_dict())
    default.load_state_dict(model.state_dict())
    double = model.double()
    assert double.loss(x.double(), y, num_data=100)[0].dtype == torch.float64


def test_deterministic_layers_are_shared() -> None:
    """A point-estimate BatchNorm keeps its parameters and running statistics in the net."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(6, 8), nn.BatchNorm1d(8), nn.Tanh(), nn.Linear(8, 3))
    model = _model(net, "local", deterministic=["1"])
    x, y = _batch(_mlp())
    before = model.net[1].running_mean.clone()
    loss, _ = model.loss(x, y, num_data=100)
    loss.backward()
    assert not torch.equal(before, model.net[1].running_mean)
    assert model.net[1].weight.grad is not None


def test_refusals() -> None:
    net = _mlp()
    with pytest.raises(ValueError, match="unknown sigma_noise"):
        bbh.build("bbh", net, sigma_noise="dropout")
    with pytest.raises(ValueError, match="needs init_sigma"):
        bbh.build("bbh", net, sigma_noise="local", weight_noise=None, kl="nn_full")
    with pytest.raises(ValueError, match="needs init_sigma"):
        bbh.build("bbh", net, preset="paper", sigma_noise="local")
    with pytest.raises(ValueError, match="last_layer='exact'"):
        bbh.build(
            "bbh",
            net,
            sigma_noise="flipout",
            last_layer="exact",
            likelihood="gaussian",
            noise_scale=0.1,
        )
    torch.manual_seed(0)
    bn = nn.Sequential(nn.Linear(6, 8), nn.BatchNorm1d(8), nn.Linear(8, 3))
    with pytest.raises(ValueError, match=r"nn\.Linear and nn\.Conv2d layers only"):
        bbh.build("bbh", bn, sigma_noise="local")


def test_seeded_steps_repeat_and_train_and_eval_modes() -> None:
    net = _mlp()
    x, y = _batch(net)
    model = _model(net, "local")
    losses = []
    for _ in range(2):
        torch.manual_seed(7)
        losses.append(model.loss(x, y, num_data=100)[0].detach())
    assert torch.equal(losses[0], losses[1])
    model.eval()  # the local copy follows the mode of the model
    model.loss(x, y, num_data=100)
    assert not model._local_nets[0].training


def test_config_hash_keeps_earlier_runs_current() -> None:
    """``sigma_noise`` came after runs were trained: at ``"sample"`` the hash leaves it out."""
    from bbh.experiments.config import config_hash, load_config, resolved_options
    from bbh.methods import METHODS

    cfg = load_config("mnist/bbh")
    resolved = resolved_options(METHODS["bbh"], {})
    assert resolved["sigma_noise"] == "sample"
    without = {k: v for k, v in resolved.items() if k != "sigma_noise"}
    assert config_hash(cfg, resolved) == config_hash(cfg, without)
    local = resolved_options(METHODS["bbh"], {"sigma_noise": "local"})
    assert config_hash(cfg, local) != config_hash(cfg, resolved)
