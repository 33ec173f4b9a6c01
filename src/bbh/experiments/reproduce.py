"""``bbh reproduce mnist|cifar5|toy``: train (or reuse) and evaluate every run, then report.

Each run of the experiment (the shipped configs ``<experiment>/*.toml``) lives in
``OUT/<run>/``. A rerun reuses what is done: a finished run of the same config (same hash,
which covers the method's resolved default options) is not retrained, an evaluated one not
re-evaluated, an interrupted one resumes from its last checkpoint. A run whose config changed
(for instance because BbH's defaults changed) is moved aside to ``OUT/<run>.superseded-<hash>``
(nothing is deleted) and trained again. Then ``report.md`` and ``report.html`` are written.
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bbh.experiments.builders import method_options
from bbh.experiments.config import (
    AnyConfig,
    ConfigError,
    ExperimentConfig,
    ToyConfig,
    config_hash,
    config_to_dict,
    list_configs,
    load_config,
)
from bbh.experiments.evaluate import check_evaluated, evaluate_run
from bbh.experiments.report import RunRow, Section, read_row, write_report
from bbh.experiments.runs import RunBusy, RunFolder, check_writable, read_json
from bbh.experiments.train import train_run, with_data_root
from bbh.io import write_json

EXPERIMENTS = ("mnist", "cifar5", "toy", "demo")
#: the order of the methods in tables
RUN_ORDER = (
    "map",
    "mc_dropout",
    "ensemble",
    "bbb",
    "mnf",
    "bbh",
    "bbh_subnet",
    "bbh_k1_aligned",
    "bbh_k1_independent",
    "bbh_k8_aligned",
    "bbh_k8_independent",
    "bbh_k64_aligned",
    "bbh_k64_independent",
    "toy",
    "toy_paper",
)
TITLES = {
    "mnist": "MNIST (LeNet-5), notMNIST as out-of-distribution data",
    "cifar5": "CIFAR-5 (ResNet), CIFAR-10 classes 5-9 as out-of-distribution data",
    "toy": "The 1-D toy regression",
    "demo": "bbh demo: the embedded MNIST subset, embedded notMNIST as OOD data",
}

Log = Callable[[str], None]


@dataclass
class ReproduceResult:
    """What ``reproduce`` did: the output folder, one row per run, the report's files and the
    timings per run.
    """

    out: Path
    rows: list[RunRow] = field(default_factory=list)
    report_md: Path | None = None
    report_html: Path | None = None
    timings: dict[str, dict[str, float]] = field(default_factory=dict)
    #: runs another process was working on (not in the report; run again when it is done)
    skipped: list[str] = field(default_factory=list)
    #: runs not trained and evaluated for their current config (``report_only``)
    missing: list[str] = field(default_factory=list)


def experiment_runs(experiment: str) -> list[str]:
    """The config names of an experiment, in table order."""
    if experiment not in EXPERIMENTS:
        raise ConfigError(f"unknown experiment {experiment!r}; allowed: {list(EXPERIMENTS)}")
    names = [n for n in list_configs() if n.split("/")[0] == experiment]

    def order(name: str) -> tuple[int, str]:
        stem = name.split("/", 1)[1]
        return (RUN_ORDER.index(stem) if stem in RUN_ORDER else len(RUN_ORDER), stem)

    return sorted(names, key=order)


def reproduce(
    experiment: str,
    *,
    scale: str,
    out: str | os.PathLike[str],
    data_dir: str | None = None,
    device: str | None = None,
    only: Sequence[str] | None = None,
    overrides: Sequence[str] = (),
    keep_checkpoints: bool = False,
    report_only: bool = False,
    progress: bool = True,
    log: Log | None = None,
) -> ReproduceResult:
    """Train, evaluate and report every run of ``experiment`` (see the module docstring).

    ``report_only``: train and evaluate nothing; report the runs that are trained and evaluated
    for their current config, list the others as missing."""
    say = log or (lambda text: print(text, file=sys.stderr))
    names = experiment_runs(experiment)
    if only:
        stems = {n.split("/", 1)[1]: n for n in names}
        unknown = sorted(set(only) - set(stems))
        if unknown:
            raise ConfigError(f"--only: unknown run(s) {unknown}; allowed: {sorted(stems)}")
        names = [n for n in names if n.split("/", 1)[1] in set(only)]
    # load every config first: a bad one stops everything before any training
    configs = [load_config(n, scale=scale, overrides=overrides) for n in names]
    root = Path(out)
    check_writable(root)
    result = ReproduceResult(root)
    toy_sections: list[Section] = []
    for name, cfg in zip(names, configs, strict=True):
        run_dir = root / name.split("/", 1)[1]
        t0 = time.monotonic()
        if isinstance(cfg, ToyConfig):
            toy_sections.append(_toy(cfg, run_dir, say))
            result.timings[name] = {"seconds": time.monotonic() - t0}
            continue
        cfg = with_data_root(cfg, data_dir)
        folder = RunFolder.at(run_dir)
        if report_only:
            if _is_done(cfg, folder):
                result.rows.append(read_row(name.split("/", 1)[1], folder))
            else:
                result.missing.append(name)
            continue
        _set_aside_if_changed(cfg, run_dir, say)
        try:
            with folder.lock():
                timing = _train_and_evaluate(
                    name, cfg, folder, device, keep_checkpoints, data_dir, progress, say
                )
        except RunBusy as busy:  # another `bbh reproduce` works on it: leave it to that one
            say(f"[{name}] skipped: {busy}")
            result.skipped.append(name)
            continue
        result.timings[name] = timing
        result.rows.append(read_row(name.split("/", 1)[1], folder))
    notes = [f"Scale {scale!r}; configs: " + ", ".join(names) + "."]
    if scale != "paper":
        notes += budget_notes(names, configs, overrides)
    if result.missing:
        notes.append(
            "Not trained and evaluated yet for the current configs (not in this report): "
            + ", ".join(result.missing)
            + "."
        )
    if result.skipped:
        notes.append(
            "Not in this report (another bbh process was working on them): "
            + ", ".join(result.skipped)
            + "."
        )
    if result.rows:
        notes += _TABLE_NOTES
    result.report_md, result.report_html = write_report(
        TITLES.get(experiment, experiment),
        result.rows,
        root,
        intro=f"Every run of the experiment at scale {scale!r}"
        + (", each evaluated by bbh evaluate." if result.rows else "."),
        sections=toy_sections,
        notes=notes,
    )
    write_json(root / "reproduce.json", {"experiment": experiment, "scale": scale,
                                          "timings": result.timings})  # fmt: skip
    return result


def budget_notes(
    names: Sequence[str], configs: Sequence[AnyConfig], overrides: Sequence[str] = ()
) -> list[str]:
    """One note listing where each run's training budget differs from its ``paper`` scale
    (epochs, batch size, learning rate, optimiser), so a shortened run is never read as the
    paper's."""
    changes = []
    for name, cfg in zip(names, configs, strict=True):
        if isinstance(cfg, ToyConfig):
            continue
        paper = load_config(name, scale="paper", overrides=overrides)
        assert isinstance(paper, ExperimentConfig)
        diffs = [
            f"{label} {_budget_value(getattr(cfg.train, key))} "
            f"(paper: {_budget_value(getattr(paper.train, key))})"
            for key, label in _BUDGET_FIELDS
            if getattr(cfg.train, key) != getattr(paper.train, key)
        ]
        if diffs:
            changes.append(f"{name.split('/', 1)[1]}: " + ", ".join(diffs))
    if not changes:
        return []
    return ["Shortened training budgets at this scale, against the paper's: " + "; ".join(changes)
            + "."]  # fmt: skip


