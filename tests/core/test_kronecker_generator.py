"""The Kronecker-factored generator: its stated Gaussian, exact moments and entropy, layout."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import bbh
from bbh.functional import ParamSpec
from bbh.hypernets import KroneckerGenerator
from bbh.hypernets.kronecker import matrix_groups
from bbh.hypernets.options import GeneratorOptions


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(2, 3, 3), nn.Flatten(), nn.Linear(12, 4), nn.LayerNorm(4), nn.Linear(4, 2, False)
    )


def _perturbed(spec: ParamSpec, **options: object) -> KroneckerGenerator:
    """A generator whose factors are far from their start (dense lower parts filled in)."""
    gen = KroneckerGenerator(spec, torch.randn(spec.dim), init_noise_scale=0.3, **options)
    with torch.no_grad():
        for p in gen.parameters():
            p.add_(0.2 * torch.randn_like(p))
    return gen


def _dense_covariance(gen: KroneckerGenerator) -> torch.Tensor:
    """q's ``[D, D]`` covariance from the factors (``kron(R, C)`` per matrix), in spec order."""
    blocks = []
    for rf, cf in zip(gen.row_factors, gen.col_factors, strict=True):
        left = [f.matrix() if f.matrix() is not None else torch.diag(f.diag()) for f in (rf, cf)]
        r, c = (m @ m.T for m in left)
        blocks.append(torch.kron(r, c))
    order = gen._spec_order
    return torch.block_diag(*blocks).double()[order][:, order]


def test_layers_weights_take_their_bias_as_a_last_column_and_the_rest_stand_alone() -> None:
    groups = matrix_groups(ParamSpec.from_module(_net()))
    shapes = [(g.weight.name, g.bias.name if g.bias else None, g.rows, g.cols) for g in groups]
    assert shapes == [
        ("0.weight", "0.bias", 3, 2 * 3 * 3 + 1),
        ("2.weight", "2.bias", 4, 13),
        ("3.weight", None, 4, 1),  # a norm's scale: one column
        ("3.bias", None, 4, 1),
        ("4.weight", None, 2, 4),
    ]


@pytest.mark.parametrize("max_factor", [1024, 5])  # 5: the wide factors are diagonal
def test_moments_and_entropy_are_those_of_the_stated_gaussian(max_factor: int) -> None:
    torch.manual_seed(1)
    spec = ParamSpec.from_module(_net())
    gen = _perturbed(spec, max_factor=max_factor)
    cov = _dense_covariance(gen)
    with torch.no_grad():
        second, entropy = gen.gaussian_terms()
        mean = gen.generate(torch.zeros(1, 1, spec.dim))[0].double()
        draws = gen(100_000).double()
    torch.testing.assert_close(second.double(), mean**2 + cov.diagonal(), rtol=1e-5, atol=1e-6)
    exact = 0.5 * torch.logdet(2 * math.pi * math.e * cov)
    torch.testing.assert_close(entropy.double(), exact, rtol=1e-5, atol=1e-4)
    # the draws have that mean and covariance (Monte Carlo: 100k draws)
    centred = draws - mean
    empirical = centred.T @ centred / len(draws)
    scale = cov.diagonal().sqrt()
    corr_error = (empirical - cov) / (scale[:, None] * scale[None])
    assert corr_error.abs().max() < 0.03, corr_error.abs().max()
    assert (draws.mean(0) - mean).abs().div(scale).max() < 0.03
    if max_factor == 5:
        assert gen.col_factors[0].lower is None and gen.row_factors[0].lower is not None


def test_it_starts_at_the_net_with_the_initial_spread_and_tangents_are_its_linear_part() -> None:
    spec = ParamSpec.from_module(_net())
    init = torch.randn(spec.dim)
    gen = KroneckerGenerator(spec, init, init_noise_scale=0.05)
    torch.testing.assert_close(gen.generate(torch.zeros(1, 1, spec.dim))[0], init)
    second, _ = gen.gaussian_terms()
    torch.testing.assert_close(second - init**2, torch.full((spec.dim,), 0.05**2))
    gen = _perturbed(spec)
    z, dz = torch.randn(3, 1, spec.dim), torch.randn(2, 3, 1, spec.dim)
    w, dw = gen.generate_with_tangents(z, dz)
    torch.testing.assert_close(w, gen.generate(z))
    torch.testing.assert_close(dw[1], gen.generate(z + dz[1]) - w, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"hidden": (8,)}, "no hidden layers"),
        ({"noise_dim": 4}, "one noise value per weight"),
    ],
)
def test_options_it_does_not_have_are_refused(options: dict[str, object], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        GeneratorOptions("kronecker", **options)  # type: ignore[arg-type]


def test_it_is_its_own_gaussian_so_a_semi_implicit_sigma_is_refused() -> None:
    with pytest.raises(ValueError, match="Gaussian of its own"):
        bbh.BayesByHypernet(nn.Linear(3, 2), generator="kronecker", init_sigma=0.1)
    for sigma_option in ({"sigma_per": "unit"}, {"sigma_noise": "local"}, {"kl": "sivi"}):
        with pytest.raises(ValueError, match="no semi-implicit"):
            bbh.BayesByHypernet(nn.Linear(3, 2), generator="kronecker", **sigma_option)
    model = bbh.BayesByHypernet(nn.Linear(3, 2), generator="kronecker", temperature=1.0)
    assert not model.posterior.semi_implicit
    assert model.resolved_options["weight_noise"] is None
    assert model.resolved_options["noise_dim"] == 8  # one per weight: 2 x 3 + 2


def test_bad_arguments_are_named() -> None:
    spec = ParamSpec.from_module(nn.Linear(3, 2))
    with pytest.raises(ValueError, match=r"init must have shape \[8\]"):
        KroneckerGenerator(spec, torch.zeros(7))
    with pytest.raises(ValueError, match="init_noise_scale must be positive"):
        KroneckerGenerator(spec, init_noise_scale=0.0)
    with pytest.raises(ValueError, match="max_factor must be an int >= 1"):
        KroneckerGenerator(spec, max_factor=0)
