"""The posterior's scales reach their optimum within a short run (the default ``sigma_rate``).

Bayesian linear regression with a known posterior: an affine generator with a rank-1 noise path
(``noise_dim=1``), so the learned per-weight sigma carries almost all of q's spread. A short run
at the default rate must land within 10% of a long run's marginal stds, and both on the exact
posterior's; at the old rate (1e-3, a cap that bound sigma) the short run cannot.
"""

from __future__ import annotations

import torch
from torch import nn

import bbh
from bbh.training import fit

DIM, NUM_DATA, SHORT, LONG = 8, 40, 400, 3000


def _data() -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(NUM_DATA, DIM, generator=gen)
    y = x @ torch.randn(DIM, generator=gen) + torch.randn(NUM_DATA, generator=gen)
    return x, y[:, None]


def _posterior_precision(x: torch.Tensor) -> torch.Tensor:
    return x.T @ x + torch.eye(DIM)  # noise 1, prior N(0, I)


def _marginal_std(steps: int, **options: float) -> torch.Tensor:
    """q's marginal std per weight after ``steps`` full-batch steps (exact for the affine q)."""
    torch.manual_seed(0)
    x, y = _data()
    model = bbh.BayesByHypernet(
        nn.Linear(DIM, 1, bias=False),
        likelihood="gaussian",
        noise_scale=1.0,
        prior="isotropic",
        prior_scale=1.0,
        temperature=1.0,
        generator="layerwise",
        hidden=(),
        noise_dim=1,
        **options,
    )
    fit(model, x, y, steps=steps, batch_size=NUM_DATA, log_every=steps)
    gen = model.hypernet.generator
    with torch.no_grad():
        loadings = torch.cat(gen.noise_loadings())  # [D, k]
        return (loadings.pow(2).sum(-1) + model.hypernet.sigma().pow(2)).sqrt()


def test_a_short_run_reaches_the_long_runs_sigma_at_the_default_rate() -> None:
    precision = _posterior_precision(_data()[0])
    exact = torch.linalg.inv(precision).diagonal().sqrt()
    # q's family (rank-1 + diagonal) lies between the mean-field optimum and the exact posterior
    mean_field = precision.diagonal().rsqrt()
    long = _marginal_std(LONG)
    assert (long > 0.9 * mean_field).all() and (long < 1.1 * exact).all(), (long, exact)
    short = _marginal_std(SHORT)
    ratio = short / long
    assert ratio.min() > 0.9 and ratio.max() < 1.1, ratio
    # the old rate is a cap: the same short run stops far below the optimum
    capped = _marginal_std(SHORT, sigma_rate=1e-3) / long
    assert capped.max() < 0.9, capped
