"""One figure per case: a summary over methods on top, one small panel per method below.

Top left: per method, the distribution over held-out inputs of the predictive std ratio (log
scale, 1 is right). Top right: per method, the per-weight marginal W1 in reference stds (where
both have weights). Below, per method, by the case's ``FigureKind``: predictive std per input
against the reference's (``std_scatter``), weight draws over the reference's (``weights_2d``), or
the predictive mean +- 2 std against the reference's (``bands``).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from bbh.experiments.posterior_check.cases import FigureKind, PosteriorCase
from bbh.experiments.posterior_check.metrics import wasserstein1
from bbh.io import savefig

COLS = 4
RATIO_FLOOR = 1e-3  # std ratios below (a point estimate's 0) are drawn here


def require_matplotlib() -> None:
    """Check that matplotlib is installed.

    Raises:
        RuntimeError: It is not (the message says how to install it or turn figures off).
    """
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise RuntimeError(
            "the posterior-check figures need matplotlib: pip install 'bayes-by-hypernet[plot]' "
            "(or pass figures=False / --no-figure)"
        ) from None


def plot_case(path: Path, case: PosteriorCase, entry: dict[str, Any]) -> None:
    """Draw ``entry`` (from ``check_case``) for ``case`` into the PNG ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ref = case.reference
    draws: dict[str, tuple[Tensor, Tensor | None]] = {
        "reference draws (floor)": (ref.floor_f_draws, ref.floor_weight_draws),
        **entry["_draws"],
    }
    labels = list(draws)
    rows = math.ceil(len(labels) / COLS)
    fig = plt.figure(figsize=(4.2 * COLS, 0.28 * len(labels) + 2.5 + 3.3 * rows))
    grid = fig.add_gridspec(rows + 1, COLS, height_ratios=[0.09 * len(labels) + 0.8] + [1.0] * rows)
    _summary_boxes(
        fig.add_subplot(grid[0, : COLS // 2]), fig.add_subplot(grid[0, COLS // 2 :]), case, draws
    )
    for i, label in enumerate(labels):
        ax = fig.add_subplot(grid[1 + i // COLS, i % COLS])
        f, w = draws[label]
        if case.figure is FigureKind.BANDS:
            _bands(ax, case, f)
        elif case.figure is FigureKind.WEIGHTS_2D:
            _weights_2d(ax, case, w)
        else:
            _std_scatter(ax, case, f)
        row = entry["rows"].get(label, {})
        ratio = row.get("std_ratio_median")
        title = label if not isinstance(ratio, float) else f"{label}\nstd ratio {ratio:.2f}"
        ax.set_title(title, fontsize=9)
        ax.tick_params(labelsize=7)
    top = 1 - 0.5 / fig.get_figheight()  # half an inch for the title
    fig.suptitle(f"{case.name}: {case.description}", fontsize=11, y=1 - 0.15 / fig.get_figheight())
    fig.tight_layout(rect=(0, 0, 1, top))
    savefig(fig, path, dpi=80)
    plt.close(fig)


def _summary_boxes(ax_std, ax_w1, case: PosteriorCase, draws) -> None:
    ref = case.reference
    labels = list(draws)[::-1]  # first method on top
    ratios: list = []
    w1s: list[Tensor | None] = []
    for label in labels:
        f, w = draws[label]
        std = f.double().std(0) if f.shape[0] > 1 else torch.zeros(f.shape[1])
        ratios.append((std / ref.f_std).clamp_min(RATIO_FLOOR).numpy())
        if w is not None and ref.weight_draws is not None and ref.weight_cov is not None:
            w1s.append(wasserstein1(w, ref.weight_draws) / ref.weight_cov.diagonal().sqrt())
        else:
            w1s.append(None)
    for i, values in enumerate(ratios):
        _range_bar(ax_std, i + 1, values)
    ax_std.set_xscale("log")
    ax_std.axvline(1.0, color="k", lw=0.8)
    ax_std.set_yticks(range(1, len(labels) + 1), labels, fontsize=7)
    ax_std.set_ylim(0.5, len(labels) + 0.5)
    ax_std.set_xlabel(
        "predictive std / reference std over held-out inputs (median, quartiles, range; "
        f"below {RATIO_FLOOR:g} drawn at {RATIO_FLOOR:g})"
    )
    ax_std.tick_params(axis="x", labelsize=7)
    shown = [(i + 1, v.numpy()) for i, v in enumerate(w1s) if v is not None]
    for position, values in shown:
        _range_bar(ax_w1, position, values)
    if shown:
        ax_w1.set_xscale("log")
    ax_w1.set_ylim(0.5, len(labels) + 0.5)
    ax_w1.set_yticks(range(1, len(labels) + 1), labels, fontsize=7)
    ax_w1.set_xlabel("per-weight W1 / reference std (median, quartiles, range)")
    ax_w1.tick_params(axis="x", labelsize=7)
    if not shown or case.weights_note:
        ax_w1.text(
            0.5, 0.5, case.weights_note or "no weight draws", transform=ax_w1.transAxes,
            ha="center", va="center", fontsize=8, wrap=True,
        )  # fmt: skip
    for i, v in enumerate(w1s):
        if v is None and shown:
            ax_w1.text(1.0, i + 1, " n/a", fontsize=7, va="center",
                       transform=ax_w1.get_yaxis_transform())  # fmt: skip


def _range_bar(ax, y: float, values) -> None:
    """Range as a thin line, quartiles as a thick one, the median as a dot."""
    lo, q1, med, q3, hi = np.quantile(values, [0, 0.25, 0.5, 0.75, 1])
    ax.plot([lo, hi], [y, y], color="tab:blue", lw=1)
    ax.plot([q1, q3], [y, y], color="tab:blue", lw=5, solid_capstyle="butt")
    ax.plot([med], [y], "o", color="k", ms=3)


def _std_scatter(ax, case: PosteriorCase, f: Tensor) -> None:
    ref = case.reference
    std = f.double().std(0) if f.shape[0] > 1 else torch.zeros(f.shape[1])
    ax.scatter(ref.f_std.numpy(), std.numpy(), s=4, alpha=0.5)
    top = float(max(ref.f_std.max(), std.max())) * 1.05
    ax.plot([0, top], [0, top], color="k", lw=0.8)
    ax.set_xlim(0, top)
    ax.set_ylim(0, top)
    ax.set_xlabel("reference std of f", fontsize=7)
    ax.set_ylabel("method std of f", fontsize=7)


def _weights_2d(ax, case: PosteriorCase, w: Tensor | None) -> None:
    ref = case.reference
    assert ref.weight_draws is not None
    r = ref.weight_draws[:2000].numpy()
    ax.scatter(r[:, 0], r[:, 1], s=2, color="0.7", alpha=0.5, label="reference")
    if w is None:
        ax.text(0.5, 0.5, "no weight draws", transform=ax.transAxes, ha="center", fontsize=8)
    else:
        m = w[:1000].numpy()
        ax.scatter(m[:, 0], m[:, 1], s=2, color="tab:blue", alpha=0.5, label="method")
    lo = r.min(0) - 0.5
    hi = r.max(0) + 0.5
    ax.set_xlim(lo[0], hi[0])
    ax.set_ylim(lo[1], hi[1])
    ax.set_xlabel("w1", fontsize=7)
    ax.set_ylabel("w2", fontsize=7)


def _bands(ax, case: PosteriorCase, f: Tensor) -> None:
    ref = case.reference
    x = case.x_test[:, 0].numpy()
    mean = f.double().mean(0)
    std = f.double().std(0) if f.shape[0] > 1 else torch.zeros(f.shape[1])
    ax.fill_between(x, (mean - 2 * std).numpy(), (mean + 2 * std).numpy(), alpha=0.3, lw=0)
    ax.plot(x, mean.numpy(), lw=1.2, label="method mean ±2 std")
    r_mu, r_sd = ref.f_mean.numpy(), ref.f_std.numpy()
    ax.plot(x, r_mu, color="tab:red", ls="--", lw=0.9, label="reference ±2 std")
    ax.plot(x, r_mu + 2 * r_sd, color="tab:red", ls=":", lw=0.8)
    ax.plot(x, r_mu - 2 * r_sd, color="tab:red", ls=":", lw=0.8)
    ax.scatter(case.x[:, 0].numpy(), case.y[:, 0].numpy(), s=6, color="tab:orange", zorder=3)
    ax.set_ylim(-250, 250)
