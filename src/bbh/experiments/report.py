"""The report of an experiment: the paper's table, attack tables and figures of every method.

``write_report(title, runs, out)`` reads each run folder's ``evaluation.json``, ``train.json`` and
``config.json`` and writes into ``out``:

- ``report.md``: the tables (Markdown) and links to the figures;
- ``report.html``: one self-contained page (figures embedded as base64 PNG, CSS inline, no
  network needed to view it), made with a Jinja2 template (``templates/report.html``);
- ``figures/``: robustness, reliability and entropy-CDF figures of all methods overlaid.

Numbers marked "paper" follow the authors' protocol (their code, pawni/BayesByHypernet,
``utils.build_result_dict``); the others are the extended suite (``docs/evaluation.md``).
"""

from __future__ import annotations

import base64
import datetime as dt
import html
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bbh.experiments.runs import RunFolder, read_json
from bbh.io import atomic_write

#: (column title, key in a row, format) of the main table
MAIN_COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("accuracy", "accuracy", "{:.4f}"),
    ("NLL", "nll", "{:.4f}"),
    ("Brier", "brier", "{:.4f}"),
    ("ECE", "ece", "{:.4f}"),
    ("entropy in", "entropy_in", "{:.3f}"),
    ("entropy out", "entropy_out", "{:.3f}"),
    ("CDF area in (paper)", "cdf_area_in", "{:.3f}"),
    ("CDF area out (paper)", "cdf_area_out", "{:.3f}"),
    ("OOD AUROC", "auroc", "{:.4f}"),
    ("OOD AUPR", "aupr", "{:.4f}"),
    ("FPR95", "fpr95", "{:.4f}"),
    ("train s", "train_seconds", "{:.0f}"),
    ("epochs", "train_epochs", "{:.2f}"),
    ("KL temperature", "temperature", "{:.3g}"),
)
#: (title, where in evaluation.json) of the attack curves
ATTACK_CURVES: tuple[tuple[str, str, str], ...] = (
    ("FGSM (paper: sign-averaged, unclipped)", "paper_protocol", "fgsm"),
    ("FGSM (EOT, clipped)", "extended", "fgsm_eot"),
    ("PGD (EOT, clipped)", "extended", "pgd_eot"),
)


@dataclass
class RunRow:
    """One method's numbers, read from its run folder."""

    name: str
    label: str
    values: dict[str, float | None]
    curves: dict[str, dict[str, Any]]
    evaluation: dict[str, Any]
    figures: dict[str, Path] = field(default_factory=dict)


def read_row(name: str, run: RunFolder) -> RunRow:
    """A ``RunRow`` from a trained and evaluated run folder."""
    ev = read_json(run.evaluation_file)
    paper, ext, meta = ev.get("paper_protocol", {}), ev.get("extended", {}), ev.get("meta", {})
    ood = ext.get("ood", {}).get("entropy", {})
    values: dict[str, float | None] = {
        "accuracy": ext.get("accuracy"),
        "nll": ext.get("nll"),
        "brier": ext.get("brier"),
        "ece": ext.get("ece"),
        "entropy_in": paper.get("mean_entropy_in"),
        "entropy_out": paper.get("mean_entropy_out"),
        "cdf_area_in": paper.get("entropy_cdf_area_in"),
        "cdf_area_out": paper.get("entropy_cdf_area_out"),
        "auroc": ood.get("auroc"),
        "aupr": ood.get("aupr"),
        "fpr95": ood.get("fpr_at_95_tpr"),
        "train_seconds": meta.get("train_seconds"),
        "train_epochs": meta.get("train_epochs"),
        "temperature": meta.get("temperature"),
    }
    curves = {
        title: section[key]
        for title, where, key in ATTACK_CURVES
        if (section := ev.get(where, {})) and section.get(key)
    }
    figs = {k: run.path / v for k, v in ev.get("figures", {}).items()}
    return RunRow(name, meta.get("label") or name, values, curves, ev, figs)


