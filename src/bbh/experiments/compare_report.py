"""The outputs of ``bbh compare``: ``compare.json``, ``compare.md``, the figures and the HTML page.

``compare.json`` holds the settings (net, data, batch, steps, the machine, the commit), the
command, every row-seed's record and each row's means and spreads over the seeds; ``compare.md``
and ``report.html`` (through ``bbh.experiments.report.write_report``, so the page is
self-contained) show one table of the main numbers and one of the dataset-shift means, each cell
the mean over seeds with the standard deviation over seeds, and the figures: accuracy, NLL and
ECE against shift intensity for every row, and the accuracy-rejection curves on the clean test
set.
"""

from __future__ import annotations

import math
import shutil
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bbh.evaluation import figures
from bbh.experiments.report import Section, format_value, text_table, write_report
from bbh.io import write_json


@dataclass
class CompareResult:
    """What ``compare`` did: the output folder, the records, what was skipped, the files.

    Args:
        out: The output folder.
        records: Row -> seed -> its record.
        skipped: ``(row, seed, reason)`` of each row-seed not run.
        files: Name -> path of each file written (``compare.json``, ``compare.md``, ...).
    """

    out: Path
    records: dict[str, dict[int, dict[str, Any]]] = field(default_factory=dict)
    skipped: list[tuple[str, int, str]] = field(default_factory=list)
    files: dict[str, Path] = field(default_factory=dict)


#: (column title, metric key, format) of the main table
MAIN_COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("accuracy", "accuracy", "{:.4f}"),
    ("NLL", "nll", "{:.4f}"),
    ("Brier", "brier", "{:.4f}"),
    ("ECE", "ece", "{:.4f}"),
    ("conf - acc", "confidence_minus_accuracy", "{:+.4f}"),
    ("OOD AUROC", "auroc", "{:.4f}"),
    ("OOD AUROC (CIFAR-10 grey)", "auroc_2", "{:.4f}"),
    ("CDF area in (paper)", "cdf_area_in", "{:.3f}"),
    ("CDF area out (paper)", "cdf_area_out", "{:.3f}"),
    ("rejection area", "rejection_area", "{:.4f}"),
    ("EOT FGSM acc", "fgsm_accuracy", "{:.3f}"),
    ("EOT PGD acc", "pgd_accuracy", "{:.3f}"),
    ("train x MAP", "train_ratio", "{:.2f}"),
    ("predict x MAP", "predict_ratio", "{:.2f}"),
)
#: (column title, metric key, format) of the dataset-shift table
SHIFT_COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("accuracy", "shift_accuracy", "{:.4f}"),
    ("NLL", "shift_nll", "{:.4f}"),
    ("ECE", "shift_ece", "{:.4f}"),
    ("rejection area", "shift_rejection_area", "{:.4f}"),
)
TITLES = {
    "mnist": "MNIST (LeNet-5) against the field",
    "cifar5": "CIFAR-5 (ResNet) against the field",
    "demo": "The embedded MNIST subset (MLP) against the field",
}
SHIFT_NAMES = {
    "mnist": "rotated MNIST test images, 0-180 degrees",
    "demo": "rotated test images, 0-180 degrees",
    "cifar5": "CIFAR-5 test images under the corruptions at severities 1-5",
}


