"""References for the toy posterior: HMC on the exact BNN, and a Gaussian with its prior moments.

The model: ``f(x) = b2 + sum_j v_j relu(w_j x + b_j)`` with ``H`` hidden units, every weight and
bias ``~ N(0, s^2)``, and ``y ~ N(f(x), sigma^2)``. Both references return the predictive mean of
``f`` and its standard deviation (weight uncertainty only) on a grid.

- ``hmc_reference``: Hamiltonian Monte Carlo on the exact posterior of the finite network, several
  chains run as one batch, step size adapted during warm-up to an acceptance rate near 0.75.
- ``gp_reference``: the Gaussian process with the prior mean and covariance of the *finite* H-unit
  net, ``s^2 + H s^2 E[relu(u) relu(u')]`` (an arc-cosine kernel of order 1). It is not an
  infinite-width limit: the output weights are ``N(0, s^2)``, not scaled by ``1 / sqrt(H)``, so the
  prior variance grows with H and has no limit, and the net's posterior is not Gaussian. On the
  paper's toy (H = 100) its predictive std is 0.95-1.01x that of a long NUTS run and its mean within
  0.15 NUTS stds (``benchmarks/posterior/make_references.py``, recorded in
  ``bbh/experiments/posterior_check/references/toy.json``; the HMC here agrees with that NUTS run
  within 1.2% in std).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class Reference:
    """The reference predictive on the toy's grid: mean and standard deviation of ``f`` per grid
    point, and how it was computed.
    """

    mean: Tensor  # [G], predictive mean of f
    std: Tensor  # [G], standard deviation of f (weight uncertainty, no noise)
    info: dict[str, float]


def relu_features(w: Tensor, x: Tensor, hidden: int) -> Tensor:
    """The hidden layer of the batched 1-H-1 ReLU net: ``w [C, >= 2H]`` (first-layer weights,
    then biases), ``x [N]`` -> ``[C, N, H]``."""
    w1, b1 = w[:, :hidden], w[:, hidden : 2 * hidden]
    return torch.relu(x[None, :, None] * w1[:, None, :] + b1[:, None, :])


def relu_net(w: Tensor, x: Tensor, hidden: int) -> Tensor:
    """Batched 1-H-1 ReLU net: ``w [C, 3H + 1]`` (w1, b1, w2, b2), ``x [N]`` -> ``[C, N]``."""
    w2, b2 = w[:, 2 * hidden : 3 * hidden], w[:, 3 * hidden]
    return (relu_features(w, x, hidden) * w2[:, None, :]).sum(-1) + b2[:, None]


def hmc_reference(
    x: Tensor,
    y: Tensor,
    grid: Tensor,
    *,
    hidden: int = 100,
    prior_scale: float = 1.0,
    noise_std: float = 9.0,
    chains: int = 16,
    warmup: int = 1500,
    samples: int = 1500,
    leapfrog_steps: int = 25,
    seed: int = 0,
) -> Reference:
    """HMC over the ``3H + 1`` weights; keeps every sample after warm-up from every chain."""
    gen = torch.Generator().manual_seed(seed)
    x64, y64, g64 = (t.reshape(-1).double() for t in (x, y, grid))
    dim = 3 * hidden + 1

    def log_post(w: Tensor) -> Tensor:
        resid = (y64[None] - relu_net(w, x64, hidden)) / noise_std
        return -0.5 * resid.pow(2).sum(-1) - 0.5 * w.pow(2).sum(-1) / prior_scale**2

    def grad(w: Tensor) -> tuple[Tensor, Tensor]:
        w = w.detach().requires_grad_(True)
        lp = log_post(w)
        (g,) = torch.autograd.grad(lp.sum(), w)
        return lp.detach(), g

    w = prior_scale * torch.randn(chains, dim, generator=gen, dtype=torch.float64)
    lp, g = grad(w)
    step = torch.full((chains, 1), 0.01, dtype=torch.float64)
    kept, accepted = [], 0.0
    for it in range(warmup + samples):
        p0 = torch.randn(chains, dim, generator=gen, dtype=torch.float64)
        jitter = torch.empty(chains, 1, dtype=torch.float64).uniform_(0.8, 1.2, generator=gen)
        eps = step * jitter
        wn, gn, p = w, g, p0 + 0.5 * eps * g
        for i in range(leapfrog_steps):
            wn = wn + eps * p
            lpn, gn = grad(wn)
            if i < leapfrog_steps - 1:
                p = p + eps * gn
        p = p + 0.5 * eps * gn
        log_accept = lpn - lp - 0.5 * (p.pow(2).sum(-1) - p0.pow(2).sum(-1))
        log_accept = torch.nan_to_num(log_accept, nan=-math.inf)
        accept_prob = log_accept.clamp(max=0).exp()
        accept = torch.rand(chains, generator=gen, dtype=torch.float64) < accept_prob
        w = torch.where(accept[:, None], wn, w)
        lp = torch.where(accept, lpn, lp)
        g = torch.where(accept[:, None], gn, g)
        if it < warmup:  # Robbins-Monro adaptation of the per-chain step size
            step = step * torch.exp(0.05 * (accept_prob[:, None] - 0.75))
        else:
            accepted += accept.double().mean().item()
            kept.append(relu_net(w, g64, hidden))
    f = torch.cat(kept)  # [samples * chains, G]
    return Reference(
        f.mean(0).float(),
        f.std(0).float(),
        {"acceptance": accepted / samples, "step_size": step.mean().item(), "draws": len(f)},
    )


def arccos_kernel(a: Tensor, b: Tensor, *, hidden: int, prior_scale: float) -> Tensor:
    """Prior covariance of the 1-H-1 ReLU net with ``N(0, s^2)`` weights: ``[N], [M] -> [N, M]``."""
    s2 = prior_scale**2
    va, vb = s2 * (a.pow(2) + 1), s2 * (b.pow(2) + 1)
    cov = s2 * (a[:, None] * b[None, :] + 1)
    norm = (va[:, None] * vb[None, :]).sqrt()
    theta = torch.acos((cov / norm).clamp(-1.0, 1.0))
    relu_cov = norm / (2 * math.pi) * (torch.sin(theta) + (math.pi - theta) * torch.cos(theta))
    return s2 + hidden * s2 * relu_cov


def gp_reference(
    x: Tensor,
    y: Tensor,
    grid: Tensor,
    *,
    hidden: int = 100,
    prior_scale: float = 1.0,
    noise_std: float = 9.0,
) -> Reference:
    """Exact GP regression with ``arccos_kernel`` (the finite net's prior moments) and noise."""
    x64, y64, g64 = (t.reshape(-1).double() for t in (x, y, grid))

    def k(a: Tensor, b: Tensor) -> Tensor:
        return arccos_kernel(a, b, hidden=hidden, prior_scale=prior_scale)

    kxx = k(x64, x64) + noise_std**2 * torch.eye(len(x64), dtype=torch.float64)
    kgx = k(g64, x64)
    kgg_diag = k(g64, g64).diagonal()
    chol = torch.linalg.cholesky(kxx)
    alpha = torch.cholesky_solve(y64[:, None], chol)
    mean = (kgx @ alpha).squeeze(1)
    v = torch.linalg.solve_triangular(chol, kgx.t(), upper=False)
    var = (kgg_diag - v.pow(2).sum(0)).clamp_min(0)
    return Reference(mean.float(), var.sqrt().float(), {})