def format_value(value: float | None, fmt: str) -> str:
    """A table cell: ``value`` formatted with ``fmt``, or "–" for None and non-finite values.

    Args:
        value: The number, or None.
        fmt: A ``str.format`` pattern such as ``"{:.3f}"``.

    Returns:
        The cell text.
    """
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    return fmt.format(value)


def main_table(rows: Sequence[RunRow]) -> tuple[list[str], list[list[str]]]:
    """Header and cells of the paper's table (one row per method)."""
    columns = [c for c in MAIN_COLUMNS if any(r.values.get(c[1]) is not None for r in rows)]
    header = ["method"] + [c[0] for c in columns]
    cells = [[r.label] + [format_value(r.values.get(k), f) for _, k, f in columns] for r in rows]
    return header, cells


def attack_tables(rows: Sequence[RunRow]) -> list[tuple[str, list[str], list[list[str]]]]:
    """Per attack: title, header (epsilons) and accuracy cells per method."""
    tables = []
    for title, _, _ in ATTACK_CURVES:
        have = [r for r in rows if title in r.curves]
        if not have:
            continue
        eps = have[0].curves[title]["epsilons"]
        header = ["method"] + [f"eps {e:g}" for e in eps]
        cells = []
        for r in rows:
            c = r.curves.get(title)
            accs = c["accuracy"] if c and c["epsilons"] == eps else [None] * len(eps)
            cells.append([r.label] + [format_value(a, "{:.2f}") for a in accs])
        tables.append((f"Accuracy under {title}", header, cells))
    return tables


def text_table(header: Sequence[str], cells: Sequence[Sequence[str]]) -> str:
    """A plain aligned table for the terminal."""
    widths = [max(len(str(x)) for x in col) for col in zip(header, *cells, strict=True)]
    line = "  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True))
    body = ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in cells]
    return "\n".join([line, "  ".join("-" * w for w in widths), *body])


def markdown_table(header: Sequence[str], cells: Sequence[Sequence[str]]) -> str:
    """A Markdown table (``|`` in cells escaped).

    Args:
        header: The column names.
        cells: The rows, each a sequence of cell texts.

    Returns:
        The table's lines joined by newlines.
    """

    def esc(x: str) -> str:
        return str(x).replace("|", "\\|")

    lines = ["| " + " | ".join(esc(h) for h in header) + " |"]
    lines.append("|" + "|".join(" --- " for _ in header) + "|")
    lines += ["| " + " | ".join(esc(c) for c in row) + " |" for row in cells]
    return "\n".join(lines)


# ------------------------------------------------------------------------------ figures


