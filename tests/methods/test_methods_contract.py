"""Contract tests over every registered method: the one interface of ``bbh.methods.base``."""

from __future__ import annotations

import copy

import pytest
import torch
from method_helpers import make_net, small_options

from bbh.methods import available, build
from bbh.nets.mlp import toy_regression_net

METHODS = available()


def expected_samples(method: torch.nn.Module, requested: int) -> int:
    return getattr(method, "fixed_num_samples", requested)


def test_all_six_methods_are_registered() -> None:
    assert {"map", "mc_dropout", "ensemble", "bbb", "mnf", "bbh"} <= set(METHODS)


@pytest.mark.parametrize("name", METHODS)
def test_shapes_finite_loss_and_logs(name: str, net_and_batch) -> None:
    net, x, y = net_and_batch
    method = build(name, net, **small_options(name))
    loss, logs = method.loss(x, y, num_data=100, kl_weight=1.0)
    assert loss.dim() == 0 and torch.isfinite(loss)
    assert "loss" in logs and "nll" in logs
    for key, value in logs.items():
        assert isinstance(value, torch.Tensor) and value.dim() == 0, key
        assert not value.requires_grad, key
    logits = method.predict_logits(x, 4)
    assert logits.shape == (expected_samples(method, 4), x.shape[0], 3)
    probs = method.predict(x, 4)
    assert probs.shape == (x.shape[0], 3)
    torch.testing.assert_close(probs.sum(-1), torch.ones(x.shape[0]))


@pytest.mark.parametrize("name", METHODS)
def test_gradients_reach_every_trainable_parameter(name: str, net_and_batch) -> None:
    net, x, y = net_and_batch
    torch.manual_seed(1)
    method = build(name, net, **small_options(name))
    loss, _ = method.loss(x, y, num_data=100)
    loss.backward()
    missing = [n for n, p in method.named_parameters() if p.requires_grad and p.grad is None]
    assert not missing, f"no gradient for {missing}"
    for n, p in method.named_parameters():
        if p.requires_grad:
            assert torch.isfinite(p.grad).all(), n


@pytest.mark.parametrize("name", METHODS)
def test_seeded_determinism(name: str, net_and_batch) -> None:
    net, x, y = net_and_batch

    def run() -> tuple[torch.Tensor, torch.Tensor]:
        torch.manual_seed(7)
        method = build(name, net, **small_options(name))
        loss, _ = method.loss(x, y, num_data=100)
        return loss.detach(), method.predict_logits(x, 3).detach()

    (l1, p1), (l2, p2) = run(), run()
    torch.testing.assert_close(l1, l2, rtol=0, atol=0)
    torch.testing.assert_close(p1, p2, rtol=0, atol=0)


@pytest.mark.parametrize("name", METHODS)
def test_state_dict_round_trip(name: str, net_and_batch) -> None:
    net, x, _ = net_and_batch
    torch.manual_seed(0)
    first = build(name, net, **small_options(name))
    with torch.no_grad():  # move away from the initial values
        for p in first.parameters():
            p.add_(0.01 * torch.randn_like(p))
    torch.manual_seed(1)
    second = build(name, net, **small_options(name))
    second.load_state_dict(first.state_dict())
    first.eval()
    second.eval()
    torch.manual_seed(3)
    a = first.predict_logits(x, 3)
    torch.manual_seed(3)
    b = second.predict_logits(x, 3)
    torch.testing.assert_close(a, b)


@pytest.mark.parametrize("name", METHODS)
def test_the_users_net_is_not_changed(name: str) -> None:
    net, x, y = make_net("conv")
    before = copy.deepcopy(net.state_dict())
    flags = [p.requires_grad for p in net.parameters()]
    types = [type(m) for m in net.modules()]
    method = build(name, net, **small_options(name))
    opt = torch.optim.SGD([p for p in method.parameters() if p.requires_grad], lr=0.1)
    loss, _ = method.loss(x, y, num_data=100)
    loss.backward()
    opt.step()
    for key, value in net.state_dict().items():
        torch.testing.assert_close(value, before[key], rtol=0, atol=0)
    assert [p.requires_grad for p in net.parameters()] == flags
    assert [type(m) for m in net.modules()] == types
    assert not net._forward_hooks and all(not m._forward_hooks for m in net.modules())


@pytest.mark.parametrize("name", METHODS)
def test_gaussian_likelihood_regression(name: str) -> None:
    torch.manual_seed(0)
    net = toy_regression_net(hidden=16)
    x = torch.linspace(-1, 1, 10).unsqueeze(1)
    y = x.squeeze(1) ** 3
    method = build(name, net, likelihood="gaussian", noise_scale=0.5, **small_options(name))
    loss, _ = method.loss(x, y, num_data=10)
    assert torch.isfinite(loss)
    out = method.predict_logits(x, 4)
    assert out.shape == (expected_samples(method, 4), 10, 1)


def test_unknown_method_and_option_list_the_allowed_ones() -> None:
    net, _, _ = make_net("mlp")
    with pytest.raises(ValueError, match=r"available: .*'bbb'.*'ensemble'.*'map'"):
        build("laplace", net)
    for name in ("map", "mc_dropout", "ensemble", "bbb", "mnf"):
        with pytest.raises(ValueError, match=r"unknown option\(s\) \['bogus'\].*allowed"):
            build(name, net, bogus=1)


@pytest.mark.parametrize("name", ["map", "mc_dropout", "ensemble", "bbb", "mnf"])
def test_bad_likelihood_is_an_error_at_construction(name: str) -> None:
    net, _, _ = make_net("mlp")
    with pytest.raises(ValueError, match="likelihood"):
        build(name, net, likelihood="poisson")
    with pytest.raises(ValueError, match="noise_scale"):
        build(name, net, likelihood="gaussian")