def seed_means(records: dict[int, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Each metric's mean, standard deviation (over seeds, n - 1) and values over ``records``.

    Args:
        records: Seed -> a row's record (with ``train_ratio`` and ``predict_ratio`` set).

    Returns:
        Metric -> ``{"mean", "std", "n"}`` (``mean`` None where no seed has it).
    """
    keys: dict[str, None] = {}
    for rec in records.values():
        keys.update(dict.fromkeys(rec["metrics"]))
    out = {}
    for key in keys:
        vals = [r["metrics"].get(key) for r in records.values()]
        nums = [float(v) for v in vals if isinstance(v, (int, float)) and math.isfinite(v)]
        mean = sum(nums) / len(nums) if nums else None
        std = (
            math.sqrt(sum((v - mean) ** 2 for v in nums) / (len(nums) - 1))
            if mean is not None and len(nums) > 1
            else None
        )
        out[key] = {"mean": mean, "std": std, "n": len(nums)}
    return out


def write_outputs(
    result: CompareResult,
    settings: dict[str, Any],
    rows: Sequence[str],
    seeds: Sequence[int],
    has_ood2: bool,
) -> dict[str, Path]:
    """Write ``compare.json``, ``compare.md``, ``figures/`` and ``report.html`` into
    ``result.out``.

    Args:
        result: The records of ``compare``.
        settings: The run's settings (experiment, net, steps, machine, commit).
        rows: The rows asked for, in table order.
        seeds: The seeds.
        has_ood2: Whether the second OOD set was scored.

    Returns:
        Name -> path of each file written.
    """
    out = result.out
    _set_ratios(result.records)
    means = {row: seed_means(recs) for row, recs in result.records.items()}
    present = [r for r in rows if r in result.records]
    experiment = settings["experiment"]
    figs = _figures(result, present, out / "figures")
    notes = _notes(settings, result, has_ood2, experiment)
    section = Section(
        title="Every row on the same work",
        note="One line per row; each cell is the mean over the seeds ± their standard "
        "deviation; the metrics are explained in the notes below.",
        tables=[
            (
                "Results (mean ± standard deviation over seeds)",
                *table(present, result.records, means, MAIN_COLUMNS, has_ood2),
            ),
            (
                f"Under dataset shift: means over the {SHIFT_NAMES[experiment]}",
                *table(present, result.records, means, SHIFT_COLUMNS, has_ood2),
            ),
        ],
        figures=figs,
    )
    md, html_file = write_report(
        TITLES[experiment],
        [],
        out,
        intro=_intro(settings, seeds),
        sections=[section],
        notes=notes,
    )
    compare_md = out / "compare.md"
    shutil.copyfile(md, compare_md)
    record = {
        "settings": settings,
        "command": " ".join(["bbh", *sys.argv[1:]]) if sys.argv else None,
        "rows": present,
        "seeds": list(seeds),
        "means": means,
        "records": {
            row: {str(s): r for s, r in recs.items()} for row, recs in result.records.items()
        },
        "skipped": [{"row": r, "seed": s, "reason": why} for r, s, why in result.skipped],
        "notes": notes,
    }
    write_json(out / "compare.json", record)
    files = {
        "compare.json": out / "compare.json",
        "compare.md": compare_md,
        "report.html": html_file,
    }
    files.update({f"figure:{p.name}": p for _, p in figs})
    return files


def table(
    rows: Sequence[str],
    records: dict[str, dict[Any, dict[str, Any]]],
    means: dict[str, dict[str, dict[str, Any]]],
    columns: Sequence[tuple[str, str, str]],
    has_ood2: bool,
) -> tuple[list[str], list[list[str]]]:
    """Header and cells of one table: one line per row, each cell ``mean ± std`` over seeds.

    Args:
        rows: The rows, in order.
        records: Row -> seed -> record (for the labels and the seed counts).
        means: Row -> ``seed_means`` of its records.
        columns: ``(title, metric, format)`` per column.
        has_ood2: Keep the second OOD column.

    Returns:
        ``(header, cells)``.
    """
    cols = [c for c in columns if has_ood2 or c[1] != "auroc_2"]
    cols = [c for c in cols if any(means[r].get(c[1], {}).get("mean") is not None for r in rows)]
    header = ["method", "seeds"] + [c[0] for c in cols]
    cells = []
    for row in rows:
        label = next(iter(records[row].values()))["label"]
        line = [label, str(len(records[row]))]
        for _, key, fmt in cols:
            m = means[row].get(key, {})
            cell = format_value(m.get("mean"), fmt)
            if m.get("std") is not None:
                cell += " ± " + format_value(m["std"], fmt.replace("+", ""))
            line.append(cell)
        cells.append(line)
    return header, cells


def terminal_tables(path: Path) -> str:
    """The tables of ``compare.json`` as plain text, for the terminal.

    Args:
        path: The ``compare.json`` file.

    Returns:
        The text.
    """
    from bbh.experiments.runs import read_json

    data = read_json(path)
    has_ood2 = any(m.get("auroc_2", {}).get("mean") is not None for m in data["means"].values())
    parts = []
    for title, cols in (("results", MAIN_COLUMNS), ("under shift (means)", SHIFT_COLUMNS)):
        header, cells = table(data["rows"], data["records"], data["means"], cols, has_ood2)
        parts += [title, text_table(header, cells), ""]
    return "\n".join(parts)


def _set_ratios(records: dict[str, dict[int, dict[str, Any]]]) -> None:
    """Each record's training and prediction times as ratios to MAP's of the same seed."""
    maps = records.get("map", {})
    for recs in records.values():
        for seed, rec in recs.items():
            t = rec["timing"]
            map_train = maps.get(seed, {}).get("timing", {}).get("train_seconds")
            rec["metrics"]["train_ratio"] = (
                t["train_seconds"] / map_train
                if t.get("train_seconds") is not None and map_train
                else None
            )
            rec["metrics"]["predict_ratio"] = (
                t["predict_seconds"] / t["map_predict_seconds"]
                if t["map_predict_seconds"]
                else None
            )


def _figures(result: CompareResult, rows: Sequence[str], out: Path) -> list[tuple[str, Path]]:
    """The shift figure and the accuracy-rejection curves (each row's mean over seeds)."""
    if not rows:
        return []
    shift = {}
    curves = {}
    for row in rows:
        recs = list(result.records[row].values())
        label = recs[0]["label"]
        shift[label] = {
            "by_intensity": _mean_lists([r["shift"]["by_intensity"] for r in recs]),
            "meta": recs[0]["shift"]["meta"],
        }
        rej = [r["curves"]["rejection"] for r in recs]
        curves[label] = {
            "fractions": rej[0]["fractions"],
            "accuracy": _mean_lists([{"a": c["accuracy"]} for c in rej])["a"],
            "area": sum(c["area"] for c in rej) / len(rej),
        }
    return [
        (
            "Accuracy, NLL and ECE against shift intensity (mean over seeds)",
            figures.shift_plot(shift, out / "shift.png"),
        ),
        (
            "Accuracy-rejection curves on the test set (mean over seeds)",
            figures.rejection_plot(curves, out / "rejection.png"),
        ),
    ]


def _mean_lists(dicts: Sequence[dict[str, list[float]]]) -> dict[str, list[float]]:
    return {
        key: [sum(vals) / len(vals) for vals in zip(*(d[key] for d in dicts), strict=True)]
        for key in dicts[0]
    }


def _intro(settings: dict[str, Any], seeds: Sequence[int]) -> str:
    return (
        f"Every row trains on the {settings['net']} net, {settings['data']}, batches of "
        f"{settings['batch_size']}, {settings['steps']} steps ({settings['steps_per_epoch']} per "
        f"epoch), the same batch order per seed; seeds {list(seeds)}; scale "
        f"{settings['scale']!r}{', quick' if settings['quick'] else ''}; commit "
        f"{settings.get('commit') or 'unknown'}."
    )


def _notes(
    settings: dict[str, Any], result: CompareResult, has_ood2: bool, experiment: str
) -> list[str]:
    notes = [
        "Metrics: accuracy, NLL, Brier and ECE (15 bins) on the test set; OOD AUROC scores by "
        "predictive entropy, OOD as positive; the CDF areas are the paper's (high in "
        "distribution, low out of it is good); rejection area: the area under the accuracy of "
        "the most confident fraction kept; EOT FGSM / PGD acc: the mean accuracy over the "
        "attack's epsilons above 0; train and predict x MAP: wall time against MAP's of the "
        "same seed (prediction: the whole test set at the evaluation's samples, timed right "
        "after MAP's in the same process).",
        f"Evaluation: {settings['eval_samples']} samples per input; machine "
        f"{settings['machine']['processor']}, {settings['machine']['cpus']} CPUs, torch "
        f"{settings['machine']['torch']}, {settings['threads'] or 'default'} threads.",
    ]
    if settings["quick"]:
        notes.append("--quick: no attacks, and fewer shifts than the full protocol.")
    if experiment != "cifar5" and not has_ood2:
        notes.append(
            "The second OOD set (CIFAR-10 test images, grey, 28x28) was skipped: "
            "CIFAR-10 is not under the data root."
        )
    for row, seed, why in result.skipped:
        where = "" if seed < 0 else f" (seed {seed})"
        notes.append(f"Not run: {row}{where}: {why}")
    for row, recs in result.records.items():
        for note in next(iter(recs.values())).get("notes", []):
            notes.append(f"{row}: {note}")
    return notes
