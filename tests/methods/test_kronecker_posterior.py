"""BbH with the Kronecker generator reaches the exact posterior where its family holds it.

Multi-output Bayesian linear regression, ``Y = [X, 1] W^T + N(0, I)`` with ``W ~ N(0, I)``: the
posterior of ``W [out, in + 1]`` is matrix-normal, ``N(M, I (x) A^-1)`` with
``A = [X, 1]^T [X, 1] + I``, so the ELBO's optimum in the Kronecker family is the posterior
itself (KL 0). Started at the posterior mean, as fine-tuning starts at trained weights, a short
run must bring the covariance within a small fraction of the KL that the best mean-field
Gaussian keeps (0.60 nats here), and the means and the output must survive a state-dict round trip.
"""

from __future__ import annotations

import torch
from torch import nn

import bbh
from bbh.training import fit

DIM, OUT, NUM_DATA, STEPS = 5, 3, 60, 400


def _data() -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(NUM_DATA, DIM, generator=gen)
    y = x @ torch.randn(DIM, OUT, generator=gen) + 0.5 + torch.randn(NUM_DATA, OUT, generator=gen)
    return x, y


def _exact(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The posterior's mean ``[OUT, DIM + 1]`` and covariance (row-major ``vec W``)."""
    features = torch.cat([x, torch.ones(NUM_DATA, 1)], 1).double()
    precision = features.T @ features + torch.eye(DIM + 1, dtype=torch.float64)
    cov = torch.linalg.inv(precision).contiguous()
    mean = (cov @ features.T @ y.double()).T
    return mean, torch.kron(torch.eye(OUT, dtype=torch.float64), cov)


def _gaussian_kl(m0: torch.Tensor, s0: torch.Tensor, m1: torch.Tensor, s1: torch.Tensor) -> float:
    """``KL(N(m0, s0) || N(m1, s1))``."""
    inv = torch.linalg.inv(s1)
    dm = (m1 - m0).reshape(-1)
    value = torch.trace(inv @ s0) + dm @ inv @ dm - dm.numel() + s1.logdet() - s0.logdet()
    return float(0.5 * value)


def _model(mean: torch.Tensor) -> bbh.BayesByHypernet:
    layer = nn.Linear(DIM, OUT)
    with torch.no_grad():
        layer.weight.copy_(mean[:, :DIM])
        layer.bias.copy_(mean[:, DIM])
    return bbh.BayesByHypernet(
        layer,
        generator="kronecker",
        likelihood="gaussian",
        noise_scale=1.0,
        prior="isotropic",
        prior_scale=1.0,
        temperature=1.0,
    )


def test_a_short_run_reaches_the_exact_matrix_normal_posterior() -> None:
    torch.manual_seed(0)
    x, y = _data()
    mean, cov = _exact(x, y)
    mean_field = torch.diag(1 / torch.linalg.inv(cov).diagonal())  # the best diagonal q's
    mean_field_kl = _gaussian_kl(mean, mean_field, mean, cov)
    assert mean_field_kl > 0.5  # the inputs are correlated enough for the test to mean something

    model = _model(mean)
    start = model.posterior.generator
    with torch.no_grad():
        before = _q(start)
    assert _gaussian_kl(*before, mean, cov) > 50 * mean_field_kl  # starts far off (spread 0.01)
    fit(model, x, y, steps=STEPS, batch_size=NUM_DATA, log_every=STEPS)
    with torch.no_grad():
        m, s = _q(model.posterior.generator)
    kl = _gaussian_kl(m, s, mean, cov)
    assert kl < 0.05 * mean_field_kl, (kl, mean_field_kl)

    copy = _model(mean)
    copy.load_state_dict(model.state_dict())
    torch.manual_seed(5)
    a = model.predict_logits(x[:4], num_samples=3)
    torch.manual_seed(5)
    torch.testing.assert_close(copy.predict_logits(x[:4], num_samples=3), a)


def _q(gen: object) -> tuple[torch.Tensor, torch.Tensor]:
    """The generator's mean ``[OUT, DIM + 1]`` and covariance (``kron(R, C)``), float64."""
    row, col = gen.row_factors[0], gen.col_factors[0]  # type: ignore[attr-defined]
    r, c = row.matrix().double(), col.matrix().double()
    return gen.means[0].double(), torch.kron(r @ r.T, c @ c.T)  # type: ignore[attr-defined]
