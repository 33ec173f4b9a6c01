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


def test_a_saved_sigma_loads_as_the_same_sigma_whatever_the_rate() -> None:
    """``log sigma`` is stored divided by a rate-dependent scale: a file of another rate, or of
    before the scale was saved (then the old default, 1e-3), loads to the same sigmas."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(6, 40), nn.ReLU(), nn.Linear(40, 3))  # 1,123 weights: chunked
    slow = bbh.BayesByHypernet(net, sigma_rate=1e-3)
    with torch.no_grad():
        slow.hypernet.log_sigma_param.uniform_(-5, -1)
    sigma = slow.hypernet.sigma()
    fast = bbh.BayesByHypernet(net)  # the default rate, 30 times the scale
    fast.load_state_dict(slow.state_dict())
    torch.testing.assert_close(fast.hypernet.sigma(), sigma)
    old = {
        k: v
        for k, v in slow.state_dict().items()
        if k not in ("temperature", "hypernet.saved_log_sigma_scale")
    }
    legacy = bbh.BayesByHypernet(net)
    legacy.load_state_dict(old)  # a file from before issue 25: trained at 1e-3
    torch.testing.assert_close(legacy.hypernet.sigma(), sigma)
    options = bbh.BayesByHypernet.options_for_state_dict({}, old)
    assert options["sigma_rate"] == 1e-3 and options["temperature"] == 1.0
    assert options["prior"] == "isotropic"