_BUDGET_FIELDS = (
    ("epochs", "epochs"),
    ("steps", "steps"),
    ("batch_size", "batch"),
    ("lr", "lr"),
    ("optimizer", "optimiser"),
)


def _budget_value(value: Any) -> str:
    return f"{value:.6g}" if isinstance(value, float) else str(value)


_TABLE_NOTES = [
    "Accuracy, NLL, Brier, ECE and OOD metrics use the extended suite; 'entropy in/out' "
    "and the CDF areas are the paper's (entropy with its 1e-5 floor; CDF area = about "
    "ln C - mean entropy: high in distribution, low out of it is good). OOD AUROC, AUPR and "
    "FPR95 score inputs by predictive entropy, OOD as positive.",
    "Train seconds are the run's training time (summed over resumes) on the machine that "
    "trained it; see each run's train.json.",
]


def _train_and_evaluate(
    name: str,
    cfg: ExperimentConfig,
    folder: RunFolder,
    device: str | None,
    keep_checkpoints: bool,
    data_dir: str | None,
    progress: bool,
    say: Log,
) -> dict[str, float]:
    t0 = time.monotonic()
    say(f"[{name}] {cfg.display_name}: {_train_word(folder)}")
    outcome = train_run(cfg, folder.path, device=device, resume=None, progress=progress)
    t_train = time.monotonic() - t0
    if not keep_checkpoints and folder.checkpoints.exists():
        shutil.rmtree(folder.checkpoints, ignore_errors=True)
        folder.mark_done()  # the marker lists the files that are there
    if check_evaluated(folder):
        say(f"[{name}] already evaluated")
    else:
        say(f"[{name}] evaluating")
        evaluate_run(
            folder.path, data_dir=data_dir, device=device, threads=cfg.train.threads,
            progress=progress,
        )  # fmt: skip
    return {
        "train_seconds": outcome.seconds,
        "wall_seconds": time.monotonic() - t0,
        "train_wall_seconds": t_train,
    }


