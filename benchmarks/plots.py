"""Figures of the benchmark records (matplotlib, from the ``plot`` extra)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bbh.io import atomic_write


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _title(record: dict[str, Any], what: str) -> str:
    m = record["machine"]
    threads = f"{m['threads']} thread" + ("s" if m["threads"] != 1 else "")
    where = m.get("gpu") or f"{m['cpu']}, {threads}"
    busy = "  [BUSY MACHINE]" if record["busy"] else ""
    return f"{what}\n{where}, torch {m['torch']}{busy}"


def _plain_log_ticks(axis: Any) -> None:
    from matplotlib.ticker import LogLocator, ScalarFormatter

    axis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
    axis.set_major_formatter(ScalarFormatter())
    axis.set_minor_formatter(_no_labels())


def _no_labels() -> Any:
    from matplotlib.ticker import NullFormatter

    return NullFormatter()


def _labels_top_down(nets: dict[str, Any]) -> list[str]:
    """Method labels in the order they ran, reversed so that the first is drawn at the top."""
    labels: dict[str, None] = {}
    for net in nets.values():
        labels.update(dict.fromkeys(net["methods"]))
    return list(reversed(labels))


def _save(fig: Any, path: Path) -> None:
    atomic_write(path, lambda p: fig.savefig(p, dpi=120, bbox_inches="tight", format="png"))
    _pyplot().close(fig)


def _net_panels(num_nets: int, num_labels: int, *, extra_height: float) -> tuple[Any, Any]:
    """One panel per net side by side, sharing the method labels' y axis."""
    return _pyplot().subplots(
        1,
        num_nets,
        figsize=(5 * num_nets, 0.35 * num_labels + extra_height),
        sharey=True,
        squeeze=False,
        layout="constrained",
    )


def step_time(record: dict[str, Any], path: Path) -> None:
    """Horizontal bars: each method's step-time ratio to MAP and, where measured, its peak-memory
    ratio, one panel per net (a linear axis from 0 when every ratio is below 3, else log)."""
    nets = record["nets"]
    labels = _labels_top_down(nets)
    fig, axes = _net_panels(len(nets), len(labels), extra_height=1.8)
    for ax, (name, net) in zip(axes[0], nets.items(), strict=True):
        rows = [net["methods"].get(label, {}) for label in labels]
        ratios = [m.get("ratio_to_map") for m in rows]
        memory = [m.get("memory_ratio_to_map") for m in rows]
        with_memory = any(memory)
        height = 0.4 if with_memory else 0.8
        step_ys = [y + (height / 2 if with_memory else 0) for y in range(len(labels))]
        ax.barh(step_ys, [r or 0 for r in ratios], height, color="tab:blue", label="step time")
        for y, r in zip(step_ys, ratios, strict=True):
            ax.text(r or 1, y, f" {r:.2f}" if r else " skipped", va="center", fontsize=7)
        if with_memory:
            mem_ys = [y - height / 2 for y in range(len(labels))]
            ax.barh(
                mem_ys, [r or 0 for r in memory], height, color="tab:orange", label="peak memory"
            )
            for y, r in zip(mem_ys, memory, strict=True):
                if r:
                    ax.text(r, y, f" {r:.2f}", va="center", fontsize=7)
        ax.axvline(1.0, color="black", lw=0.8)
        largest = max([v for v in ratios + memory if v] or [1.0])
        if largest < 3:
            ax.set_xlim(0, largest * 1.2)
        else:
            ax.set_xscale("log")
            _plain_log_ticks(ax.xaxis)
        map_ms = next(
            (m["map_step_s"] * 1e3 for m in net["methods"].values() if "map_step_s" in m), None
        )
        d = net["weights_D"]
        ax.set_title(f"{name} (D={d:,})\nMAP step {map_ms:.1f} ms" if map_ms else name, fontsize=9)
        ax.set_xlabel("ratio to MAP" if with_memory else "step time / MAP step time")
    axes[0][0].set_yticks(range(len(labels)), labels, fontsize=8)
    handles, names = axes[0][0].get_legend_handles_labels()
    if len(handles) > 1:
        fig.legend(handles, names, loc="outside lower center", ncols=2, fontsize=7)
    fig.suptitle(_title(record, "Training step relative to MAP"), fontsize=10)
    _save(fig, path)


def scaling(record: dict[str, Any], path: Path) -> None:
    """Ratio to MAP against D (log x; the ResNet-18 widths joined, the other nets as points)
    and, where measured, step time against S, per configuration (a panel for each sweep run)."""
    plt = _pyplot()
    has_d = any(record["by_D"].values())
    has_s = any(record["by_S"].values())
    panels = int(has_d) + int(has_s) or 1
    fig, axes = plt.subplots(
        1,
        panels,
        figsize=(6 * panels if panels > 1 else 7, 4.8),
        layout="constrained",
        squeeze=False,
    )
    if has_d or not has_s:
        _scaling_d(record, axes[0][0])
    if has_s:
        _scaling_s(record, axes[0][-1])
    fig.suptitle(_title(record, "Bayes by Hypernet: cost against MAP"), fontsize=10)
    _save(fig, path)