def overlay_figures(rows: Sequence[RunRow], out: Path) -> dict[str, Path]:
    """Robustness, reliability and entropy CDFs of every method on shared axes."""
    plt = _pyplot()
    written: dict[str, Path] = {}
    colours, dashes = plt.get_cmap("tab10"), ["-", "--", ":", "-."]
    style = {
        r.name: {"color": colours(i % 10), "linestyle": dashes[(i // 10) % 4]}
        for i, r in enumerate(rows)
    }
    titles = [t for t, _, _ in ATTACK_CURVES if any(t in r.curves for r in rows)]
    if titles:
        fig, axes = plt.subplots(2, len(titles), figsize=(4.6 * len(titles), 7.0), squeeze=False)
        for j, title in enumerate(titles):
            for r in rows:
                if title in r.curves:
                    c = r.curves[title]
                    axes[0, j].plot(c["epsilons"], c["accuracy"], marker="o", ms=3, label=r.label,
                                    **style[r.name])  # fmt: skip
                    axes[1, j].plot(c["epsilons"], c["mean_entropy"], marker="o", ms=3,
                                    **style[r.name])  # fmt: skip
            axes[0, j].set(title=_wrap(title), ylabel="accuracy", ylim=(-0.02, 1.02))
            axes[1, j].set(xlabel="epsilon", ylabel="mean predictive entropy (nats)")
        _legend_below(fig, axes[0, 0])
        written["robustness"] = _save(fig, out / "robustness_all.png")
    with_rel = [r for r in rows if r.evaluation.get("extended", {}).get("reliability")]
    if with_rel:
        fig, ax = plt.subplots(figsize=(5.5, 5.0))
        ax.plot([0, 1], [0, 1], "k--", lw=1)
        for r in with_rel:
            rel = r.evaluation["extended"]["reliability"]
            pts = [(c, a) for c, a, n in zip(rel["confidence"], rel["accuracy"], rel["counts"],
                                             strict=True)
                   if c is not None and a is not None and n >= 10]  # fmt: skip
            if pts:
                xs, ys = zip(*pts, strict=True)
                ax.plot(xs, ys, marker="o", ms=3, label=f"{r.label} (ECE {rel['ece']:.3f})",
                        **style[r.name])  # fmt: skip
        ax.set(xlabel="confidence (max predictive probability)", ylabel="accuracy",
               title="Reliability (bins with >= 10 inputs)", xlim=(0, 1), ylim=(0, 1))  # fmt: skip
        _legend_below(fig, ax)
        written["reliability"] = _save(fig, out / "reliability_all.png")
    with_hist = [r for r in rows if r.evaluation.get("extended", {}).get("entropy_histogram")]
    if with_hist:
        fig, axes = plt.subplots(1, 2, figsize=(10, 4.2), sharey=True)
        for r in with_hist:
            h = r.evaluation["extended"]["entropy_histogram"]
            for ax, key in zip(axes, ("in", "out"), strict=True):
                if h.get(key):
                    counts = np.asarray(h[key], dtype=float)
                    cdf = np.concatenate([[0.0], np.cumsum(counts) / max(counts.sum(), 1.0)])
                    ax.plot(h["edges"], cdf, label=r.label, **style[r.name])
        axes[0].set(title="Entropy CDF, test (in distribution)", xlabel="predictive entropy",
                    ylabel="share of inputs with entropy <= x")  # fmt: skip
        axes[1].set(title="Entropy CDF, OOD set", xlabel="predictive entropy")
        _legend_below(fig, axes[0])
        written["entropy_cdf"] = _save(fig, out / "entropy_cdf_all.png")
    return written


def _wrap(text: str) -> str:
    return text.replace(" (", "\n(", 1)


def _legend_below(fig: Any, ax: Any) -> None:
    handles, labels = ax.get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, loc="lower center", ncol=min(4, len(labels)), fontsize=8,
                   bbox_to_anchor=(0.5, -0.01))  # fmt: skip
        fig.tight_layout(rect=(0, 0.05 + 0.035 * math.ceil(len(labels) / 4), 1, 1))


def _pyplot() -> Any:
    from bbh.evaluation.figures import _pyplot as pyplot

    return pyplot()


def _save(fig: Any, path: Path) -> Path:
    import matplotlib.pyplot as plt

    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight"))
    plt.close(fig)
    return path


# ------------------------------------------------------------------------------ the report


@dataclass
class Section:
    """Extra content of a report: a title, a note, tables and figures (the toy uses it)."""

    title: str
    note: str = ""
    tables: list[tuple[str, list[str], list[list[str]]]] = field(default_factory=list)
    figures: list[tuple[str, Path]] = field(default_factory=list)


def write_report(
    title: str,
    rows: Sequence[RunRow],
    out: Path,
    *,
    intro: str = "",
    sections: Sequence[Section] = (),
    notes: Sequence[str] = (),
) -> tuple[Path, Path]:
    """Write ``report.md`` and the self-contained ``report.html`` into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    overlays = overlay_figures(rows, out / "figures") if rows else {}
    tables: list[tuple[str, list[str], list[list[str]]]] = []
    if rows:
        header, cells = main_table(rows)
        tables.append(("Results (one row per method)", header, cells))
        tables += attack_tables(rows)
    overlay_list = [
        (caption, overlays[key])
        for key, caption in (
            ("robustness", "Accuracy and predictive entropy under attack, all methods"),
            ("reliability", "Reliability (calibration), all methods"),
            ("entropy_cdf", "Entropy CDFs in and out of distribution (the paper's figure)"),
        )
        if key in overlays
    ]
    page = _Page(
        title=title,
        intro=intro,
        notes=list(notes),
        tables=tables,
        overlays=overlay_list,
        per_method=[
            (r.label, [(k.replace("_", " "), p) for k, p in r.figures.items() if p.is_file()])
            for r in rows
        ],
        sections=list(sections),
        stamp=dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    )
    md, page_html = _markdown(page, out), _html(page)
    atomic_write(out / "report.md", lambda tmp: _write_text(tmp, md))
    atomic_write(out / "report.html", lambda tmp: _write_text(tmp, page_html))
    return out / "report.md", out / "report.html"


@dataclass
class _Page:
    """What a report shows, for both renderings."""

    title: str
    intro: str
    notes: list[str]
    tables: list[tuple[str, list[str], list[list[str]]]]
    overlays: list[tuple[str, Path]]
    per_method: list[tuple[str, list[tuple[str, Path]]]]
    sections: list[Section]
    stamp: str


def _write_text(path: Path, text: str) -> None:
    path.write_text(text, encoding="utf-8")


def _markdown(page: _Page, out: Path) -> str:
    def rel(p: Path) -> str:
        try:
            return p.resolve().relative_to(out.resolve()).as_posix()
        except ValueError:
            return str(p)

    parts = [f"# {page.title}", "", f"_Written {page.stamp} by bbh._", ""]
    if page.intro:
        parts += [page.intro, ""]
    for caption, header, cells in page.tables:
        parts += [f"## {caption}", "", markdown_table(header, cells), ""]
    for s in page.sections:
        parts += [f"## {s.title}", ""]
        if s.note:
            parts += [s.note, ""]
        for caption, header, cells in s.tables:
            parts += [f"**{caption}**", "", markdown_table(header, cells), ""]
        parts += [f"![{caption}]({rel(p)})" for caption, p in s.figures] + [""]
    if page.overlays:
        parts += ["## Figures", ""]
        parts += [f"![{caption}]({rel(p)})\n" for caption, p in page.overlays]
    for label, figs in page.per_method:
        if figs:
            parts += [f"### {label}", ""]
            parts += [f"![{label}: {caption}]({rel(p)})" for caption, p in figs] + [""]
    if page.notes:
        parts += ["## Notes", ""] + [f"- {n}" for n in page.notes] + [""]
    return "\n".join(parts)


def _html(page: _Page) -> str:
    try:
        import jinja2
    except ImportError as exc:
        raise ImportError(
            "the HTML report needs jinja2: pip install 'bayes-by-hypernet[experiments]'"
        ) from exc
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("bbh.experiments", "templates"),
        autoescape=jinja2.select_autoescape(["html"]),
        undefined=jinja2.StrictUndefined,
    )
    env.filters["data_uri"] = _data_uri
    return env.get_template("report.html").render(**vars(page))


def _data_uri(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(Path(path).read_bytes()).decode("ascii")


def embedded_images(page: str) -> list[str]:
    """The ``src`` of every ``<img>`` in ``page`` (for checks: all should be data URIs)."""
    import re

    return [html.unescape(m) for m in re.findall(r'<img[^>]*\ssrc="([^"]*)"', page)]


def row_values(rows: Sequence[RunRow]) -> list[Mapping[str, Any]]:
    """Plain dicts of the main numbers (for JSON output)."""
    return [{"run": r.name, "label": r.label, **r.values} for r in rows]