def _is_done(cfg: ExperimentConfig, folder: RunFolder) -> bool:
    """Trained and evaluated for this config."""
    if folder.status() != "finished" or not check_evaluated(folder):
        return False
    return bool(folder.meta().get("config_hash") == config_hash(cfg, method_options(cfg)))


def _train_word(folder: RunFolder) -> str:
    return {
        "finished": "checking the finished run",
        "partial": "resuming",
    }.get(folder.status(), "training")


def _set_aside_if_changed(cfg: ExperimentConfig, run_dir: Path, say: Log) -> None:
    """Move a run of another config out of the way (never delete a result)."""
    folder = RunFolder.at(run_dir)
    if folder.status() not in ("finished", "partial"):
        return
    old = folder.meta().get("config_hash")
    new = config_hash(cfg, method_options(cfg))
    if old == new:
        return
    target = run_dir.with_name(f"{run_dir.name}.superseded-{old}")
    n = 1
    while target.exists():
        target = run_dir.with_name(f"{run_dir.name}.superseded-{old}-{n}")
        n += 1
    run_dir.rename(target)
    say(f"[{cfg.name}] the config changed (hash {old} -> {new}); kept the old run in {target}")


def _toy(cfg: ToyConfig, run_dir: Path, say: Log) -> Section:
    """Run (or reuse) the toy experiment of ``cfg`` in ``run_dir``; its report section."""
    from bbh.experiments.toy import run_toy

    digest = config_hash(cfg)
    marker = run_dir / "config.json"
    metrics_file = run_dir / "metrics.json"
    done = marker.is_file() and metrics_file.is_file()
    if done and read_json(marker).get("config_hash") == digest:
        say(f"[{cfg.name}] already done")
        metrics = read_json(metrics_file)
    else:
        say(f"[{cfg.name}] {cfg.display_name}: training")
        metrics = run_toy(
            run_dir,
            list(cfg.methods),
            setting=cfg.setting,
            reference=cfg.reference,
            data_seed=cfg.data_seed,
            seed=cfg.seed,
            steps=cfg.steps,
        )
        write_json(marker, {"config": config_to_dict(cfg), "config_hash": digest})
    return toy_section(cfg, metrics, run_dir)


def toy_section(cfg: ToyConfig, metrics: dict[str, Any], run_dir: Path) -> Section:
    """The toy regression's report section: a table of each method's metrics (and its distance to
    the reference) and its figure.

    Args:
        cfg: The toy config.
        metrics: The toy run's metrics (``metrics.json``).
        run_dir: The toy run's folder.

    Returns:
        The report section.
    """
    header = ["method", "RMSE of mean vs x^3", "coverage (mean +- 2 std)", "train s"]
    ref_names = {
        "rmse_mean": "vs reference: RMSE of mean",
        "mean_abs_std_diff": "vs reference: mean |std diff|",
        "mean_std_ratio": "vs reference: mean std ratio",
    }
    ref_keys = [k for k in ref_names if cfg.reference != "none"]
    header += [ref_names[k] for k in ref_keys]
    cells = []
    for name, m in metrics.get("methods", {}).items():
        ref = m.get("vs_reference", {}) or {}
        cells.append(
            [m.get("label", name), _fmt(m.get("rmse_mean_vs_truth")),
             _fmt(m.get("coverage_2std")), _fmt(m.get("train_seconds"), "{:.1f}")]
            + [_fmt(ref.get(k)) for k in ref_keys]
        )  # fmt: skip
    figures = [(f"{cfg.display_name}: predictive mean and bands", run_dir / "toy.png")]
    return Section(
        title=cfg.display_name,
        note=f"Setting {cfg.setting!r}, reference {cfg.reference!r}; numbers in "
        f"{run_dir}/metrics.json.",
        tables=[("Toy metrics", header, cells)],
        figures=[f for f in figures if f[1].is_file()],
    )


def _fmt(value: Any, fmt: str = "{:.3g}") -> str:
    if isinstance(value, (int, float)):
        return fmt.format(value)
    return "–" if value is None else str(value)
