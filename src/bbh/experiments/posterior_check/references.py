"""Trusted posteriors for the posterior-check suite: exact, fine-grid and stored NUTS references.

A ``PosteriorReference`` holds what the metrics compare against, on a case's held-out inputs
``x_test [T, ...]``: the predictive mean and standard deviation of f (weight uncertainty only),
and, where the weights are identifiable, weight draws ``[R, D]`` with the mean ``[D]`` and
covariance ``[D, D]``. ``floor_*`` are a second, independent set of draws: scored like a method,
they show the metrics' own noise floor (what a perfect posterior scores with that many draws).

- ``gaussian_linear_reference``: Bayesian linear regression, exact Gaussian posterior;
- ``product_grid_reference``: the 2-D product model ``f(x) = w2 w1 x``, exact on a fine grid;
- ``load_stored_reference``: a NUTS run stored by ``benchmarks/posterior/make_references.py``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

import numpy as np
import torch
from torch import Tensor


@dataclass(frozen=True)
class PosteriorReference:
    """A trusted posterior, summarised on a case's held-out inputs (float64 throughout)."""

    kind: str  # "exact", "grid" or "nuts"
    f_mean: Tensor  # [T], E[f(x_test)]
    f_std: Tensor  # [T], std of f(x_test) under the posterior
    f_draws: Tensor  # [R, T], f at the held-out inputs for reference draws (figures)
    floor_f_draws: Tensor  # [R', T], independent of f_draws
    weight_draws: Tensor | None = None  # [R, D]; None where weights are not identifiable
    floor_weight_draws: Tensor | None = None  # [R', D], independent of weight_draws
    weight_mean: Tensor | None = None  # [D]
    weight_cov: Tensor | None = None  # [D, D]
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def has_weights(self) -> bool:
        """Whether the reference has weight draws (the weights are identifiable)."""
        return self.weight_draws is not None


def gaussian_linear_reference(
    x: Tensor,
    y: Tensor,
    x_test: Tensor,
    *,
    noise_std: float,
    prior_scale: float = 1.0,
    num_draws: int = 10_000,
    seed: int = 0,
) -> PosteriorReference:
    """Exact posterior of ``y = x . w + N(0, noise_std^2)``, ``w ~ N(0, prior_scale^2 I)``.

    ``x [N, D]``, ``y [N]`` or ``[N, 1]``, ``x_test [T, D]``. Precision
    ``A = X^T X / noise^2 + I / s^2``, covariance ``A^-1``, mean ``A^-1 X^T y / noise^2``.
    """
    x64, y64, t64 = x.double(), y.reshape(-1).double(), x_test.double()
    dim = x64.shape[1]
    precision = x64.T @ x64 / noise_std**2 + torch.eye(dim, dtype=torch.float64) / prior_scale**2
    cov = torch.cholesky_inverse(torch.linalg.cholesky(precision))
    cov = 0.5 * (cov + cov.T)
    mean = cov @ (x64.T @ y64) / noise_std**2
    gen = torch.Generator().manual_seed(seed)
    chol = torch.linalg.cholesky(cov)
    eps = torch.randn(2 * num_draws, dim, generator=gen, dtype=torch.float64)
    draws = mean + eps @ chol.T
    f_std = ((t64 @ cov) * t64).sum(-1).clamp_min(0).sqrt()
    return PosteriorReference(
        kind="exact",
        f_mean=t64 @ mean,
        f_std=f_std,
        f_draws=draws[:num_draws] @ t64.T,
        floor_f_draws=draws[num_draws:] @ t64.T,
        weight_draws=draws[:num_draws],
        floor_weight_draws=draws[num_draws:],
        weight_mean=mean,
        weight_cov=cov,
        info={"kind": "exact Gaussian posterior", "draws": num_draws, "seed": seed},
    )


