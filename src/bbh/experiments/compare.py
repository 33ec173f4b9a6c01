"""``bbh compare mnist|cifar5|demo``: every method, ours and the peers', on the same work.

Rows: our ``map``, ``mc_dropout``, ``ensemble`` (5 members), ``bbb`` and the recommended ``bbh``,
and the peers ``laplace`` (last layer), ``laplace_all`` (every weight), ``ivon`` and ``swag``
(``bbh.peers``). Every row trains on the net, data, batch size, number of steps and seed
of the experiment's shipped ``map`` config at the scale, so every row sees the same batches in
the same order (``ShuffleSampler`` with the seed). Our methods keep their shipped configs' method
options, optimiser and KL schedule and train through ``train_run`` in run folders
(``OUT/runs/<row>-seed<k>/``, reused when finished); the peers train by ``train_peer`` on the
same ``RunData``. ``laplace`` is fitted on the trained MAP net of the same seed (post hoc, as
laplace-torch is used); its training time is MAP's plus the fit.

Every row is then scored by one protocol (``score_method``): ``bbh.evaluation.evaluate`` (the
extended metrics, the paper's entropy areas, OOD AUROC, the EOT FGSM and PGD curves), a second
OOD set for MNIST-shaped data (CIFAR-10 test images made grey and resized to 28x28, where CIFAR-10
is under the data root), ``evaluate_shift`` (rotated MNIST 0-180 degrees, or the CIFAR-5 test
images under the corruptions at five severities) and the accuracy-rejection curve. Prediction
time is the whole test set at the evaluation's number of samples, timed right after the MAP
prediction of the same seed in the same process, so the ratio to MAP compares like with like.

Each row-seed's record is written atomically to ``OUT/records/<row>/seed<k>.json`` as it
finishes; a rerun with the same settings skips it. Then ``compare.json``, ``compare.md``,
``figures/`` and ``report.html`` are written (``bbh.experiments.compare_report``).
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from bbh.data.shift import Shift, corruption_shifts, rotation_shifts
from bbh.evaluation import evaluate, predict_batched
from bbh.evaluation.shift import evaluate_shift
from bbh.experiments.builders import RunData, build_net, load_run_data, method_options
from bbh.experiments.compare_report import CompareResult, write_outputs
from bbh.experiments.config import ConfigError, ExperimentConfig, config_hash, load_config
from bbh.experiments.evaluate import attack_config
from bbh.experiments.runs import RunFolder, check_writable, load_with_config, read_json
from bbh.experiments.train import torch_threads, total_steps, train_run, with_data_root
from bbh.io import write_json
from bbh.metrics.ood import ood_detection
from bbh.metrics.rejection import accuracy_rejection_curve

#: the experiments ``bbh compare`` runs
COMPARE_EXPERIMENTS = ("mnist", "cifar5", "demo")
#: our rows (shipped configs ``<experiment>/<row>.toml``)
OUR_ROWS = ("map", "mc_dropout", "ensemble", "bbb", "bbh")
#: the peers' rows (``bbh.peers.PEERS``)
PEER_ROWS = ("laplace", "laplace_all", "ivon", "swag")
#: every row, in table order
ROWS = OUR_ROWS + PEER_ROWS
#: rows left out by default, per experiment, and why
DEFAULT_LEFT_OUT = {
    "cifar5": {
        "laplace_all": "the all-weight GLM predictive needs each input's Jacobian to every "
        "weight of the ResNet ([B, C, P]); it does not fit a CPU's time or memory"
    }
}
LABELS = {
    "map": "MAP",
    "mc_dropout": "MC dropout",
    "ensemble": "Deep ensemble (5)",
    "bbb": "Bayes by Backprop",
    "bbh": "BbH (recommended)",
    "laplace": "Laplace (last layer, KFAC)",
    "laplace_all": "Laplace (all weights, KFAC)",
    "ivon": "IVON",
    "swag": "SWAG",
}
#: inputs per prediction call for rows whose predictive is memory-hungry
EVAL_BATCH = {"laplace_all": 25}
#: the shifts of ``--quick``
QUICK_ANGLES = (0.0, 60.0, 120.0, 180.0)
QUICK_CORRUPTIONS = ("gaussian_noise", "fog", "contrast")
QUICK_SEVERITIES = (1, 3, 5)
RECORD_VERSION = 1

Log = Callable[[str], None]


def parse_rows(experiment: str, rows: Sequence[str] | None) -> list[str]:
    """The rows to run, in table order, with ``map`` (every ratio's reference) always in.

    Args:
        experiment: One of ``COMPARE_EXPERIMENTS``.
        rows: Row names; None or empty: every row but ``DEFAULT_LEFT_OUT``'s.

    Returns:
        The row names.

    Raises:
        ConfigError: The experiment or a row name is unknown.
    """
    if experiment not in COMPARE_EXPERIMENTS:
        raise ConfigError(
            f"unknown experiment {experiment!r}; allowed: {list(COMPARE_EXPERIMENTS)}"
        )
    if not rows:
        left_out = DEFAULT_LEFT_OUT.get(experiment, {})
        return [r for r in ROWS if r not in left_out]
    unknown = [r for r in rows if r not in ROWS]
    if unknown:
        raise ConfigError(f"unknown row(s) {unknown}; allowed: {list(ROWS)}")
    chosen = {"map", *rows}
    return [r for r in ROWS if r in chosen]


def training_order(experiment: str, rows: Sequence[str] | None) -> list[str]:
    """The rows in the order they are trained: ``map`` first (every ratio's reference), then
    the rows as the caller listed them, so that a run cut short has the rows asked for first;
    without rows, the table's order (``parse_rows``).

    Args:
        experiment: One of ``COMPARE_EXPERIMENTS``.
        rows: Row names, as given; None or empty: the default rows.

    Returns:
        The row names, each once.

    Raises:
        ConfigError: The experiment or a row name is unknown.
    """
    names = parse_rows(experiment, rows)
    if not rows:
        return names
    return list(dict.fromkeys(["map", *rows]))


def compare(
    experiment: str,
    *,
    scale: str = "cpu",
    out: str | os.PathLike[str],
    data_dir: str | None = None,
    rows: Sequence[str] | None = None,
    seeds: Sequence[int] = (0, 1, 2),
    threads: int | None = None,
    quick: bool = False,
    overrides: Sequence[str] = (),
    progress: bool = True,
    log: Log | None = None,
) -> CompareResult:
    """Train (or reuse) and score every row for every seed; write the tables and the report.

    Args:
        experiment: ``mnist``, ``cifar5`` or ``demo`` (the embedded MNIST subset).
        scale: The configs' scale, ``cpu`` or ``paper``.
        out: The output folder.
        data_dir: The data root (None: the configs').
        rows: Row names (``ROWS``); None: the default rows (``parse_rows``).
        seeds: The seeds; each seeds the weights and the batch order of every row.
        threads: CPU threads (None: the ``map`` config's ``train.threads``).
        quick: No attacks, and fewer shifts (``QUICK_ANGLES``, or ``QUICK_CORRUPTIONS`` at
            ``QUICK_SEVERITIES``).
        overrides: ``key=value`` overrides of every row's config (e.g. ``train.steps=20``).
        progress: Show progress bars.
        log: Where progress lines go (default: standard error).

    Returns:
        The records, the skipped row-seeds and the files written.

    Raises:
        ConfigError: The experiment, a row, a seed list or a config is bad.
    """
    say = log or (lambda text: print(text, file=sys.stderr))
    names = parse_rows(experiment, rows)
    if not seeds or len(set(seeds)) != len(seeds):
        raise ConfigError(f"--seeds must be distinct integers, got {list(seeds)}")
    root = Path(out)
    check_writable(root)
    base = with_data_root(_load(f"{experiment}/map", scale, overrides), data_dir)
    data = load_run_data(base)
    settings = _settings(experiment, scale, base, data, quick, overrides, threads)
    result = CompareResult(root)
    ood2 = _second_ood(base, data, say)
    shifts = _shifts(experiment, quick)
    attacks = None if quick else attack_config(base, None)
    with torch_threads(threads or base.train.threads):
        for seed in seeds:
            job = _SeedJob(experiment, scale, base, data, seed, root, overrides, progress, say)
            for row in training_order(experiment, rows):
                path = root / "records" / row / f"seed{seed}.json"
                digest = settings["hash"] + "-" + job.row_hash(row)
                done = _read_record(path, digest)
                if done is not None:
                    say(f"[{row} seed {seed}] already done")
                    result.records.setdefault(row, {})[seed] = done
                    continue
                try:
                    method, train_s, notes = job.train(row)
                except _Skip as skip:
                    say(f"[{row} seed {seed}] skipped: {skip}")
                    result.skipped.append((row, seed, str(skip)))
                    continue
                say(f"[{row} seed {seed}] scoring")
                record = score_method(
                    method,
                    job.map_method(),
                    data,
                    base,
                    attacks=attacks,
                    shifts=shifts,
                    ood2=ood2,
                    seed=seed,
                    batch_size=min(EVAL_BATCH.get(row, base.eval.batch_size), base.eval.batch_size),
                    progress=progress,
                )
                record.update(
                    row=row,
                    label=LABELS[row],
                    seed=seed,
                    kind=_kind(row),
                    settings_hash=digest,
                    version=RECORD_VERSION,
                    notes=notes,
                )
                record["timing"]["train_seconds"] = train_s
                write_json(path, record)
                result.records.setdefault(row, {})[seed] = record
    for row, reason in DEFAULT_LEFT_OUT.get(experiment, {}).items():
        if not rows:
            result.skipped.append((row, -1, f"not a default row here: {reason}"))
    result.files = write_outputs(result, settings, names, list(seeds), ood2 is not None)
    return result


def score_method(
    method: Any,
    map_method: Any,
    data: RunData,
    cfg: ExperimentConfig,
    *,
    attacks: Any,
    shifts: Sequence[Shift],
    ood2: Tensor | None,
    seed: int,
    batch_size: int,
    progress: bool = False,
) -> dict[str, Any]:
    """One row-seed's numbers, by the same protocol for every row.

    Args:
        method: The trained method.
        map_method: The MAP method of the same seed, whose prediction is timed right before
            ``method``'s.
        data: The experiment's data.
        cfg: The ``map`` config (its ``eval`` section: samples, batch size).
        attacks: The ``AttackConfig`` (None: no attacks).
        shifts: The dataset shifts (``bbh.data.shift``).
        ood2: A second OOD set in pixel space, or None.
        seed: Seeds the attacks' random starts.
        batch_size: Inputs per prediction call.
        progress: Show progress bars.

    Returns:
        A JSON-ready record with ``metrics`` (the table's numbers), ``curves`` (attack curves, the
        clean accuracy-rejection curve), ``shift`` (``evaluate_shift``'s result) and ``timing``.
    """
    samples, transform = cfg.eval.num_samples, data.input_transform
    test_x, test_y = data.test.images, data.test.labels
    # prediction time: MAP's, then this row's, on the whole test set, each after a warm-up
    # call on a few inputs (the first call of a process pays for allocations and kernels)
    for m in (map_method, method):
        predict_batched(m, test_x[:8], num_samples=samples, batch_size=8, input_transform=transform)
    t0 = time.perf_counter()
    predict_batched(
        map_method,
        test_x,
        num_samples=samples,
        batch_size=cfg.eval.batch_size,
        input_transform=transform,
    )
    t1 = time.perf_counter()
    torch.manual_seed(seed)
    pred = predict_batched(
        method, test_x, num_samples=samples, batch_size=batch_size, input_transform=transform
    )
    t2 = time.perf_counter()
    torch.manual_seed(seed)
    ev = evaluate(
        method,
        test_x,
        test_y,
        ood_x=None if data.ood is None else data.ood.images,
        num_samples=samples,
        batch_size=batch_size,
        attacks=attacks,
        input_transform=transform,
        generator=torch.Generator().manual_seed(seed),
        progress=progress,
    )
    paper, ext = ev["paper_protocol"], ev["extended"]
    curve = accuracy_rejection_curve(pred.probs, test_y)
    metrics: dict[str, Any] = {
        "accuracy": ext.get("accuracy"),
        "nll": ext.get("nll"),
        "brier": ext.get("brier"),
        "ece": ext.get("ece"),
        # mean top-class probability minus accuracy: the sign says over- or under-confident
        "confidence_minus_accuracy": ext["mean_max_probability_in"] - ext["accuracy"],
        "auroc": ext.get("ood", {}).get("entropy", {}).get("auroc"),
        "cdf_area_in": paper.get("entropy_cdf_area_in"),
        "cdf_area_out": paper.get("entropy_cdf_area_out"),
        "rejection_area": curve.area,
        "auroc_2": None,
    }
    if ood2 is not None:
        out = predict_batched(
            method, ood2, num_samples=samples, batch_size=batch_size, input_transform=transform
        )
        metrics["auroc_2"] = ood_detection({"entropy": pred.entropy}, {"entropy": out.entropy})[
            "entropy"
        ]["auroc"]
    curves: dict[str, Any] = {"rejection": curve.to_dict()}
    for key, name in (("fgsm_eot", "fgsm"), ("pgd_eot", "pgd")):
        c = ext.get(key)
        metrics[f"{name}_accuracy"] = _attacked_mean(c)
        if c:
            curves[name] = {"epsilons": c["epsilons"], "accuracy": c["accuracy"]}
    shift = evaluate_shift(
        method,
        test_x,
        test_y,
        shifts,
        num_samples=samples,
        batch_size=batch_size,
        input_transform=transform,
        seed=seed,
        progress=progress,
    )
    for m in ("accuracy", "nll", "ece", "rejection_area"):
        metrics[f"shift_{m}"] = shift["mean"][m]
    return {
        "metrics": metrics,
        "curves": curves,
        "shift": {k: shift[k] for k in ("meta", "mean", "by_intensity", "shifts")},
        "timing": {
            "predict_seconds": t2 - t1,
            "map_predict_seconds": t1 - t0,
            "evaluate_seconds": ev["timing_s"].get("total"),
            "shift_seconds": shift["timing_s"]["total"],
        },
    }


# ------------------------------------------------------------------------------ helpers


class _Skip(Exception):
    """A row-seed that cannot run here (a peer's package is missing)."""


@dataclass
class _SeedJob:
    """Trains the rows of one seed; holds that seed's MAP (the ratios' reference)."""

    experiment: str
    scale: str
    base: ExperimentConfig
    data: RunData
    seed: int
    root: Path
    overrides: Sequence[str]
    progress: bool
    say: Log
    _map: Any = None
    _map_seconds: float | None = None

    def map_method(self) -> Any:
        if self._map is None:
            self.train("map")
        return self._map

    def row_config(self, row: str) -> ExperimentConfig:
        """Our row's config, on the work of ``map`` with this seed."""
        cfg = _load(f"{self.experiment}/{row}", self.scale, self.overrides)
        return same_work(cfg, self.base, self.seed)

    def row_hash(self, row: str) -> str:
        """What a record of ``row`` depends on beyond the settings: our row's config hash, a
        peer's default options and package version (``bbh.peers.peer_settings``; Laplace's
        also MAP's hash, whose net it is fitted on), so that a change of either scores it
        again."""
        if row not in OUR_ROWS:
            from bbh.peers import peer_settings

            settings = json.dumps(peer_settings(row), sort_keys=True)
            if row == "laplace":
                settings += self.row_hash("map")
            return f"{row}-{hashlib.sha256(settings.encode()).hexdigest()[:12]}"
        cfg = self.row_config(row)
        return config_hash(cfg, method_options(cfg))

    def train(self, row: str) -> tuple[Any, float | None, list[str]]:
        """The trained method of ``row``, its training seconds and notes."""
        if row in OUR_ROWS:
            return self._ours(row)
        from bbh.peers import PeerPackageMissing, train_peer

        x, y = self.data.train_x, self.data.train_y
        steps, _ = total_steps(self.base, int(y.shape[0]))
        common: dict[str, Any] = {
            "steps": steps,
            "batch_size": self.base.train.batch_size,
            "seed": self.seed,
        }
        try:
            if row == "laplace":
                self.map_method()
                peer = train_peer(
                    row, self._map.net, plain_inputs(self.data), y, pretrained=True, **common
                )
                fit_s = float(getattr(peer, "fit_seconds", 0.0))
                notes = [
                    f"fitted on the MAP net of seed {self.seed}: MAP's training time plus "
                    f"the fit's {fit_s:.1f} s"
                ]
                return peer, (self._map_seconds or 0.0) + fit_s, notes
            if row == "laplace_all":
                peer = train_peer(row, build_net(self.base), plain_inputs(self.data), y, **common)
                notes = [
                    "MAP training by bbh.fit (the peer's own), then the all-weight fit; "
                    "predicted in small batches"
                ]
            else:
                augment: Any = self.data.train_transform
                peer = train_peer(row, build_net(self.base), x, y, transform=augment, **common)
                notes = []
        except PeerPackageMissing as err:
            raise _Skip(str(err)) from None
        return peer, float(getattr(peer, "train_seconds", 0.0)), notes

    def _ours(self, row: str) -> tuple[Any, float | None, list[str]]:
        from bbh.experiments.reproduce import _set_aside_if_changed

        cfg = self.row_config(row)
        run_dir = self.root / "runs" / f"{row}-seed{self.seed}"
        _set_aside_if_changed(cfg, run_dir, self.say)
        folder = RunFolder.at(run_dir)
        with folder.lock():
            self.say(f"[{row} seed {self.seed}] training (or reusing) {run_dir}")
            train_run(cfg, run_dir, resume=None, progress=self.progress)
        method, _ = load_with_config(run_dir)
        seconds = read_json(folder.train_file).get("seconds")
        if row == "map":
            self._map, self._map_seconds = method, seconds
        return method, seconds, []


def same_work(cfg: ExperimentConfig, base: ExperimentConfig, seed: int) -> ExperimentConfig:
    """``cfg`` (a shipped config) on ``base``'s net, data, batch size, epochs and steps, with
    ``seed``; its method options, optimiser and KL schedule stay. An ensemble's members all see
    the whole batch (``data_order = "shared"``), so they see MAP's batches.

    Args:
        cfg: A row's config.
        base: The experiment's ``map`` config.
        seed: The seed.

    Returns:
        The config that ``compare`` trains.
    """
    train = replace(
        cfg.train,
        batch_size=base.train.batch_size,
        epochs=base.train.epochs,
        steps=base.train.steps,
        threads=base.train.threads,
    )
    method = cfg.method
    if method.name == "ensemble":
        method = replace(method, options={**method.options, "data_order": "shared"})
    return replace(
        cfg, net=base.net, data=base.data, train=train, method=method, seed=seed, eval=base.eval
    )


def _load(name: str, scale: str, overrides: Sequence[str]) -> ExperimentConfig:
    cfg = load_config(name, scale=scale, overrides=overrides)
    if not isinstance(cfg, ExperimentConfig):
        raise ConfigError(f"{name} is not a classification experiment")
    return cfg


def _kind(row: str) -> str:
    return "ours" if row in OUR_ROWS else "peer"


def plain_inputs(data: RunData) -> Tensor:
    """The training inputs as the model takes them, without augmentation (Laplace's fit)."""
    x = data.train_x
    if data.input_transform is None:
        return x
    return data.input_transform(x.float() / 255.0 if x.dtype == torch.uint8 else x)


def _attacked_mean(curve: dict[str, Any] | None) -> float | None:
    """The mean accuracy over an attack curve's epsilons above 0."""
    if not curve:
        return None
    accs = [a for e, a in zip(curve["epsilons"], curve["accuracy"], strict=True) if e > 0]
    return float(sum(accs) / len(accs)) if accs else None


def _shifts(experiment: str, quick: bool) -> list[Shift]:
    if experiment == "cifar5":
        if quick:
            return corruption_shifts(QUICK_CORRUPTIONS, QUICK_SEVERITIES)
        return corruption_shifts()
    return rotation_shifts(QUICK_ANGLES) if quick else rotation_shifts()


def _second_ood(base: ExperimentConfig, data: RunData, say: Log) -> Tensor | None:
    """CIFAR-10's test images, grey (ITU-R 601 luma) and resized to 28x28, for MNIST-shaped
    test sets; None (with a note) where CIFAR-10 is not under the data root."""
    shape = tuple(data.test.images.shape[1:])
    if shape not in ((1, 28, 28), (784,)):
        return None
    from bbh.data import load_cifar10

    try:
        cifar = load_cifar10(base.data.root, offline=True).test.images
    except Exception as err:  # any missing or unreadable copy: skip the column
        say(f"second OOD set skipped (CIFAR-10 not found under the data root: {err})")
        return None
    x = cifar.float() / 255.0
    grey = (0.299 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2]).unsqueeze(1)
    small = torch.nn.functional.interpolate(
        grey, size=(28, 28), mode="bilinear", antialias=True, align_corners=False
    )
    return small.clamp(0, 1).reshape(-1, *shape)


def _read_record(path: Path, digest: str) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    try:
        record = read_json(path)
    except Exception:
        return None
    ok = record.get("settings_hash") == digest and record.get("version") == RECORD_VERSION
    return record if ok else None


def _settings(
    experiment: str,
    scale: str,
    base: ExperimentConfig,
    data: RunData,
    quick: bool,
    overrides: Sequence[str],
    threads: int | None,
) -> dict[str, Any]:
    steps, per_epoch = total_steps(base, int(data.train_y.shape[0]))
    settings: dict[str, Any] = {
        "experiment": experiment,
        "scale": scale,
        "quick": quick,
        "overrides": list(overrides),
        "net": base.net.name,
        "data": data.source,
        "batch_size": base.train.batch_size,
        "steps": steps,
        "steps_per_epoch": per_epoch,
        "eval_samples": base.eval.num_samples,
        "base_config_hash": config_hash(base),
    }
    settings["hash"] = config_hash(base) + ("-quick" if quick else "")
    settings["threads"] = threads or base.train.threads
    settings["machine"] = {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
        "torch": torch.__version__,
        "python": platform.python_version(),
    }
    settings["commit"] = _commit()
    return settings


def _commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            cwd=Path(__file__).parent,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None
