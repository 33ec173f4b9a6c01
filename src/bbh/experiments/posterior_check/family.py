"""The best a BbH family can do on a Gaussian posterior: the family's part of a method's error.

An affine generator with ``k`` noise dimensions plus the semi-implicit noise makes
``q = N(m, A A^T + diag(s^2))`` (a factor-analysis Gaussian; ``k = 0`` is mean-field). For a
Gaussian target ``N(mu, Sigma)`` the best such q under the variational objective minimises
``KL(q || N(mu, Sigma))``, which is closed form: ``m = mu`` and ``A``, ``s`` by optimisation. What
a trained method misses beyond this optimum is the estimator's and the optimiser's part.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class FamilyOptimum:
    """The best Gaussian of a rank-``rank`` factor family: its covariance and its KL to the
    target."""

    rank: int
    cov: Tensor  # [D, D], A A^T + diag(s^2) at the optimum
    kl: float  # KL(q* || target), nats


def best_factor_gaussian(
    cov: Tensor, rank: int, *, steps: int = 4000, lr: float = 0.01, seed: int = 0
) -> FamilyOptimum:
    """Minimise ``KL(N(mu, A A^T + diag(s^2)) || N(mu, cov))`` over ``A [D, rank]`` and ``s``.

    Float64 Adam on the closed form ``(tr(P C) - D + log det cov - log det C) / 2``, ``P =
    cov^-1``, from a small random ``A`` and ``s = 0.05``.
    """
    if rank < 0:
        raise ValueError(f"rank must be >= 0, got {rank}")
    cov = cov.double()
    dim = cov.shape[0]
    precision = torch.cholesky_inverse(torch.linalg.cholesky(cov))
    logdet_target = torch.logdet(cov)
    gen = torch.Generator().manual_seed(seed)
    loadings = (0.01 * torch.randn(dim, rank, generator=gen, dtype=torch.float64)).requires_grad_()
    log_s = torch.full((dim,), -3.0, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.Adam([loadings, log_s], lr=lr)

    def objective() -> tuple[Tensor, Tensor]:
        c = loadings @ loadings.T + torch.diag(torch.exp(2 * log_s))
        return 0.5 * ((precision * c).sum() - dim + logdet_target - torch.logdet(c)), c

    for _ in range(steps):
        kl, _ = objective()
        opt.zero_grad()
        kl.backward()
        opt.step()
    with torch.no_grad():
        kl, c = objective()
    return FamilyOptimum(rank, c, float(kl))


def predictive_std_ratio(cov_q: Tensor, cov: Tensor, x_test: Tensor) -> tuple[float, float]:
    """Median and worst (farthest from 1 in log) ratio of ``std(x . w)`` under q and the target."""
    x = x_test.double()
    ratio = (((x @ cov_q) * x).sum(-1) / ((x @ cov.double()) * x).sum(-1)).sqrt()
    worst = ratio[(ratio.log().abs()).argmax()]
    return float(ratio.median()), float(worst)
