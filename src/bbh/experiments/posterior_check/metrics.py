"""How far a posterior is from a trusted reference: pure functions on samples.

Function space (every method): on the held-out inputs, from f draws ``[S, T]``,

- ``std_ratio_median`` and ``std_ratio_worst``: the predictive standard deviation of f over the
  reference's, at the median over inputs and at the input where ``|log ratio|`` is largest
  (1 is right; 0 for a method with no spread);
- ``mean_rel_error``: ``||mean - mean_ref|| / ||mean_ref||`` over the inputs;
- ``mean_error_in_std``: the median over inputs of ``|mean - mean_ref| / std_ref``.

Weight space (methods with ``sample_weights``, references with identifiable weights), from
weight draws ``[S, D]``:

- ``w1_median`` and ``w1_worst``: per-weight marginal Wasserstein-1 distance between the method's
  and the reference's draws, in units of the reference's marginal standard deviation;
- ``cov_rel_error``: ``||Cov_q - Cov_ref||_F / ||Cov_ref||_F``.

Finite draws give every metric a noise floor; the suite scores an independent set of reference
draws to show it.
"""

from __future__ import annotations

import torch
from torch import Tensor


def function_metrics(f: Tensor, ref_mean: Tensor, ref_std: Tensor) -> dict[str, float]:
    """Predictive metrics of f draws ``[S, T]`` against the reference mean and std ``[T]``."""
    if f.dim() != 2 or f.shape[1] != ref_mean.shape[0] or ref_std.shape != ref_mean.shape:
        raise ValueError(
            f"f must be [S, T] with T = {ref_mean.shape[0]} held-out inputs, got {list(f.shape)}"
        )
    f = f.double()
    mean = f.mean(0)
    std = f.std(0) if f.shape[0] > 1 else torch.zeros_like(mean)
    ratio = std / ref_std.double()
    log_r = torch.log(ratio.clamp_min(0))  # -inf for a zero std
    worst = int(log_r.abs().argmax())
    return {
        "std_ratio_median": float(ratio.median()),
        "std_ratio_worst": float(ratio[worst]),
        "mean_rel_error": float((mean - ref_mean).norm() / ref_mean.double().norm()),
        "mean_error_in_std": float(((mean - ref_mean).abs() / ref_std).median()),
    }


def wasserstein1(a: Tensor, b: Tensor) -> Tensor:
    """Exact per-column W1 between empirical distributions: ``[n, D], [m, D] -> [D]``.

    ``W1 = int_0^1 |F_a^-1(u) - F_b^-1(u)| du``; both quantile functions are step functions, so
    the integral is a sum over the merged breakpoints ``{i / n} U {j / m}``.
    """
    if a.dim() != 2 or b.dim() != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(f"need [n, D] and [m, D] draws, got {list(a.shape)}, {list(b.shape)}")
    n, m = a.shape[0], b.shape[0]
    a_sorted, b_sorted = a.double().sort(0).values, b.double().sort(0).values
    f64 = torch.float64
    steps = torch.cat(
        [torch.arange(1, n + 1, dtype=f64) / n, torch.arange(1, m + 1, dtype=f64) / m]
    )
    u = torch.unique(steps)  # sorted, ends at 1
    widths = torch.diff(u, prepend=u.new_zeros(1))
    mid = u - 0.5 * widths
    ia = (mid * n).floor().long().clamp(0, n - 1)
    ib = (mid * m).floor().long().clamp(0, m - 1)
    return (widths[:, None] * (a_sorted[ia] - b_sorted[ib]).abs()).sum(0)


def weight_metrics(
    w: Tensor, ref_draws: Tensor, ref_cov: Tensor, *, ref_std: Tensor | None = None
) -> dict[str, float]:
    """Weight-space metrics of draws ``w [S, D]`` against reference draws ``[R, D]``.

    ``ref_std [D]`` (default: the square root of ``diag(ref_cov)``) scales each W1.
    """
    if w.dim() != 2 or w.shape[1] != ref_draws.shape[1]:
        raise ValueError(f"weight draws must be [S, D={ref_draws.shape[1]}], got {list(w.shape)}")
    if w.shape[0] < 2:
        raise ValueError("weight metrics need at least 2 draws")
    scale = ref_cov.diagonal().sqrt() if ref_std is None else ref_std
    w1 = wasserstein1(w, ref_draws) / scale.double()
    cov = torch.cov(w.double().T).reshape(w.shape[1], w.shape[1])
    return {
        "w1_median": float(w1.median()),
        "w1_worst": float(w1.max()),
        "cov_rel_error": float(
            torch.linalg.matrix_norm(cov - ref_cov) / torch.linalg.matrix_norm(ref_cov)
        ),
    }
