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
from torch import nn

from bbh.divergences import KL_ESTIMATORS, make_kl_estimator, uses_posterior
from bbh.functional import ParamSpec
from bbh.hypernets import LayerwiseGenerator
from bbh.posteriors.implicit import ImplicitPosterior
from bbh.priors import GaussianPrior

DIM, SAMPLES, REPEATS = 200, 5, 20
VALUE_TOLERANCE = 0.2  # relative
DISCRIMINATOR_FITS = 4
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
    """Mean estimate and mean gradient w.r.t. ``log sigma [D]`` over REPEATS draws (the
    discriminator: five times as many, over ``DISCRIMINATOR_FITS`` trainings)."""
    torch.manual_seed(1)
    mu, sigma = _q(kind)
    prior = GaussianPrior(1.0)
    # the discriminator's estimate moves with its own training (about +-10% between trainings on
    # the over-dispersed q): its draws are spread over several independently trained ones
    fits = DISCRIMINATOR_FITS if name == "discriminator" else 1
    estimators = [make_kl_estimator(name) for _ in range(fits)]
    if name == "discriminator":  # trained on fresh q draws first
        for estimator in estimators:
            estimator.pretrain(lambda: mu + sigma * torch.randn(SAMPLES, DIM), prior, 300)
    log_sigma = sigma.log().requires_grad_(True)
    values, grad = [], torch.zeros(DIM)
    repeats = REPEATS * (5 * fits if name == "discriminator" else 1)
    for i in range(repeats):
        estimator = estimators[i % fits]
        value = estimator(mu + log_sigma.exp() * torch.randn(SAMPLES, DIM), prior)
        (g,) = torch.autograd.grad(value, log_sigma)
        values.append(value.item())
        grad += g / repeats
    return sum(values) / repeats, grad


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


def _cases(posterior: bool, known_wrong: dict):
    """Every estimator that does (or does not) use the posterior x check x q; the known
    failures as strict xfails."""
    for name in (n.value for n in KL_ESTIMATORS if uses_posterior(n) == posterior):
        for check in ("value", "gradient"):
            for kind in ("under", "aniso", "over"):
                reason = known_wrong.get((name, check, kind))
                marks = [pytest.mark.xfail(strict=True, reason=reason)] if reason else []
                yield pytest.param(name, check, kind, marks=marks, id=f"{name}-{check}-{kind}")


@pytest.mark.parametrize("name, check, kind", list(_cases(False, KNOWN_WRONG)))
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


# --- estimators of a semi-implicit posterior (kl(draw, prior, posterior)) ---
# The same three q, now with a correlated part twice as wide as the noise per coordinate:
# q = N(mu, diag(sigma^2) + A A^T), A [D, 32], made
# by an affine generator (``hidden=()``) plus the semi-implicit noise, against the closed form.
RANK = 32

KNOWN_WRONG_SEMI_IMPLICIT = {
    ("sivi", "value", "under"): "credits little more than the noise's entropy: 168 against 124",
}


def _semi_implicit_q(kind: str) -> tuple[ImplicitPosterior, torch.Tensor]:
    """The posterior, and the correlated factor A ``[D, RANK]`` it generates."""
    mu, sigma = _q(kind)
    torch.manual_seed(2)
    gen = LayerwiseGenerator(
        ParamSpec.from_module(nn.Linear(DIM, 1, bias=False)), noise_dim=RANK, hidden=()
    )
    a = 2 * sigma[:, None] * torch.randn(DIM, RANK) / math.sqrt(RANK)  # G spread > noise
    with torch.no_grad():
        gen.generators[0][0].weight.copy_(a / gen.input_scale)  # affine: w = A z + b
        gen.generators[0][0].bias.copy_(mu)
    post = ImplicitPosterior(gen, init_sigma=1.0)
    with torch.no_grad():
        post.log_sigma_param.copy_(sigma.log() / post.log_sigma_scale)
    return post, a


def _closed_form_correlated(mu, log_sigma, a):
    cov = a @ a.T + torch.diag(torch.exp(2 * log_sigma))
    return 0.5 * (cov.trace() + mu @ mu - DIM - torch.logdet(cov))


@pytest.mark.parametrize("name, check, kind", list(_cases(True, KNOWN_WRONG_SEMI_IMPLICIT)))
def test_semi_implicit_estimator_in_high_dimension(name, check, kind):
    torch.manual_seed(1)
    mu, _ = _q(kind)
    post, a = _semi_implicit_q(kind)
    estimator, prior = make_kl_estimator(name), GaussianPrior(1.0)
    values, grad = [], torch.zeros(DIM)
    for _ in range(REPEATS):
        value = estimator(post.sample(SAMPLES), prior, post)
        (g,) = torch.autograd.grad(value, post.log_sigma_param)
        values.append(value.item())
        grad += g * post.log_sigma_scale / REPEATS  # d KL_hat / d log sigma
    log_sigma = post.log_sigma.detach().requires_grad_(True)
    true = _closed_form_correlated(mu, log_sigma, a)
    (true_grad,) = torch.autograd.grad(true, log_sigma)
    if check == "value":
        value = sum(values) / REPEATS
        assert abs(value - true.item()) < VALUE_TOLERANCE * true.item(), (value, true.item())
    elif kind == "aniso":
        agreement = (grad.sign() == true_grad.sign()).float().mean().item()
        assert agreement >= SIGN_AGREEMENT, agreement
    else:
        assert grad.sum().sign() == true_grad.sum().sign(), (grad.sum(), true_grad.sum())
