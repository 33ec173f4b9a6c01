"""The examples in ``examples/`` run as a user runs them and print sound numbers.

Each runs as a subprocess with ``--quick`` (a short budget) in the default run, and with its full
budget in the slow run; the tests read the table it prints (one row per method) and check that
every metric is there and finite and that both BbH and MAP beat a trivial predictor.
"""

from __future__ import annotations

import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
Table = dict[str, dict[str, float | None]]


def run_example(name: str, *args: str) -> tuple[str, Table]:
    """Run ``examples/<name>.py`` on one thread; its stdout and the table it printed last."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), env.get("PYTHONPATH", "")])
    proc = subprocess.run(
        [sys.executable, str(ROOT / "examples" / f"{name}.py"), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout, parse_table(proc.stdout)


def parse_table(stdout: str) -> Table:
    """The last table of ``stdout``: a header line ``method col...``, then a row per method
    (``-`` where a column does not apply)."""
    lines = stdout.strip().splitlines()
    start = max(i for i, line in enumerate(lines) if line.split()[:1] == ["method"])
    columns = lines[start].split()[1:]
    table: Table = {}
    for line in lines[start + 1 :]:
        name, *cells = line.split()
        assert len(cells) == len(columns), line
        table[name] = {
            c: None if v == "-" else float(v) for c, v in zip(columns, cells, strict=True)
        }
    return table


def check_finite(table: Table, methods: tuple[str, ...], columns: tuple[str, ...]) -> None:
    for method in methods:
        for column in columns:
            value = table[method][column]
            assert value is not None and math.isfinite(value), (method, column, value)


def check_regression(stdout: str, table: Table) -> None:
    columns = ("rmse", "nll", "coverage_1std", "coverage_2std", "calibration_error")
    check_finite(table, ("map", "bbh"), (*columns, "train_cpu_s"))
    target_std = float(re.search(r"target std ([0-9.]+)", stdout).group(1))  # type: ignore[union-attr]
    for method in ("map", "bbh"):
        row = table[method]
        # the trivial predictor, the training mean, has an RMSE of about the target's std
        assert row["rmse"] < 0.9 * target_std, (method, row)
        # and N(0, 1) in standardised units an NLL of about 0.5 log(2 pi e) = 1.42
        assert row["nll"] < 1.35, (method, row)
        assert 0.0 <= row["coverage_1std"] <= row["coverage_2std"] <= 1.0, (method, row)


def check_classification(table: Table) -> None:
    check_finite(table, ("prior", "map", "bbh"), ("accuracy", "nll", "ece"))
    check_finite(table, ("map", "bbh"), ("train_cpu_s",))
    prior = table["prior"]
    for method in ("map", "bbh"):
        row = table[method]
        assert row["accuracy"] > prior["accuracy"] + 0.05, (method, row, prior)
        assert row["nll"] < prior["nll"], (method, row, prior)
        assert 0.0 <= row["ece"] <= 1.0


def test_regression_tabular_quick() -> None:
    check_regression(*run_example("regression_tabular", "--quick"))


def test_text_classifier_quick() -> None:
    check_classification(run_example("text_classifier", "--quick")[1])


def test_multi_input_quick() -> None:
    check_classification(run_example("multi_input", "--quick")[1])


def test_parse_table_reads_the_last_table() -> None:
    stdout = "method a b\nx 1.0 2.0\n\nmethod a b\nprior 0.5 -\nbbh 0.25 3.0\n"
    assert parse_table(stdout) == {"prior": {"a": 0.5, "b": None}, "bbh": {"a": 0.25, "b": 3.0}}


@pytest.mark.slow
def test_regression_tabular_full_budget_covers_as_the_readme_says() -> None:
    stdout, table = run_example("regression_tabular", "--seed", "0")
    check_regression(stdout, table)
    # the target: BbH's 2-std intervals cover 0.95 +- 0.05 of the held-out targets
    assert abs(table["bbh"]["coverage_2std"] - 0.95) <= 0.05, table["bbh"]  # type: ignore[operator]


@pytest.mark.slow
@pytest.mark.parametrize("name", ["text_classifier", "multi_input"])
def test_classification_examples_full_budget(name: str) -> None:
    table = run_example(name, "--seed", "0")[1]
    check_classification(table)
    for method in ("map", "bbh"):
        assert table[method]["train_cpu_s"] < 60.0, table[method]  # type: ignore[operator]
