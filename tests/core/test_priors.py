"""Priors over the generated weights: isotropic, fan-in and empirical Bayes (``bbh.priors``)."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from bbh.divergences.gaussian import gaussian_kl_to_isotropic
from bbh.functional import ParamSpec
from bbh.priors import GaussianPrior, fan_in_scales


def _net() -> nn.Module:
    return nn.Sequential(nn.Conv2d(2, 3, 3), nn.Flatten(), nn.Linear(12, 4), nn.LayerNorm(4))


def test_fan_in_scales_follow_each_tensor_and_its_bias() -> None:
    net = _net()
    spec = ParamSpec.from_module(net)
    scales = fan_in_scales(spec, net, gain=3.0).split([e.numel for e in spec])
    expected = [3 / math.sqrt(18), 3 / math.sqrt(18), 3 / math.sqrt(12), 3 / math.sqrt(12), 3, 3]
    for part, want, entry in zip(scales, expected, spec, strict=True):
        assert torch.allclose(part, torch.full_like(part, want)), entry.name


def test_a_fan_in_prior_scores_samples_by_its_per_weight_scales() -> None:
    net = _net()
    spec = ParamSpec.from_module(net)
    prior = GaussianPrior(3.0, fan_in=True).bind(spec, net)
    s = fan_in_scales(spec, net, 3.0)
    w = prior.sample(4000, spec.dim, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(w.std(0), s, rtol=0.1)
    exact = torch.distributions.Normal(0.0, s).log_prob(w[:3]).sum(-1)
    torch.testing.assert_close(prior.log_prob(w[:3]), exact)
    m2 = torch.rand(spec.dim)
    cross = 0.5 * (m2 / s**2).sum() + s.log().sum() + 0.5 * spec.dim * math.log(2 * math.pi)
    torch.testing.assert_close(prior.cross_entropy(m2), cross)
    # the Jacobian KL's form: per-tensor sums of squares of S means and of sigma
    mean, sigma = torch.randn(3, spec.dim), torch.rand(spec.dim)
    quad = prior.square_sums(mean) / 3 + prior.square_sums(sigma)
    per_weight = (mean * mean).mean(0) + sigma * sigma
    torch.testing.assert_close(
        prior.cross_entropy_of_tensors(quad), prior.cross_entropy(per_weight)
    )
    # the closed-form Gaussian KL takes the per-weight scales too
    mean, log_var = torch.randn(spec.dim), torch.randn(spec.dim)
    q = torch.distributions.Normal(mean, (0.5 * log_var).exp())
    p = torch.distributions.Normal(torch.zeros_like(s), s)
    want = torch.distributions.kl_divergence(q, p).sum()
    torch.testing.assert_close(gaussian_kl_to_isotropic(mean, log_var, s), want)


def test_the_empirical_bayes_cross_term_is_the_gaussians_at_its_best_scale() -> None:
    net = _net()
    spec = ParamSpec.from_module(net)
    prior = GaussianPrior(empirical_bayes=True).bind(spec, net)
    m2 = torch.rand(spec.dim) + 0.1
    got = prior.cross_entropy(m2)
    best = torch.tensor(0.0)
    for part in m2.split(prior.sizes):  # each tensor at s^2 = its mean second moment
        s2 = part.mean()
        best = best + 0.5 * part.sum() / s2 + 0.5 * part.numel() * torch.log(2 * math.pi * s2)
    torch.testing.assert_close(got, best)
    for scale in (0.5, 2.0):  # any fixed scale gives a larger cross term
        fixed = GaussianPrior(scale).cross_entropy(m2)
        assert fixed > got
    with pytest.raises(ValueError, match="empirical-Bayes prior has no fixed scales"):
        prior.sample(2, spec.dim)


def test_an_unbound_fan_in_prior_and_bad_scales_are_refused() -> None:
    with pytest.raises(RuntimeError, match="bound"):
        GaussianPrior(3.0, fan_in=True).sample(2, 5)
    with pytest.raises(ValueError, match="positive finite"):
        GaussianPrior(0.0)
    with pytest.raises(ValueError, match="not both"):
        GaussianPrior(fan_in=True, empirical_bayes=True)


def test_bbh_and_bbb_take_the_same_prior_module() -> None:
    import bbh
    from bbh.nets import MLP

    prior = GaussianPrior(2.0, fan_in=True)
    for name in ("bbh", "bbb"):
        method = bbh.build(name, MLP(4, [3], 2), prior=prior)
        assert method.prior is not prior and method.prior.fan_in and method.prior.scale == 2.0
        torch.testing.assert_close(method.prior.scales[:12], torch.full((12,), 1.0))  # 2/sqrt(4)
    with pytest.raises(ValueError, match="unknown prior"):
        bbh.build("bbb", MLP(4, [3], 2), prior="laplace")
    with pytest.raises(ValueError, match="BbH's"):
        bbh.build("bbb", MLP(4, [3], 2), prior="empirical_bayes")


@pytest.mark.parametrize("shape", [(9,), (1, 9), (2, 9), (3, 9), (2, 4, 9), (64, 9)])
def test_square_sums_and_their_gradient_match_the_per_tensor_sums(shape):
    """The fused per-tensor sums of squares (dot products, one gradient tensor) give the values
    and the gradient of ``(p * p).sum()`` per tensor, for a vector, a few samples and many."""
    from bbh.priors import _SquareSums

    torch.manual_seed(0)
    sizes = (4, 1, 3, 1)
    x = torch.randn(shape, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(len(sizes), dtype=torch.float64)
    got = _SquareSums.apply(x, sizes)
    want = torch.stack([(p * p).sum() for p in x.split(sizes, dim=-1)])
    torch.testing.assert_close(got, want, rtol=1e-12, atol=0)
    (grad,) = torch.autograd.grad((got * weight).sum(), x)
    (expected,) = torch.autograd.grad((want * weight).sum(), x)
    torch.testing.assert_close(grad, expected, rtol=1e-12, atol=0)
    # a strided input (the generator's samples are a slice of its padded output)
    padded = torch.randn(2, 12, dtype=torch.float64)
    strided = padded[:, :9].requires_grad_()
    (grad,) = torch.autograd.grad((_SquareSums.apply(strided, sizes) * weight).sum(), strided)
    torch.testing.assert_close(
        grad,
        2 * strided.detach() * weight.repeat_interleave(torch.tensor(sizes)),
        rtol=1e-12,
        atol=0,
    )
