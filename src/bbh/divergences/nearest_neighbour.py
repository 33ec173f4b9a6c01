"""Sample-based KL estimators from nearest-neighbour distances, as in the paper's code
(pawni/BayesByHypernet, ``experiments.run_klapprox_experiment``).

``KL(q || p) ~ (d / n) sum_j log(nu_j / rho_j) + log(m / (n - 1))`` (Wang, Kulkarni and Verdu 2009;
Perez-Cruz 2008), with ``rho_j`` the distance from ``w_j`` to its nearest other q-sample and
``nu_j`` the distance to the nearest of ``m`` prior samples. No kernel and no bandwidth.

Two forms:

- ``coordinate`` (the paper's v2 per-weight estimator): D one-dimensional estimates, summed; each
  carries its own constant ``log(m / (n - 1))``. It ignores correlations between weights.
- ``full`` (the paper's ``--full_kernel``): one estimate in R^D; the constant is added once (the
  paper's code multiplies it by D; it has no gradient, so only the logged value differs).

Distances enter as ``0.5 * log(dist^2 + eps)``, so coinciding samples give finite values and
finite gradients.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

EPS = 1e-12  # added to squared distances: a floor of 1e-6 on a distance


def check_samples(samples: Tensor, name: str = "samples", minimum: int = 2) -> None:
    """Check that ``samples`` is ``[S, D]`` with at least ``minimum`` samples.

    Args:
        samples: The samples to check.
        name: Their name in the error message.
        minimum: The least number of samples S.

    Raises:
        ValueError: ``samples`` is not 2-D or has fewer than ``minimum`` rows.
    """
    if samples.dim() != 2:
        raise ValueError(f"{name} must have shape [S, D], got {list(samples.shape)}")
    if samples.shape[0] < minimum:
        raise ValueError(
            f"{name}: the nearest-neighbour estimators need at least {minimum} samples "
            f"(num_samples >= {minimum}), got S={samples.shape[0]}"
        )


def self_nn_sq_dists_coordinate(a: Tensor) -> Tensor:
    """Per coordinate, the squared distance to the nearest *other* sample: ``[S, D] -> [D, S]``.

    Sorts the S values of each coordinate and takes the smaller neighbouring gap: O(D S log S)
    time and O(D S) memory instead of the ``[D, S, S]`` distance table.
    """
    values, order = a.t().sort(dim=1)  # [D, S]
    gaps = values[:, 1:] - values[:, :-1]
    inf = torch.full_like(values[:, :1], float("inf"))
    nearest = torch.minimum(torch.cat([inf, gaps], 1), torch.cat([gaps, inf], 1))
    return torch.empty_like(nearest).scatter(1, order, nearest).pow(2)


def cross_nn_sq_dists_coordinate(a: Tensor, b: Tensor) -> Tensor:
    """Per coordinate, the squared distance from each ``a`` to the nearest ``b``: ``[D, S]``."""
    b_sorted = b.t().sort(dim=1).values.contiguous()  # [D, M]
    a_t = a.t().contiguous()  # [D, S]
    pos = torch.searchsorted(b_sorted, a_t.detach())
    last = b_sorted.shape[1] - 1
    below = b_sorted.gather(1, (pos - 1).clamp(0, last))
    above = b_sorted.gather(1, pos.clamp(0, last))
    return torch.minimum((a_t - below).abs(), (a_t - above).abs()).pow(2)


def pairwise_sq_dists_full(a: Tensor, b: Tensor) -> Tensor:
    """Squared Euclidean distances in R^D: ``[S, D], [M, D] -> [S, M]``.

    For large D through Gram matrices (one ``[S, D] x [D, M]`` product, in float64 after shifting
    both sets by the mean of ``a``, so nearly coinciding samples keep their small distances); for
    small D (where many samples lie close together) from exact differences.
    """
    if a.shape[1] <= 64:
        return (a.unsqueeze(1) - b.unsqueeze(0)).pow(2).sum(-1)
    shift = a.mean(0, keepdim=True).detach()
    a0, b0 = (a - shift).double(), (b - shift).double()
    sq = a0.pow(2).sum(-1, keepdim=True) + b0.pow(2).sum(-1) - 2 * (a0 @ b0.t())
    return sq.clamp_min(0).to(a.dtype)


def self_nn_sq_dists(sq: Tensor) -> Tensor:
    """Nearest *other* sample: mask the diagonal of ``[..., S, S]`` and take the row minimum."""
    s = sq.shape[-1]
    mask = torch.eye(s, dtype=torch.bool, device=sq.device)
    return sq.masked_fill(mask, float("inf")).min(-1).values


def nn_kl_coordinate(q_samples: Tensor, p_samples: Tensor) -> Tensor:
    """Sum over the D coordinates of 1-D nearest-neighbour KL estimates (scalar).

    Args:
        q_samples: Posterior samples ``[n, D]``, n >= 2.
        p_samples: Prior samples ``[m, D]``, m >= 1.

    Returns:
        A scalar tensor, differentiable in ``q_samples``.

    Raises:
        ValueError: A set is not ``[S, D]`` or has too few samples.
    """
    check_samples(q_samples, "q_samples")
    check_samples(p_samples, "p_samples", minimum=1)
    n, m = q_samples.shape[0], p_samples.shape[0]
    rho2 = self_nn_sq_dists_coordinate(q_samples)  # [D, n]
    nu2 = cross_nn_sq_dists_coordinate(q_samples, p_samples)  # [D, n]
    per_coord = 0.5 * (torch.log(nu2 + EPS) - torch.log(rho2 + EPS)).mean(-1)
    return per_coord.sum() + q_samples.shape[1] * math.log(m / (n - 1))


def nn_kl_full(q_samples: Tensor, p_samples: Tensor) -> Tensor:
    """One nearest-neighbour KL estimate over full vectors in R^D (scalar).

    Args:
        q_samples: Posterior samples ``[n, D]``, n >= 2.
        p_samples: Prior samples ``[m, D]``, m >= 1.

    Returns:
        A scalar tensor, differentiable in ``q_samples``.

    Raises:
        ValueError: A set is not ``[S, D]`` or has too few samples.
    """
    check_samples(q_samples, "q_samples")
    check_samples(p_samples, "p_samples", minimum=1)
    n, m = q_samples.shape
    m = p_samples.shape[0]
    d = q_samples.shape[1]
    rho2 = self_nn_sq_dists(pairwise_sq_dists_full(q_samples, q_samples))  # [n]
    nu2 = pairwise_sq_dists_full(q_samples, p_samples).min(-1).values  # [n]
    return d * 0.5 * (torch.log(nu2 + EPS) - torch.log(rho2 + EPS)).mean() + math.log(m / (n - 1))
