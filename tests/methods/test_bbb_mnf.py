"""Bayes by Backprop and MNF specifics: closed-form KL, local noise, flows, unsupported layers."""

from __future__ import annotations

import math

import pytest
import torch
from method_helpers import make_net
from torch import nn
from torch.distributions import Normal, kl_divergence

from bbh.divergences.gaussian import gaussian_kl_diag, gaussian_kl_to_isotropic
from bbh.methods import build
from bbh.nets.resnet import CifarResNet
from bbh.posteriors.flows import MaskedRealNVP


def test_closed_form_kl_matches_torch_distributions() -> None:
    mean, log_var = torch.randn(7), torch.randn(7)
    ref = kl_divergence(Normal(mean, (0.5 * log_var).exp()), Normal(0.0, 2.0)).sum()
    torch.testing.assert_close(gaussian_kl_to_isotropic(mean, log_var, 2.0), ref)
    m2, lv2 = torch.randn(7), torch.randn(7)
    ref2 = kl_divergence(Normal(mean, (0.5 * log_var).exp()), Normal(m2, (0.5 * lv2).exp())).sum()
    torch.testing.assert_close(gaussian_kl_diag(mean, log_var, m2, lv2), ref2)


def test_bbb_posterior_covers_every_parameter_and_starts_at_the_net() -> None:
    net, x, y = make_net("conv")
    method = build("bbb", net, init_log_var=-4.0)
    d = sum(p.numel() for p in net.parameters())
    assert method.spec.dim == d
    torch.testing.assert_close(method.posterior.mean, method.spec.from_module_values(net)[0])
    assert abs(method.posterior.log_var.mean().item() + 4.0) < 0.05
    assert method.sample_weights(5).shape == (5, d)
    loss, logs = method.loss(x, y, num_data=100, kl_weight=0.5)
    t = method.temperature  # the KL temperature, part of the model (0.1 until fit chooses one)
    torch.testing.assert_close(loss, logs["nll"] + 0.5 * t * method.kl().detach() / 100)


@pytest.mark.parametrize("weight_noise", ["sample", "local", "flipout"])
@pytest.mark.parametrize("layer", ["linear", "conv"])
def test_weight_noise_has_the_moments_of_the_posterior(weight_noise: str, layer: str) -> None:
    torch.manual_seed(0)
    if layer == "linear":
        net: nn.Module = nn.Sequential(nn.Linear(3, 2))
        x = torch.randn(1, 3)
        op = nn.functional.linear
    else:
        net = nn.Sequential(nn.Conv2d(2, 2, 3))
        x = torch.randn(1, 2, 3, 3)
        op = nn.functional.conv2d
    method = build(
        "bbb",
        net,
        init_log_var=-1.0,
        weight_noise=weight_noise,
        sample_batch=500,
        predict_noise="training",
    )
    p = method.spec.unflatten(method.posterior.mean.detach()[None])
    v = method.spec.unflatten(method.posterior.log_var.detach().exp()[None])
    mean = op(x, p["0.weight"][0], p["0.bias"][0]).flatten()
    std = (op(x.pow(2), v["0.weight"][0], v["0.bias"][0])).sqrt().flatten()
    n = 3000 if weight_noise != "flipout" else 600
    with torch.no_grad():
        if weight_noise == "local":  # independent per example: one pass over n copies
            out = method.predict_logits(x.expand(n, *x.shape[1:]), 1)[0].flatten(1)
        else:  # flipout shares one perturbation per pass: n passes
            out = method.predict_logits(x, n).flatten(1)
    torch.testing.assert_close(out.mean(0), mean, atol=float(5 * std.max() / n**0.5), rtol=0)
    torch.testing.assert_close(out.std(0), std, atol=0, rtol=0.15)


def test_local_noise_is_independent_between_examples() -> None:
    net = nn.Sequential(nn.Linear(3, 2))
    method = build("bbb", net, init_log_var=0.0, weight_noise="local", predict_noise="training")
    out = method.predict_logits(torch.ones(2, 3), 1)[0]
    assert not torch.allclose(out[0], out[1])


def test_local_noise_on_unsupported_layers_is_an_error_at_construction() -> None:
    net = nn.Sequential(nn.Linear(3, 4), nn.LayerNorm(4), nn.Linear(4, 2))
    build("bbb", net)  # weight sampling works for any module
    with pytest.raises(ValueError, match=r"LayerNorm.*deterministic"):
        build("bbb", net, weight_noise="local")
    method = build("bbb", net, weight_noise="flipout", deterministic=["1"])
    assert method.spec.names == ("0.weight", "0.bias", "2.weight", "2.bias")
    with pytest.raises(ValueError, match=r"unknown sigma_noise 'exact'"):
        build("bbb", net, weight_noise="exact")


def test_mnf_includes_the_kl_of_every_layer_conv_included() -> None:
    net, x, y = make_net("conv")
    torch.manual_seed(0)
    method = build("mnf", net, flow_hidden=8, aux_flow_hidden=8)
    assert method.layer_names == ("conv1", "conv2", "fc")
    layers = method.mnf_layers()
    torch.manual_seed(1)
    total = method.kl()
    torch.manual_seed(1)
    parts = [layer.kl() for layer in layers]
    torch.testing.assert_close(total, sum(parts))
    # conv layers carry most of the weights, and their KL is positive at init
    assert parts[0] > 0 and parts[1] > 0
    loss, _ = method.loss(x, y, num_data=100)
    loss.backward()
    assert layers[0].weight_log_var.grad is not None
    assert layers[0].flow_r.steps[0].f.weight.grad is not None


