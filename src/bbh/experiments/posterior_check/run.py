"""Run the posterior check: train every selected method on every selected case and score it.

Writes to ``out``: ``results.json`` (every number, the reference's provenance, timings),
``results.md`` (one table per case) and ``CASE.png`` (one figure per case). ``out`` is a run
folder (``bbh.io.run_folder``): checked before any work, replaced as a whole at the end.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from bbh.experiments.posterior_check.cases import CASES, PosteriorCase
from bbh.experiments.posterior_check.metrics import function_metrics, weight_metrics
from bbh.experiments.posterior_check.specs import METHOD_SPECS, MethodSpec, select_specs
from bbh.io import run_folder
from bbh.methods import build
from bbh.methods.base import Method
from bbh.training import fit

#: The row that scores independent draws of the reference itself (the metrics' noise floor).
FLOOR_LABEL = "reference draws (floor)"
QUICK_FACTOR = 20  # --quick divides steps and predictive draws by this
WEIGHT_BATCH = 500  # weight draws per sample_weights call


def select_cases(names: Sequence[str] | None) -> list[str]:
    """The cases to run.

    Args:
        names: Case names; None or ``["all"]`` for every case.

    Returns:
        The case names, in the given order (``CASES`` order for all).

    Raises:
        ValueError: A name is not a case, or ``names`` is empty.
    """
    if names is None or list(names) == ["all"]:
        return list(CASES)
    unknown = [n for n in names if n not in CASES]
    if unknown or not names:
        raise ValueError(f"unknown case(s) {unknown}; allowed: {list(CASES)} or 'all'")
    return list(names)


def run_posterior_check(
    out: str | Path,
    cases: Sequence[str] | None = None,
    methods: Sequence[str] | None = None,
    *,
    quick: bool = False,
    seed: int = 0,
    figures: bool = True,
    specs: Sequence[MethodSpec] = METHOD_SPECS,
    log: Any = None,
) -> dict[str, Any]:
    """Train and score ``methods`` (labels or registry names) on ``cases``; write ``out``.

    ``quick`` divides every step count and predictive draw count by 20 (a smoke run: its
    numbers say nothing about the methods). ``log`` is called with a line per finished run.
    Returns every number, with ``"out"`` the folder written.
    """
    case_names = select_cases(cases)
    chosen = select_specs(methods, specs)
    if figures:
        from bbh.experiments.posterior_check.figures import require_matplotlib

        require_matplotlib()
    results: dict[str, Any] = {"quick": quick, "seed": seed, "cases": {}}
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # small tensors: threads only add overhead on a shared machine
    try:
        with run_folder(out) as run:
            for case_name in case_names:
                start = time.perf_counter()
                case = CASES[case_name]()
                entry = check_case(case, chosen, quick=quick, seed=seed, log=log)
                entry["seconds"] = round(time.perf_counter() - start, 1)
                results["cases"][case_name] = entry
                if figures:
                    from bbh.experiments.posterior_check.figures import plot_case

                    plot_case(run.path(f"{case_name}.png"), case, entry)
            run.write_json("results.json", _public(results))
            run.write_text("results.md", markdown_tables(results))
    finally:
        torch.set_num_threads(threads)
    results["out"] = str(run.final)
    return results


def check_case(
    case: PosteriorCase,
    specs: Sequence[MethodSpec],
    *,
    quick: bool = False,
    seed: int = 0,
    log: Any = None,
) -> dict[str, Any]:
    """Train and score every spec on one case; the floor row first. Keeps the f draws in
    ``"_draws"`` (label -> (f [S, T], weights [S, D] or None)) for the figure."""
    ref = case.reference
    rows: dict[str, dict[str, Any]] = {FLOOR_LABEL: score(case, ref.floor_f_draws, _floor_w(case))}
    draws: dict[str, tuple[Tensor, Tensor | None]] = {}
    for spec in specs:
        if spec.cases is not None and case.name not in spec.cases:
            continue
        row, f, w = train_and_score(case, spec, quick=quick, seed=seed)
        rows[spec.label] = row
        if f is not None:
            draws[spec.label] = (f, w)
        if log is not None:
            log(f"{case.name} {spec.label}: {_summary(row)}")
    return {
        "description": case.description,
        "reference": ref.info,
        "weights_note": case.weights_note,
        "rows": rows,
        "_draws": draws,
    }


def train_and_score(
    case: PosteriorCase, spec: MethodSpec, *, quick: bool = False, seed: int = 0
) -> tuple[dict[str, Any], Tensor | None, Tensor | None]:
    """Build, train (full batch) and score one method: ``(row, f [S, T], weights [S, D])``."""
    steps = max(1, round(spec.steps * case.budget))
    predict_samples = spec.predict_samples
    if predict_samples is None:
        predict_samples = len(case.reference.floor_f_draws)
    if quick:
        steps = max(1, steps // QUICK_FACTOR)
        predict_samples = max(2, predict_samples // QUICK_FACTOR)
    torch.manual_seed(seed)
    method = build(
        spec.method, case.make_net(), **{**spec.options, **case.options_for(spec.method)}
    )
    lr = method.default_lr if spec.lr is None else spec.lr
    row: dict[str, Any] = {"method": spec.method, "steps": steps, "lr": lr}
    start = time.perf_counter()
    try:
        fit(
            method,
            case.x,
            case.y,
            steps=steps,
            batch_size=len(case.x),
            lr=lr,
            kl_schedule=spec.schedule(steps),
            seed=seed,
            log_every=steps,
        )
    except FloatingPointError as err:  # a diverged run is a result, not a crash of the suite
        row.update(train_seconds=round(time.perf_counter() - start, 2), failed=str(err))
        return row, None, None
    row["train_seconds"] = round(time.perf_counter() - start, 2)
    with torch.no_grad():
        f = case.f_from_outputs(method.predict_logits(case.x_test, predict_samples))
        w = _method_weights(case, method, quick)
    row.update(score(case, f, w))
    return row, f, w


def score(case: PosteriorCase, f: Tensor, w: Tensor | None) -> dict[str, Any]:
    """Function metrics always; weight metrics when both sides have weights, else "n/a"."""
    ref = case.reference
    row: dict[str, Any] = dict(function_metrics(f, ref.f_mean, ref.f_std))
    if w is not None and ref.weight_draws is not None and ref.weight_cov is not None:
        row.update(weight_metrics(w, ref.weight_draws, ref.weight_cov))
    else:
        row.update({k: "n/a" for k in ("w1_median", "w1_worst", "cov_rel_error")})
    return row


def _method_weights(case: PosteriorCase, method: Method, quick: bool) -> Tensor | None:
    ref = case.reference
    sample = getattr(method, "sample_weights", None)
    if sample is None or ref.floor_weight_draws is None:
        return None
    n = len(ref.floor_weight_draws)
    n = max(2, n // QUICK_FACTOR) if quick else n
    # in batches: the chunked generator holds [S x chunks, hidden] activations (GBs for S = 10^4)
    return torch.cat([sample(min(WEIGHT_BATCH, n - i)) for i in range(0, n, WEIGHT_BATCH)]).double()


def _floor_w(case: PosteriorCase) -> Tensor | None:
    return case.reference.floor_weight_draws


TABLE_COLUMNS = (
    ("std_ratio_median", "std ratio (median)"),
    ("std_ratio_worst", "std ratio (worst)"),
    ("mean_rel_error", "mean rel. error"),
    ("mean_error_in_std", "mean error / std"),
    ("w1_median", "W1/std (median)"),
    ("w1_worst", "W1/std (worst)"),
    ("cov_rel_error", "cov. rel. error"),
    ("train_seconds", "train s"),
)


def markdown_tables(results: dict[str, Any]) -> str:
    """One markdown table per case (the JSON holds the same numbers and more)."""
    lines = ["# Posterior check", ""]
    if results.get("quick"):
        lines += ["**Quick run** (steps / 20): a smoke test, not a measurement.", ""]
    lines += [
        "std ratio: predictive std of f over the reference's on held-out inputs (1 is right; "
        "worst = farthest from 1); mean errors against the reference's predictive mean; W1/std: "
        "per-weight marginal Wasserstein-1 in units of the reference's marginal std; cov. rel. "
        "error: relative Frobenius error of the weight covariance. The first row scores "
        "independent draws of the reference itself: the metrics' noise floor.",
        "",
    ]
    for name, entry in results["cases"].items():
        lines += [f"## {name} ({entry['seconds']} s)", "", entry["description"] + ".", ""]
        if entry.get("weights_note"):
            lines += [f"Weight metrics n/a: {entry['weights_note']}.", ""]
        lines.append("| method | " + " | ".join(h for _, h in TABLE_COLUMNS) + " |")
        lines.append("| --- " * (len(TABLE_COLUMNS) + 1) + "|")
        for label, row in entry["rows"].items():
            if "failed" in row:
                cells = [f"failed: {row['failed'][:80]}"] + [""] * (len(TABLE_COLUMNS) - 1)
            else:
                cells = [_cell(row.get(key, "")) for key, _ in TABLE_COLUMNS]
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def _cell(value: Any) -> str:
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        return f"{value:.3g}" if abs(value) < 1000 else f"{value:.0f}"
    return str(value)


def _public(results: dict[str, Any]) -> dict[str, Any]:
    """The JSON-ready part: drops the draws kept for figures; infinities become strings."""
    cases = {
        name: {k: v for k, v in entry.items() if not k.startswith("_")}
        for name, entry in results["cases"].items()
    }
    return _finite({**results, "cases": cases})


def _finite(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


def _summary(row: dict[str, Any]) -> str:
    if "failed" in row:
        return "failed"
    keys = ("std_ratio_median", "mean_rel_error", "w1_median", "cov_rel_error", "train_seconds")
    return " ".join(f"{k}={_cell(row[k])}" for k in keys)