def _scaling_d(record: dict[str, Any], ax_d: Any) -> None:
    for i, (label, rows) in enumerate(record["by_D"].items()):
        color = f"C{i}"
        done = [r for r in rows if "ratio_to_map" in r]
        widths = sorted(
            (r["weights_D"], r["ratio_to_map"]) for r in done if r["net"].startswith("resnet18")
        )
        if widths:
            ax_d.plot(*zip(*widths, strict=True), marker="o", color=color, label=label)
        for r in done:
            if not r["net"].startswith("resnet18"):  # another architecture: not on the line
                ax_d.plot(r["weights_D"], r["ratio_to_map"], marker="s", color=color, ls="none")
                ax_d.annotate(
                    r["net"],
                    (r["weights_D"], r["ratio_to_map"]),
                    fontsize=7,
                    textcoords="offset points",
                    xytext=(4, 3),
                )
    ax_d.set_xscale("log")
    ax_d.set_yscale("log")
    ax_d.axhline(1.0, color="black", lw=0.8)
    ax_d.set_xlabel("weights D (log): line = ResNet-18 widths 8-64; squares = other nets")
    ax_d.set_ylabel("step time / MAP step time (log)")
    s_for_d = record["samples_for_D"]
    s_text = "each configuration's own S" if s_for_d is None else f"S={s_for_d}"
    ax_d.set_title(f"Growth with D ({s_text})", fontsize=9)
    ax_d.legend(fontsize=7)
    _plain_log_ticks(ax_d.yaxis)
    low, high = ax_d.get_ylim()
    if high / low < 4:  # a narrow range: 1, 2, 5 would leave one labelled tick
        ticks = [
            t for t in (0.8, 0.9, 1.0, 1.1, 1.2, 1.4, 1.6, 1.8, 2.0, 2.5, 3.0) if low <= t <= high
        ]
        ax_d.set_yticks(ticks, [f"{t:g}" for t in ticks])


def _scaling_s(record: dict[str, Any], ax_s: Any) -> None:
    for label, rows in record["by_S"].items():
        pts = sorted((r["S"], r["ratio_to_map"]) for r in rows if "ratio_to_map" in r)
        if pts:
            ax_s.plot(*zip(*pts, strict=True), marker="o", label=label)
    ax_s.set_xscale("log", base=2)
    ax_s.set_yscale("log")
    ax_s.axhline(1.0, color="black", lw=0.8)
    ax_s.set_xlabel("weight samples S per step (log2)")
    ax_s.set_ylabel("step time / MAP step time (log)")
    ax_s.set_title(f"Growth with S on {record['net_for_S']}", fontsize=9)
    ax_s.legend(fontsize=6)
    _plain_log_ticks(ax_s.yaxis)


def _baseline_s(row: dict[str, Any], key: str, num_samples: int) -> float | None:
    """A method's baseline per weight sample from its row: one MAP pass (``map_1``, from the
    ratio), or the S-pass timings divided by S; None where the row lacks it."""
    if key == "map_1":
        ratio = row.get("ratio_to_one_map_pass")
        return row["seconds"] / ratio if ratio else None
    return row[key] / num_samples if key in row else None


def predict(record: dict[str, Any], path: Path) -> None:
    """Bars: milliseconds per weight sample of prediction, per method, one panel per net."""
    nets = record["nets"]
    labels = _labels_top_down(nets)
    fig, axes = _net_panels(len(nets), len(labels), extra_height=2.2)
    for ax, (name, net) in zip(axes[0], nets.items(), strict=True):
        per = [net["methods"].get(label, {}).get("per_sample_s") for label in labels]
        ax.barh(range(len(labels)), [(p or 0) * 1e3 for p in per], color="tab:green")
        s = record["num_samples"]
        # each method's own baselines (timed interleaved with it), as a mark across its bar
        baselines = [
            ("map_1", "black", "-", "one MAP pass"),
            ("map_S_passes_s", "black", "--", f"per pass of {s} passes of one MAP net"),
            ("map_S_fresh_passes_s", "tab:red", ":", f"per pass of {s} passes of MAP nets cycled"),
        ]
        for key, color, style, legend in baselines:
            marks = [
                (i, x)
                for i, label in enumerate(labels)
                if (x := _baseline_s(net["methods"].get(label, {}), key, s)) is not None
            ]
            for n, (i, x) in enumerate(marks):
                ax.vlines(x * 1e3, i - 0.45, i + 0.45, colors=color, linestyles=style, lw=1.2,
                          label=legend if n == 0 else None)  # fmt: skip
        ax.set_xlabel("ms per weight sample")
        ax.set_title(
            f"{name}: {record['num_samples']} samples, "
            + (f"{net['batches']} batches of " if net.get("batches", 1) > 1 else "batch ")
            + f"{net['batch_size']}",
            fontsize=9,
        )
        ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.3), ncol=2)
    axes[0][0].set_yticks(range(len(labels)), labels, fontsize=8)
    fig.suptitle(_title(record, "Prediction cost per weight sample"), fontsize=10)
    _save(fig, path)