def test_mnf_sample_weights_and_z_per_unit() -> None:
    net, _, _ = make_net("conv")
    method = build("mnf", net)
    assert method.sample_weights(4).shape == (4, method.spec.dim)
    conv1, fc = method.mnf_layers()[0], method.mnf_layers()[2]
    assert conv1.q0_mean.shape == (conv1.out_channels,)  # per output channel
    assert fc.q0_mean.shape == (fc.in_features,)  # per input unit


def test_mnf_unsupported_layers_raise_at_construction() -> None:
    with pytest.raises(ValueError, match="GroupNorm"):
        build("mnf", CifarResNet(norm="instance", units_per_scale=1))
    method = build("mnf", CifarResNet(norm="instance", units_per_scale=1), deterministic=["norm"])
    assert len(method.layer_names) == 1 + 3 * 2 + 1
    with pytest.raises(ValueError, match="Conv1d"):
        build("mnf", nn.Sequential(nn.Conv1d(1, 2, 3), nn.Flatten(), nn.Linear(2, 2)))
    with pytest.raises(ValueError, match="no module named"):
        build("mnf", nn.Sequential(nn.Linear(2, 2)), deterministic=["bn"])


def test_flow_log_determinant_matches_autograd() -> None:
    torch.manual_seed(0)
    flow = MaskedRealNVP(3, num_steps=2, hidden=5)
    z = torch.randn(3)
    _, logdet = flow(z)
    jac = torch.autograd.functional.jacobian(lambda v: flow(v)[0], z)
    torch.testing.assert_close(logdet, torch.linalg.slogdet(jac).logabsdet)


def test_mnf_kl_is_finite_for_a_one_input_layer() -> None:
    method = build(
        "mnf",
        nn.Sequential(nn.Linear(1, 5), nn.ReLU(), nn.Linear(5, 1)),
        likelihood="gaussian",
        noise_scale=1.0,
    )
    assert math.isfinite(method.kl().item())


@pytest.mark.parametrize("name", ["bbb", "mnf"])
def test_predictions_share_one_weight_draw_across_the_batch_by_default(name: str) -> None:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    options = {"weight_noise": "local", "init_log_var": 0.0} if name == "bbb" else {}
    x = torch.ones(2, 3)
    shared = build(name, net, **options).predict_logits(x, 3)
    torch.testing.assert_close(shared[:, 0], shared[:, 1])
    assert not torch.allclose(shared[0], shared[1])  # draws differ
    own = build(name, net, predict_noise="training", **options).predict_logits(x, 3)
    assert not torch.allclose(own[:, 0], own[:, 1])
    with pytest.raises(ValueError, match="predict_noise"):
        build(name, net, predict_noise="none")


@pytest.mark.parametrize("kl", ["nn_coordinate", "nn_full", "discriminator"])
def test_bbb_with_the_papers_sample_based_kl_variants(kl: str) -> None:
    net, x, y = make_net("mlp")
    torch.manual_seed(0)
    method = build("bbb", net, kl=kl, kl_samples=4, init_log_var=-4.0)
    loss, logs = method.loss(x, y, num_data=100)
    assert torch.isfinite(loss) and torch.isfinite(logs["kl"])
    loss.backward()
    missing = [n for n, p in method.named_parameters() if p.requires_grad and p.grad is None]
    assert not missing
    assert ("kl_aux_loss" in logs) == (kl == "discriminator")


def test_bbb_unknown_kl_lists_the_allowed_ones() -> None:
    net, _, _ = make_net("mlp")
    with pytest.raises(ValueError, match=r"allowed: \['closed_form', .*'nn_full'"):
        build("bbb", net, kl="mmd")


def test_mnf_weight_std_bound_passes_gradients_so_a_stuck_variance_comes_back() -> None:
    """A log-variance pushed past ``max_std`` must get a gradient and return under the bound."""
    torch.manual_seed(0)
    method = build("mnf", nn.Sequential(nn.Linear(3, 2)), max_std=0.5, init_log_var=-9.0)
    layer = method.mnf_layers()[0]
    bound = 2 * math.log(0.5)
    assert torch.allclose(layer.weight_var, layer.weight_log_var.exp(), rtol=1e-3)  # far below
    with torch.no_grad():
        layer.weight_log_var.fill_(bound + 4.0)  # past the bound, where a hard clip is flat
    assert (layer.weight_var <= 0.25).all()
    opt = torch.optim.Adam([layer.weight_log_var], lr=0.1)
    for step in range(60):  # a loss that wants a variance of 0.01
        loss = (layer.weight_var - 0.01 * layer.weight_var.log()).sum()
        opt.zero_grad()
        loss.backward()
        if step == 0:
            assert (layer.weight_log_var.grad > 0).all()
        opt.step()
    assert (layer.weight_log_var < bound).all()
