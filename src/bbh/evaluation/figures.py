"""Figures as PNG files with matplotlib (the ``plot`` extra; docs/evaluation.md, "Figures").

Each function takes plain data (the dicts ``evaluate`` returns, or the study objects) and a path,
writes one PNG and returns its path. ``write_figures`` draws every figure a result dict supports.
matplotlib is imported lazily, with the non-interactive ``Agg`` backend unless pyplot is already
in use (e.g. in a notebook).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from itertools import pairwise
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from bbh import io as bbh_io
from bbh.evaluation.studies import Study, WeightStatistics
from bbh.metrics.classification import ReliabilityBins
from bbh.metrics.rejection import RejectionCurve

__all__ = [
    "class_spread_plot",
    "entropy_histograms",
    "rejection_plot",
    "reliability_diagram",
    "robustness_plot",
    "shift_plot",
    "study_strip",
    "weight_correlation_map",
    "weight_histograms",
    "write_figures",
]

PathLike = str | os.PathLike[str]


def reliability_diagram(
    bins: ReliabilityBins | Mapping[str, Any], path: PathLike, *, title: str | None = None
) -> Path:
    """Per-bin accuracy against confidence (bars), the diagonal, and the ECE in the title."""
    plt = _pyplot()
    d = bins.to_dict() if isinstance(bins, ReliabilityBins) else dict(bins)
    edges = d["edges"]
    width = [b - a for a, b in pairwise(edges)]
    acc = [0.0 if v is None else v for v in d["accuracy"]]
    conf = d["confidence"]
    fig, (ax, axc) = plt.subplots(
        2, 1, figsize=(4.5, 5.5), sharex=True, gridspec_kw={"height_ratios": [3, 1]}
    )
    ax.bar(edges[:-1], acc, width=width, align="edge", edgecolor="k", label="accuracy")
    gaps = [(c - a) if c is not None else 0.0 for a, c in zip(acc, conf, strict=True)]
    ax.bar(edges[:-1], gaps, bottom=acc, width=width, align="edge", color="tab:red", alpha=0.3,
           edgecolor="tab:red", label="gap to confidence")  # fmt: skip
    ax.plot([0, 1], [0, 1], "k--", lw=1)
    ax.set(xlim=(0, 1), ylim=(0, 1), ylabel="accuracy")
    ax.set_title(title or f"Reliability (ECE = {d['ece']:.4f})")
    ax.legend(loc="upper left", fontsize=8)
    axc.bar(edges[:-1], d["counts"], width=width, align="edge", edgecolor="k", color="grey")
    axc.set(xlabel="confidence (max predictive probability)", ylabel="count", yscale="log")
    return _save(fig, path)


def entropy_histograms(
    histogram: Mapping[str, Any], path: PathLike, *, labels: tuple[str, str] = ("in", "OOD")
) -> Path:
    """Normalised histograms of predictive entropy in and out of distribution (``evaluate``'s
    ``result["extended"]["entropy_histogram"]``: ``edges``, counts ``in`` and ``out``)."""
    plt = _pyplot()
    edges = histogram["edges"]
    fig, ax = plt.subplots(figsize=(5, 3.5))
    for key, label, color in (("in", labels[0], "tab:blue"), ("out", labels[1], "tab:orange")):
        counts = histogram.get(key)
        if counts is None:
            continue
        total = max(sum(counts), 1)
        ax.stairs([c / total for c in counts], edges, fill=True, alpha=0.5, color=color,
                  label=f"{label} (n={sum(counts)})")  # fmt: skip
    ax.axvline(edges[-1], color="k", ls=":", lw=1)
    ax.set(xlabel="predictive entropy (nats); dotted: ln C", ylabel="share of inputs")
    ax.legend()
    return _save(fig, path)


def robustness_plot(
    curves: Mapping[str, Mapping[str, Any]], path: PathLike, *, title: str | None = None
) -> Path:
    """Accuracy, mean entropy and share flagged uncertain against epsilon, one line per curve
    (``name -> robustness_curve(...)`` dict)."""
    plt = _pyplot()
    if not curves:
        raise ValueError("curves must not be empty")
    has_flag = any(c.get("flagged_uncertain") is not None for c in curves.values())
    ncols = 3 if has_flag else 2
    fig, axes = plt.subplots(1, ncols, figsize=(4 * ncols, 3.3))
    for name, c in curves.items():
        eps = c["epsilons"]
        axes[0].plot(eps, c["accuracy"], "o-", ms=3, label=name)
        axes[1].plot(eps, c["mean_entropy"], "o-", ms=3, label=name)
        if has_flag and c.get("flagged_uncertain") is not None:
            axes[2].plot(eps, c["flagged_uncertain"], "o-", ms=3, label=name)
    axes[0].set(xlabel="epsilon", ylabel="accuracy", ylim=(-0.02, 1.02))
    axes[1].set(xlabel="epsilon", ylabel="mean predictive entropy (nats)")
    if has_flag:
        axes[2].set(xlabel="epsilon", ylabel="share flagged uncertain", ylim=(-0.02, 1.02))
    axes[0].legend(fontsize=8)
    if title:
        fig.suptitle(title)
    return _save(fig, path)


_SHIFT_LABELS = {
    "accuracy": "accuracy",
    "nll": "NLL (nats)",
    "brier": "Brier score",
    "ece": "ECE",
    "rejection_area": "accuracy-rejection area",
    "mean_entropy": "mean predictive entropy (nats)",
}


def shift_plot(
    results: Mapping[str, Mapping[str, Any]],
    path: PathLike,
    *,
    metrics: tuple[str, ...] = ("accuracy", "nll", "ece"),
    title: str | None = None,
    xlabel: str | None = None,
) -> Path:
    """Metrics against shift intensity, one panel per metric and one line per method.

    Each line is the metric's mean over the shift kinds at each intensity (``evaluate_shift``'s
    ``by_intensity``); where several kinds share an intensity (corruptions at one severity) a
    band spans their min and max.

    Args:
        results: Method name -> its ``evaluate_shift`` result.
        path: The PNG file.
        metrics: Names of ``bbh.evaluation.SHIFT_METRICS``, one panel each.
        title: The figure's title; None: none.
        xlabel: The x-axis label; None: degrees for rotations alone, else severity.

    Returns:
        The PNG's path.

    Raises:
        ValueError: ``results`` or ``metrics`` is empty.
    """
    plt = _pyplot()
    if not results or not metrics:
        raise ValueError("results and metrics must not be empty")
    fig, axes = plt.subplots(1, len(metrics), figsize=(4 * len(metrics), 3.3), squeeze=False)
    kinds: set[str] = set()
    for name, res in results.items():
        by = res["by_intensity"]
        kinds.update(res.get("meta", {}).get("kinds", []))
        for ax, m in zip(axes[0], metrics, strict=True):
            (line,) = ax.plot(by["intensity"], by[m], "o-", ms=3, label=name)
            if by[f"{m}_min"] != by[f"{m}_max"]:
                ax.fill_between(by["intensity"], by[f"{m}_min"], by[f"{m}_max"],
                                color=line.get_color(), alpha=0.15, lw=0)  # fmt: skip
    if xlabel is None:
        xlabel = "rotation (degrees)" if kinds == {"rotation"} else "severity (band: min-max)"
    for ax, m in zip(axes[0], metrics, strict=True):
        ax.set(xlabel=xlabel, ylabel=_SHIFT_LABELS.get(m, m))
        if m in ("accuracy", "rejection_area"):
            ax.set_ylim(-0.02, 1.02)
        elif m == "ece":  # from 0 to the highest band: methods' ECEs differ by a few points
            top = max(max(r["by_intensity"]["ece_max"]) for r in results.values())
            ax.set_ylim(0.0, min(1.02, 1.1 * top + 0.01))
    # below the panels, not over a panel's lines
    handles, labels = axes[0, 0].get_legend_handles_labels()
    rows = -(-len(labels) // 4)
    fig.legend(handles, labels, loc="lower center", ncol=min(4, len(labels)), fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout(rect=(0, 0.06 * rows, 1, 1))
    return _save(fig, path)


def rejection_plot(
    curves: Mapping[str, RejectionCurve | Mapping[str, Any]],
    path: PathLike,
    *,
    title: str | None = None,
) -> Path:
    """Accuracy-rejection curves: accuracy of the most confident fraction kept, one line per
    curve, with each curve's area in the legend.

    Args:
        curves: Name -> a ``RejectionCurve`` (or its ``to_dict()``: ``fractions``, ``accuracy``
            and optionally ``area``).
        path: The PNG file.
        title: The figure's title; None: a default.

    Returns:
        The PNG's path.

    Raises:
        ValueError: ``curves`` is empty.
    """
    plt = _pyplot()
    if not curves:
        raise ValueError("curves must not be empty")
    fig, ax = plt.subplots(figsize=(5, 3.6))
    for name, c in curves.items():
        d = c.to_dict() if isinstance(c, RejectionCurve) else dict(c)
        label = name if d.get("area") is None else f"{name} (area {d['area']:.4f})"
        ax.plot(d["fractions"], d["accuracy"], "-", lw=1.5, label=label)
    ax.set(xlabel="fraction kept (most confident first)", ylabel="accuracy", xlim=(0, 1))
    ax.set_title(title or "Accuracy-rejection curves")
    ax.legend(fontsize=8)
    return _save(fig, path)


def study_strip(
    study: Study, path: PathLike, *, title: str | None = None, max_classes: int = 4
) -> Path:
    """The rotation or mixup strip: the inputs on top; below, per-class probability (mean over
    samples, band = 5-95% over samples) for the ``max_classes`` classes that peak highest."""
    plt = _pyplot()
    imgs = study.display_images()
    a = imgs.shape[0]
    probs = study.probs
    mean = probs.mean(1)
    lo, hi = probs.quantile(0.05, dim=1), probs.quantile(0.95, dim=1)
    top = mean.max(0).values.argsort(descending=True)[:max_classes].tolist()
    width = max(6.0, 0.7 * a)
    strip = 1.25 * width / a  # inches for the image row (square images plus their labels)
    fig = plt.figure(figsize=(width, strip + 3.0))
    grid = fig.add_gridspec(2, a, height_ratios=[strip, 3.0], hspace=0.25)
    for i in range(a):
        ax = fig.add_subplot(grid[0, i])
        ax.imshow(imgs[i].numpy(), cmap="gray" if imgs.dim() == 3 else None)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(f"{study.values[i]:g}", fontsize=7)
    ax = fig.add_subplot(grid[1, :])
    x = study.values
    for c in top:
        (line,) = ax.plot(x, mean[:, c].numpy(), "o-", ms=3, label=f"class {c}")
        ax.fill_between(x, lo[:, c].numpy(), hi[:, c].numpy(), color=line.get_color(), alpha=0.2)
    xlabel = "rotation angle (degrees)" if study.name == "rotation" else "mixing weight lambda"
    ax.set(xlabel=xlabel, ylabel="probability", ylim=(-0.02, 1.02))
    ax.legend(fontsize=8, ncol=len(top))
    fig.suptitle(title or f"{study.name} ({probs.shape[1]} weight samples)")
    return _save(fig, path)


def class_spread_plot(
    sample_probs: Tensor,
    path: PathLike,
    *,
    title: str | None = None,
    input_labels: list[str] | None = None,
    max_inputs: int = 4,
) -> Path:
    """Box plots (5-95% whiskers) of each class probability across weight samples, for up to
    ``max_inputs`` inputs (``sample_probs`` ``[S, B, C]``, e.g. from ``studies.sample_probs``)."""
    plt = _pyplot()
    p = torch.as_tensor(sample_probs).detach().cpu()
    if p.dim() != 3:
        raise ValueError(f"sample_probs must be [S, B, C], got {tuple(p.shape)}")
    b = min(p.shape[1], max_inputs)
    fig, axes = plt.subplots(1, b, figsize=(3.2 * b, 3), squeeze=False)
    for i in range(b):
        ax = axes[0, i]
        ax.boxplot([p[:, i, c].numpy() for c in range(p.shape[2])], whis=(5, 95), showfliers=False)
        ax.set_xticks(range(1, p.shape[2] + 1), [str(c) for c in range(p.shape[2])])
        label = input_labels[i] if input_labels and i < len(input_labels) else f"input {i}"
        ax.set(xlabel="class", ylim=(-0.02, 1.02), title=label)
    axes[0, 0].set_ylabel("probability across samples")
    if title:
        fig.suptitle(title, y=1.04)
    return _save(fig, path)


def weight_correlation_map(
    stats: WeightStatistics | Tensor, path: PathLike, *, title: str | None = None
) -> Path:
    """Heat map of the correlations within the first conv kernel's weights ``[K, K]``."""
    plt = _pyplot()
    corr = stats.kernel_correlation if isinstance(stats, WeightStatistics) else stats
    corr = torch.as_tensor(corr).detach().cpu()
    fig, ax = plt.subplots(figsize=(5, 4.3))
    im = ax.imshow(corr.numpy(), cmap="RdBu_r", vmin=-1, vmax=1, interpolation="nearest")
    fig.colorbar(im, ax=ax, label="correlation")
    n = "" if not isinstance(stats, WeightStatistics) else f", {stats.num_samples} samples"
    ax.set(xlabel="parameter", ylabel="parameter")
    default = f"Weight correlations\n(first {corr.shape[0]} parameters{n})"
    ax.set_title(title or default, fontsize=10)
    return _save(fig, path)


