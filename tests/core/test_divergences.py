import math

import pytest
import torch

from bbh.divergences import KL_ESTIMATORS, make_kl_estimator, nn_kl_coordinate, nn_kl_full
from bbh.divergences.entropy import kl_entropy_coordinate, kl_entropy_full
from bbh.priors import GaussianPrior

ESTIMATORS = ["nn_full", "nn_coordinate", "entropy", "entropy_coordinate"]


def gaussian_kl(mu: float, sigma: float, dim: int, prior_scale: float = 1.0) -> float:
    """KL(N(mu, sigma^2 I) || N(0, s^2 I)) in closed form."""
    s2 = prior_scale**2
    return dim * (math.log(prior_scale / sigma) + (sigma**2 + mu**2) / (2 * s2) - 0.5)


def estimate(name: str, mu: float, sigma: float, dim: int, n: int, seed: int = 0) -> float:
    torch.manual_seed(seed)
    q = mu + sigma * torch.randn(n, dim)
    return make_kl_estimator(name)(q, GaussianPrior(1.0)).item()


@pytest.mark.parametrize("name", ESTIMATORS)
def test_near_zero_when_q_equals_p(name):
    values = [estimate(name, 0.0, 1.0, 2, 400, seed) for seed in range(3)]
    assert abs(sum(values) / 3) < 0.15


@pytest.mark.parametrize("name", ESTIMATORS)
def test_ordered_as_q_moves_away(name):
    mus = [0.0, 0.5, 1.0, 2.0]
    values = [estimate(name, mu, 1.0, 2, 400) for mu in mus]
    assert values == sorted(values), values
    sigmas = [1.0, 0.5, 0.2]
    values = [estimate(name, 0.0, s, 2, 400) for s in sigmas]
    assert values == sorted(values), values


@pytest.mark.slow
@pytest.mark.parametrize("name", ESTIMATORS)
@pytest.mark.parametrize("mu, sigma, dim", [(1.0, 1.0, 1), (0.5, 0.5, 2), (1.0, 0.7, 3)])
def test_within_15_percent_of_closed_form(name, mu, sigma, dim):
    true = gaussian_kl(mu, sigma, dim)
    values = [estimate(name, mu, sigma, dim, 4000, seed) for seed in range(5)]
    assert abs(sum(values) / 5 - true) < 0.15 * true, (values, true)


@pytest.mark.parametrize("fn", [nn_kl_full, nn_kl_coordinate])
def test_coinciding_samples_are_finite_with_finite_gradients(fn):
    q = torch.zeros(4, 3, requires_grad=True)
    p = torch.randn(4, 3)
    kl = fn(q, p)
    kl.backward()
    assert torch.isfinite(kl) and torch.isfinite(q.grad).all()


@pytest.mark.parametrize("fn", [kl_entropy_full, kl_entropy_coordinate])
def test_entropy_of_coinciding_samples_is_finite(fn):
    q = torch.ones(3, 5, requires_grad=True)
    h = fn(q)
    h.backward()
    assert torch.isfinite(h) and torch.isfinite(q.grad).all()


def test_entropy_estimator_matches_gaussian_entropy():
    torch.manual_seed(0)
    q = 0.5 * torch.randn(3000, 2)
    true = 2 * (0.5 * math.log(2 * math.pi * math.e) + math.log(0.5))
    assert abs(kl_entropy_full(q).item() - true) < 0.1
    assert abs(kl_entropy_coordinate(q).item() - true) < 0.1


def test_matches_hand_computed_formula_with_constant_once():
    torch.manual_seed(0)
    n, m, d = 5, 7, 10
    q, p = torch.randn(n, d), 2 + torch.randn(m, d)
    rho = torch.cdist(q, q).fill_diagonal_(float("inf")).min(1).values
    nu = torch.cdist(q, p).min(1).values
    full = d * torch.log(nu / rho).mean() + math.log(m / (n - 1))
    assert nn_kl_full(q, p).item() == pytest.approx(full.item(), rel=1e-4)
    coord = 0.0
    for k in range(d):  # D one-dimensional estimates, each with its own constant
        qk, pk = q[:, k : k + 1], p[:, k : k + 1]
        rho_k = torch.cdist(qk, qk).fill_diagonal_(float("inf")).min(1).values
        nu_k = torch.cdist(qk, pk).min(1).values
        coord += (torch.log(nu_k / rho_k).mean() + math.log(m / (n - 1))).item()
    assert nn_kl_coordinate(q, p).item() == pytest.approx(coord, rel=1e-4)


@pytest.mark.parametrize("name", ESTIMATORS)
def test_fewer_than_two_samples_is_an_error(name):
    with pytest.raises(ValueError, match="at least 2 samples"):
        make_kl_estimator(name)(torch.randn(1, 3), GaussianPrior())


def test_unknown_estimator_lists_allowed():
    with pytest.raises(ValueError, match="allowed"):
        make_kl_estimator("kde")
    assert set(ESTIMATORS) <= set(KL_ESTIMATORS)


def test_prior_log_prob_closed_form():
    prior = GaussianPrior(2.0)
    w = torch.randn(3, 4)
    expected = torch.distributions.Normal(0.0, 2.0).log_prob(w).sum(-1)
    torch.testing.assert_close(prior.log_prob(w), expected)
    with pytest.raises(ValueError, match="prior_scale"):
        GaussianPrior(0.0)


def test_fast_distance_routines_match_brute_force():
    from bbh.divergences.nearest_neighbour import (
        cross_nn_sq_dists_coordinate,
        pairwise_sq_dists_full,
        self_nn_sq_dists_coordinate,
    )

    torch.manual_seed(0)
    q, p = torch.randn(6, 40), torch.randn(9, 40)
    brute_self = (q.t()[:, :, None] - q.t()[:, None, :]).pow(2)
    brute_self = brute_self + torch.diag_embed(torch.full((40, 6), float("inf")))
    torch.testing.assert_close(self_nn_sq_dists_coordinate(q), brute_self.min(-1).values)
    brute_cross = (q.t()[:, :, None] - p.t()[:, None, :]).pow(2).min(-1).values
    torch.testing.assert_close(cross_nn_sq_dists_coordinate(q, p), brute_cross)
    brute_full = (q[:, None] - p[None]).pow(2).sum(-1)
    torch.testing.assert_close(pairwise_sq_dists_full(q, p), brute_full, rtol=1e-4, atol=1e-4)
    # nearly coinciding samples far from the origin keep their small distances
    base = 100 + torch.randn(1, 1000)
    close = base + 1e-3 * torch.randn(3, 1000)
    exact = (close[:, None].double() - close[None].double()).pow(2).sum(-1)
    torch.testing.assert_close(
        pairwise_sq_dists_full(close, close).double(), exact, rtol=1e-3, atol=1e-6
    )
