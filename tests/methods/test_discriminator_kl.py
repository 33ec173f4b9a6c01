"""The discriminator KL estimator (the paper's ``-k disc``) and its use as a BbH ``kl`` option."""

from __future__ import annotations

import math

import pytest
import torch
from method_helpers import make_net

from bbh.divergences import KL_ESTIMATORS, make_kl_estimator
from bbh.divergences.discriminator import DiscriminatorKL
from bbh.methods import build
from bbh.priors import GaussianPrior


def test_registered_as_a_kl_estimator() -> None:
    assert "discriminator" in KL_ESTIMATORS
    assert isinstance(make_kl_estimator("discriminator"), DiscriminatorKL)


def test_gradients_are_separated_between_generator_and_discriminator() -> None:
    torch.manual_seed(0)
    est = DiscriminatorKL(hidden=(8, 8), pretrain_steps=0)
    prior = GaussianPrior(1.0)
    w = torch.randn(3, 20, requires_grad=True)
    est(w, prior).backward()
    assert w.grad is not None and w.grad.abs().sum() > 0
    assert all(p.grad is None for p in est.parameters())
    w.grad = None
    est.auxiliary_loss(w.detach(), prior).backward()
    assert w.grad is None
    assert all(p.grad is not None for p in est.parameters())


def test_pretrained_discriminator_estimates_a_gaussian_kl() -> None:
    torch.manual_seed(0)
    est = DiscriminatorKL(hidden=(16, 16), pretrain_lr=1e-2)
    prior = GaussianPrior(1.0)
    d = 2000
    est.pretrain(lambda: 2.0 * torch.randn(1, d), prior, 300)
    assert bool(est.pretrained)
    true = d * 0.5 * (4.0 - 1.0 - math.log(4.0))  # KL(N(0, 4) || N(0, 1)) per scalar, times D
    with torch.no_grad():
        estimate = torch.stack([est(2.0 * torch.randn(4, d), prior) for _ in range(5)]).mean()
    assert abs(estimate.item() - true) < 0.25 * true


def test_lazy_pretraining_runs_once_on_the_first_call() -> None:
    torch.manual_seed(0)
    est = DiscriminatorKL(hidden=(4,), pretrain_steps=3)
    w = torch.randn(2, 5)
    before = [p.clone() for p in est.parameters()]
    est(w, GaussianPrior(1.0))
    assert bool(est.pretrained)
    after = [p.clone() for p in est.parameters()]
    assert any(not torch.equal(a, b) for a, b in zip(before, after, strict=True))
    est(w, GaussianPrior(1.0))
    assert all(torch.equal(a, p) for a, p in zip(after, est.parameters(), strict=True))


@pytest.mark.parametrize("bad", [{"hidden": ()}, {"pretrain_steps": -1}, {"max_scalars": 0}])
def test_bad_options(bad: dict) -> None:
    with pytest.raises(ValueError):
        DiscriminatorKL(**bad)


def test_bbh_with_the_discriminator_trains_both_in_one_step() -> None:
    net, x, y = make_net("mlp")
    torch.manual_seed(0)
    method = build("bbh", net, noise_dim=2, num_samples=3, hidden=(8,), kl="discriminator")
    method.kl_estimator.pretrain_steps = 2
    loss, logs = method.loss(x, y, num_data=100)
    assert "kl_aux_loss" in logs
    loss.backward()
    missing = [n for n, p in method.named_parameters() if p.requires_grad and p.grad is None]
    assert not missing
    state = method.state_dict()
    assert any(k.startswith("kl_estimator.") for k in state)