def product_grid_reference(
    x: Tensor,
    y: Tensor,
    x_test: Tensor,
    *,
    noise_std: float,
    prior_scale: float = 1.0,
    limit: float = 5.0,
    points: int = 1601,
    num_draws: int = 10_000,
    seed: int = 0,
) -> PosteriorReference:
    """Posterior of ``f(x) = w2 * w1 * x``, ``(w1, w2) ~ N(0, s^2 I)``, exact on a square grid.

    The density is evaluated on ``points x points`` cell centres of ``[-limit, limit]^2`` (the
    prior mass outside is below 1e-6 for ``limit = 5 s``); moments are exact sums over the grid,
    draws pick cells by their mass and jitter uniformly inside them. ``x``, ``y``: ``[N]`` or
    ``[N, 1]``; ``x_test [T]`` or ``[T, 1]``.
    """
    xs, ys, ts = x.reshape(-1).double(), y.reshape(-1).double(), x_test.reshape(-1).double()
    axis = torch.linspace(-limit, limit, points, dtype=torch.float64)
    w1, w2 = torch.meshgrid(axis, axis, indexing="ij")
    prod = w1 * w2
    sxx, sxy = (xs * xs).sum(), (xs * ys).sum()
    log_post = (
        -0.5 * (w1.pow(2) + w2.pow(2)) / prior_scale**2
        - 0.5 * (prod.pow(2) * sxx - 2 * prod * sxy) / noise_std**2
    )
    prob = torch.softmax(log_post.reshape(-1), 0)
    grid = torch.stack([w1.reshape(-1), w2.reshape(-1)], 1)  # [P, 2]
    mean = prob @ grid
    centred = grid - mean
    cov = (centred * prob[:, None]).T @ centred
    prod_flat = prod.reshape(-1)
    prod_mean = prob @ prod_flat
    prod_std = (prob @ (prod_flat - prod_mean).pow(2)).sqrt()
    gen = torch.Generator().manual_seed(seed)
    cells = torch.multinomial(prob.float(), 2 * num_draws, replacement=True, generator=gen)
    step = float(axis[1] - axis[0])
    jitter = (torch.rand(2 * num_draws, 2, generator=gen, dtype=torch.float64) - 0.5) * step
    draws = grid[cells] + jitter
    f_draws = (draws[:, 0] * draws[:, 1])[:, None] * ts[None, :]
    return PosteriorReference(
        kind="grid",
        f_mean=prod_mean * ts,
        f_std=prod_std * ts.abs(),
        f_draws=f_draws[:num_draws],
        floor_f_draws=f_draws[num_draws:],
        weight_draws=draws[:num_draws],
        floor_weight_draws=draws[num_draws:],
        weight_mean=mean,
        weight_cov=cov,
        info={
            "kind": f"exact on a {points} x {points} grid of [-{limit:g}, {limit:g}]^2",
            "grid_step": step,
            "draws": num_draws,
            "seed": seed,
        },
    )


@dataclass(frozen=True)
class StoredReference:
    """A reference NPZ as written by ``benchmarks/posterior/make_references.py``."""

    arrays: dict[str, np.ndarray]
    info: dict[str, Any]

    def tensor(self, key: str) -> Tensor:
        """One stored array as a float64 tensor.

        Args:
            key: The array's name in the NPZ.

        Returns:
            The array as a float64 tensor.

        Raises:
            KeyError: The reference has no array ``key``.
        """
        if key not in self.arrays:
            raise KeyError(f"reference {self.info.get('case')!r} has no array {key!r}")
        return torch.from_numpy(np.asarray(self.arrays[key])).double()


def read_stored_reference(name: str) -> StoredReference:
    """Read ``references/NAME.npz`` shipped with the package (a clear error if it is missing)."""
    path = resources.files("bbh.experiments.posterior_check").joinpath(f"references/{name}.npz")
    if not path.is_file():
        raise FileNotFoundError(
            f"no stored reference {name!r} at {path}; make it with "
            "benchmarks/posterior/make_references.py"
        )
    with path.open("rb") as fh, np.load(fh, allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    info = json.loads(str(arrays.pop("info")))
    return StoredReference(arrays, info)


def load_stored_reference(stored: StoredReference, *, weights: bool) -> PosteriorReference:
    """The ``PosteriorReference`` of a stored NUTS run.

    Moments (``f_mean``, ``f_std``, ``weight_mean``, ``weight_cov``) come from every kept draw of
    the run; the stored thinned draws are split in two interleaved halves: even ones are the
    reference draws, odd ones the floor.
    """
    key = "weight_draws" if weights else "f_draws"
    draws = stored.tensor(key)
    ref_draws, floor_draws = draws[0::2], draws[1::2]
    info = {**stored.info, "kind": "NUTS", "reference_draws": len(ref_draws)}
    if not weights:
        return PosteriorReference(
            kind="nuts",
            f_mean=stored.tensor("f_mean"),
            f_std=stored.tensor("f_std"),
            f_draws=ref_draws,
            floor_f_draws=floor_draws,
            info=info,
        )
    x_test = stored.tensor("x_test")
    return PosteriorReference(
        kind="nuts",
        f_mean=stored.tensor("f_mean"),
        f_std=stored.tensor("f_std"),
        f_draws=ref_draws @ x_test.T,
        floor_f_draws=floor_draws @ x_test.T,
        weight_draws=ref_draws,
        floor_weight_draws=floor_draws,
        weight_mean=stored.tensor("weight_mean"),
        weight_cov=stored.tensor("weight_cov"),
        info=info,
    )