def weight_histograms(
    stats: WeightStatistics, path: PathLike, *, title: str | None = None, bins: int = 30
) -> Path:
    """Histograms of the samples of the first parameters (the paper shows 25) and, in the last
    panel, of the per-parameter standard deviation over all D parameters."""
    plt = _pyplot()
    first = stats.first_params.detach().cpu()
    n = first.shape[1]
    cols = min(n + 1, 6)
    rows = -(-(n + 1) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(2.0 * cols, 1.6 * rows), squeeze=False)
    for i, ax in enumerate(axes.flat):
        if i < n:
            ax.hist(first[:, i].numpy(), bins=bins, color="tab:blue")
            ax.set_title(f"w[{i}]", fontsize=7)
        elif i == n:
            ax.hist(stats.std.detach().cpu().numpy(), bins=bins, color="tab:orange")
            ax.set_title("std over all D", fontsize=7)
        else:
            ax.axis("off")
            continue
        ax.tick_params(labelsize=5)
        ax.set_yticks([])
    fig.suptitle(title or f"Weight samples ({stats.num_samples} draws)", fontsize=10)
    fig.tight_layout()
    return _save(fig, path)


def write_figures(
    result: Mapping[str, Any], out_dir: PathLike, *, prefix: str = ""
) -> dict[str, str]:
    """Every figure an ``evaluate`` result supports (reliability, entropy histograms, attack
    curves), written to ``out_dir``; returns ``{figure name: path}``."""
    out = Path(out_dir)
    ext = result.get("extended", {})
    paper = result.get("paper_protocol", {})
    written: dict[str, str] = {}
    if "reliability" in ext:
        written["reliability"] = str(
            reliability_diagram(ext["reliability"], out / f"{prefix}reliability.png")
        )
    if "entropy_histogram" in ext:
        written["entropy_histograms"] = str(
            entropy_histograms(ext["entropy_histogram"], out / f"{prefix}entropy_histograms.png")
        )
    curves = {
        label: c
        for label, c in (
            ("FGSM (paper: sign-averaged, unclipped)", paper.get("fgsm")),
            ("FGSM (EOT, clipped)", ext.get("fgsm_eot")),
            ("PGD (EOT, clipped)", ext.get("pgd_eot")),
        )
        if c is not None
    }
    if curves:
        written["robustness"] = str(robustness_plot(curves, out / f"{prefix}robustness.png"))
    return written


def _pyplot() -> Any:
    try:
        import matplotlib
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError(
            "bbh figures need matplotlib: pip install 'bayes-by-hypernet[plot]'"
        ) from err
    if "matplotlib.pyplot" not in sys.modules:  # keep a backend the user already chose
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: PathLike) -> Path:
    import matplotlib.pyplot as plt

    try:
        return bbh_io.savefig(fig, path, dpi=120, bbox_inches="tight")
    finally:
        plt.close(fig)
