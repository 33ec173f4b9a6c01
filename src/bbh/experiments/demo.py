"""``bbh demo``: five methods on the embedded MNIST subset, compared in one table and a report.

Trains MAP, MC dropout, a deep ensemble, Bayes by Backprop and Bayes by Hypernet (as
``bbh.build("bbh", net)`` gives it: the configuration we recommend) on the 2,000 embedded training
images (configs ``demo/*.toml``), evaluates each on the 1,000 embedded test images with the
embedded notMNIST subset as OOD data, prints the table and writes ``report.md``/``report.html``.
No data root and no download; a few minutes on two CPU cores. It is ``bbh reproduce demo``, so a
second run reuses the trained runs.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from bbh.experiments.report import RunRow, format_value, text_table
from bbh.experiments.reproduce import Log, ReproduceResult, reproduce

DEMO_EPSILON = 0.1


def run_demo(
    out: str | os.PathLike[str] = "runs/demo",
    *,
    overrides: Sequence[str] = (),
    progress: bool = True,
    log: Log | None = None,
) -> ReproduceResult:
    """Run ``bbh demo``: the ``demo`` config's runs at the CPU scale, evaluated and reported.

    Args:
        out: The folder for the runs and the report.
        overrides: ``key=value`` config overrides.
        progress: Show progress bars.
        log: Where progress lines go (default: standard error).

    Returns:
        What ``reproduce`` returns, the runs' rows and the report's files.
    """
    return reproduce("demo", scale="cpu", out=out, overrides=overrides, progress=progress, log=log)


def demo_table(rows: Sequence[RunRow], epsilon: float = DEMO_EPSILON) -> str:
    """The terminal table: accuracy, NLL, ECE, OOD AUROC, accuracy under FGSM and PGD at eps."""
    header = ["method", "accuracy", "NLL", "ECE", "OOD AUROC",
              f"FGSM acc @{epsilon:g}", f"PGD acc @{epsilon:g}", "train s", "KL T"]  # fmt: skip
    cells = []
    for r in rows:
        v = r.values
        cells.append(
            [r.label, format_value(v["accuracy"], "{:.4f}"), format_value(v["nll"], "{:.4f}"),
             format_value(v["ece"], "{:.4f}"), format_value(v["auroc"], "{:.4f}"),
             _at(r, "FGSM (EOT, clipped)", epsilon), _at(r, "PGD (EOT, clipped)", epsilon),
             format_value(v["train_seconds"], "{:.0f}"), format_value(v["temperature"], "{:.3g}")]
        )  # fmt: skip
    return text_table(header, cells)


def _at(row: RunRow, curve: str, epsilon: float) -> str:
    c = row.curves.get(curve)
    if not c:
        return "–"
    for e, a in zip(c["epsilons"], c["accuracy"], strict=True):
        if abs(e - epsilon) < 1e-9:
            return format_value(a, "{:.2f}")
    return "–"
