"""Every KL estimator at D = 200 with S = 5 samples: the regime BbH trains in.

Three Gaussian q against the prior N(0, I): isotropic under-dispersed (mean 0.3, std 0.5),
anisotropic (stds log-uniform in [0.2, 2], half under- and half over-dispersed) and isotropic
over-dispersed (std 2). For each, the estimate averaged over 20 independent draws of S = 5
samples against the closed-form KL (within 20%), and the gradient direction: with
``w = mu + exp(log_sigma) * eps``, the averaged ``d KL_hat / d log_sigma_d`` must have the sign of
the true ``sigma_d^2 - 1`` (summed over coordinates for isotropic q, per coordinate on at least
90% of the coordinates for the anisotropic one).

Where an estimator is known to be wrong in this regime the test is a strict xfail that states
how: if the behaviour changes, the test fails and the docs (``docs/methods.md``, the
estimators' docstrings) must change with it.
"""

from __future__ import annotations

import functools
import math

import pytest
import torch

from bbh.divergences import KL_ESTIMATORS, make_kl_estimator
from bbh.priors import GaussianPrior

DIM, SAMPLES, REPEATS = 200, 5, 20
VALUE_TOLERANCE = 0.2  # relative
SIGN_AGREEMENT = 0.9  # anisotropic q: fraction of coordinates whose gradient sign is right


def _q(kind: str) -> tuple[torch.Tensor, torch.Tensor]:
    if kind == "under":
        return torch.full((DIM,), 0.3), torch.full((DIM,), 0.5)
    if kind == "over":
        return torch.zeros(DIM), torch.full((DIM,), 2.0)
    gen = torch.Generator().manual_seed(0)
    log_sigma = torch.empty(DIM).uniform_(math.log(0.2), math.log(2.0), generator=gen)
    return torch.zeros(DIM), log_sigma.exp()


def _closed_form(mu: torch.Tensor, sigma: torch.Tensor) -> float:
    return float((-sigma.log() + 0.5 * (sigma**2 + mu**2) - 0.5).sum())


@functools.cache
def _measure(name: str, kind: str) -> tuple[float, torch.Tensor]:
    """Mean estimate and mean gradient w.r.t. ``log sigma [D]`` over REPEATS draws."""
    torch.manual_seed(1)
    mu, sigma = _q(kind)
    prior = GaussianPrior(1.0)
    estimator = make_kl_estimator(name)
    if name == "discriminator":  # trained on fresh q draws first
        estimator.pretrain(lambda: mu + sigma * torch.randn(SAMPLES, DIM), prior, 300)
    log_sigma = sigma.log().requires_grad_(True)
    values, grad = [], torch.zeros(DIM)
    for _ in range(REPEATS):
        value = estimator(mu + log_sigma.exp() * torch.randn(SAMPLES, DIM), prior)
        (g,) = torch.autograd.grad(value, log_sigma)
        values.append(value.item())
        grad += g / REPEATS
    return sum(values) / REPEATS, grad


KNOWN_WRONG = {
    ("nn_full", "value", "under"): "nearest-neighbour distances concentrate in high D: +33%",
    ("nn_full", "value", "aniso"): "sees only total variance: 18 against 82",
    ("nn_full", "value", "over"): "negative (-45) for a true KL of 161",
    ("nn_full", "gradient", "aniso"): "one sign for every coordinate (about 75% right)",
    ("nn_full", "gradient", "over"): "rewards more variance: the unbounded growth of sigma",
    ("nn_coordinate", "value", "under"): "S = 5 one-dimensional estimates are biased: +27%",
    ("nn_coordinate", "value", "over"): "barely penalises over-dispersion: 5 against 161",
    ("nn_coordinate", "gradient", "under"): "pushes an under-dispersed q to shrink further",
    ("nn_coordinate", "gradient", "aniso"): "noisy 1-D distances: about 64% of signs right",
    ("entropy", "value", "under"): "Kozachenko-Leonenko in R^D is off by about -(D/2) log 2",
    ("entropy", "value", "aniso"): "the -(D/2) log 2 offset, and blind to how variance spreads",
    ("entropy", "value", "over"): "the -(D/2) log 2 offset: 100 against 161",
    ("entropy", "gradient", "aniso"): "sees only tr(Sigma): one sign for every coordinate",
    ("discriminator", "value", "aniso"): "a pooled marginal ratio: 28 against 82",
}


def _cases():
    for name in KL_ESTIMATORS:
        for check in ("value", "gradient"):
            for kind in ("under", "aniso", "over"):
                reason = KNOWN_WRONG.get((name, check, kind))
                marks = [pytest.mark.xfail(strict=True, reason=reason)] if reason else []
                yield pytest.param(name, check, kind, marks=marks, id=f"{name}-{check}-{kind}")


@pytest.mark.parametrize("name, check, kind", list(_cases()))
def test_estimator_in_high_dimension(name, check, kind):
    mu, sigma = _q(kind)
    value, grad = _measure(name, kind)
    if check == "value":
        true = _closed_form(mu, sigma)
        assert abs(value - true) < VALUE_TOLERANCE * true, (value, true)
        return
    true_grad = sigma**2 - 1
    if kind == "aniso":
        agreement = (grad.sign() == true_grad.sign()).float().mean().item()
        assert agreement >= SIGN_AGREEMENT, agreement
    else:
        assert grad.sum().sign() == true_grad.sum().sign(), (grad.sum(), true_grad.sum())


def test_known_failures_name_real_estimators():
    assert {name for name, _, _ in KNOWN_WRONG} <= set(KL_ESTIMATORS)
