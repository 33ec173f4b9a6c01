"""``bbh train CONFIG``: one training run into a run folder, with checkpoints and exact resume.

``train_run(cfg, out)`` builds the method (a bad option stops here, before any file is written),
checks the folder (a finished run of the same config is not retrained; one of another config, an
unfinished run without ``resume`` and a foreign folder are errors), loads the data, then trains
with ``bbh.training.fit``, writing ``log.jsonl`` rows, per-epoch validation, checkpoints every
``train.checkpoint_every`` steps and at the end, ``model.pt`` and, last, ``train.json``.
SIGINT stops at the next step boundary with a checkpoint (a second SIGINT stops at once).

Under ``torchrun`` (a process group of several ranks, see ``bbh.training.distributed``) every
rank trains, and only rank 0 touches the run folder: it holds the lock, decides what to do
(train, resume, nothing, an error: every rank then raises it), writes the config, log,
checkpoints, model and summary, and reads the checkpoint it resumes from (the other ranks get
its contents over the process group, so other nodes need no access to the folder). Each rank
loads the data itself, after rank 0 (which fills the caches and downloads what is missing);
the per-epoch validation is split between the ranks and its metrics reduced.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import math
import os
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from bbh._version import __version__
from bbh.evaluation import predict_batched
from bbh.experiments.builders import (
    RunData,
    build_method,
    kl_schedule,
    load_run_data,
    method_options,
    size_from_data,
)
from bbh.experiments.config import (
    OWN_DATA,
    ExperimentConfig,
    config_hash,
    config_to_dict,
    plain_value,
)
from bbh.experiments.progress import progress_bar
from bbh.experiments.runs import RunError, RunFolder, check_writable, save_model
from bbh.io import atomic_write, write_json
from bbh.methods import Method
from bbh.metrics import accuracy, nll
from bbh.training import (
    CheckpointError,
    FitHooks,
    FitResult,
    TrainingInterrupted,
    TrainState,
    fit,
    load_latest_checkpoint,
    save_checkpoint,
)
from bbh.training import distributed as ddp_tools
from bbh.training.distributed import DDPSettings, Ranks, current_ranks, run_on_main


class RunInterrupted(RunError):
    """Training was stopped by SIGINT; a checkpoint was saved."""


@dataclass(frozen=True)
class TrainOutcome:
    """What ``train`` did: the run folder, its status, its steps and seconds, and notes."""

    run: RunFolder
    status: str  # "trained", "resumed" or "already finished"
    steps: int
    seconds: float
    notes: list[str] = field(default_factory=list)
    rank: int = 0  # this process's rank under torchrun (0 in one process)
    world_size: int = 1


def with_data_root(cfg: ExperimentConfig, root: str | None) -> ExperimentConfig:
    """``cfg`` reading its data from ``root`` (None: unchanged)."""
    return cfg if root is None else replace(cfg, data=replace(cfg.data, root=str(root)))


@contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """Run with ``n`` intra-op CPU threads (None: unchanged), restored afterwards."""
    before = torch.get_num_threads()
    if n is not None:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def resolve_device(name: str) -> torch.device:
    """``cpu``, ``cuda`` or ``auto`` (CUDA if available); under torchrun CUDA means this rank's
    device (``cuda:LOCAL_RANK``)."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise RunError(f"device {name!r}: no CUDA device is available here")
    if name == "cuda" and ddp_tools.env_world_size() > 1:
        return torch.device("cuda", ddp_tools.local_rank())
    return torch.device(name)


def total_steps(cfg: ExperimentConfig, num_train: int) -> tuple[int, int]:
    """``(steps, steps_per_epoch)`` of a run on ``num_train`` training examples."""
    per_epoch = max(num_train // min(cfg.train.batch_size, num_train), 1)
    if cfg.train.steps is not None:
        return cfg.train.steps, per_epoch
    return max(1, round(cfg.train.epochs * per_epoch)), per_epoch


def train_run(
    cfg: ExperimentConfig,
    out: str | os.PathLike[str],
    *,
    device: str | None = None,
    resume: bool | None = False,
    progress: bool = True,
) -> TrainOutcome:
    """Train ``cfg`` into the run folder ``out``; ``resume=None`` resumes an unfinished run if
    there is one (``bbh reproduce``), ``True`` requires one, ``False`` refuses one."""
    with torch_threads(cfg.train.threads):
        return _train_run(cfg, Path(out), device, resume, progress)


def lock_unless_foreign(run: RunFolder) -> Any:
    """The run folder's lock, or a no-op for a folder that is not a run's (refused later, without
    leaving a lock file in it); ``bbh train`` and ``bbh finetune`` hold it while they train.

    Args:
        run: The run folder.

    Returns:
        A context manager.
    """
    if run.status() == "foreign":  # refused below; never leave a lock file in someone's folder
        return contextlib.nullcontext()
    return run.lock()


def _train_run(
    cfg: ExperimentConfig, out: Path, device: str | None, resume: bool | None, progress: bool
) -> TrainOutcome:
    ranks = current_ranks()
    data: RunData | None = None
    if cfg.data.name in OWN_DATA:  # its content is part of the run's identity; it sizes the net
        data = _load_data(cfg, ranks)
        cfg = size_from_data(cfg, data)
    torch.manual_seed(cfg.seed)  # the same initialisation on every rank
    method = build_method(cfg)
    options = method_options(cfg)
    digest = config_hash(cfg, options, data.fingerprint if data else None)
    # what is in force where it depends on the net (BbH's small-net options); not in the hash,
    # which the config alone fixes
    options.update(plain_value(getattr(method, "resolved_options", {})))
    dev = resolve_device(device or cfg.train.device)
    if ranks is not None and ranks.backend == "nccl" and dev.type != "cuda":
        raise RunError(f"the process group uses nccl, which needs CUDA; this run trains on {dev}")
    run = RunFolder.at(out)
    with contextlib.ExitStack() as held:  # rank 0 holds the folder's lock for the whole run

        def lock() -> None:
            held.enter_context(lock_unless_foreign(run))

        run_on_main(lock, ranks, "locking the run folder")
        return train_in_folder(
            run, cfg, method, dev, digest, options, resume, progress, ranks, data
        )


def train_in_folder(
    run: RunFolder,
    cfg: ExperimentConfig,
    method: Method,
    dev: torch.device,
    digest: str,
    options: dict[str, Any],
    resume: bool | None,
    progress: bool,
    ranks: Ranks | None,
    data: RunData | None = None,
    extra_meta: dict[str, Any] | None = None,
) -> TrainOutcome:
    """Train ``method`` into the locked ``run`` folder (``bbh train`` and ``bbh finetune``): the
    folder's checks, resume, the run log, checkpoints, ``model.pt`` and ``train.json``.

    Args:
        run: The run folder (its lock held by the caller).
        cfg: The run's config.
        method: The built method.
        dev: Where to train.
        digest: The config hash that names the run.
        options: The method's resolved options (recorded).
        resume: True: continue an unfinished run; False: refuse one; None: either.
        progress: Show progress bars.
        ranks: The process group under DDP, else None.
        data: The loaded data (None: loaded here).
        extra_meta: More fields for ``config.json`` (a fine-tune's source).

    Returns:
        What the run did (``TrainOutcome``).
    """
    rank, world = (ranks.rank, ranks.world_size) if ranks else (0, 1)
    main = rank == 0

    def check() -> tuple[str, int, float]:
        status = _check_folder(run, digest, resume)
        if status == "finished":
            summary = run.train_summary()
            return status, int(summary.get("steps", 0)), float(summary.get("seconds", 0.0))
        check_writable(run.path)
        return status, 0, 0.0

    status, done_steps, done_seconds = run_on_main(check, ranks, "checking the run folder")
    if status == "finished":
        return TrainOutcome(run, "already finished", done_steps, done_seconds, [], rank, world)
    data = data or _load_data(cfg, ranks)
    steps, per_epoch = total_steps(cfg, len(data.train_y))

    state: TrainState | None = None

    def prepare() -> tuple[list[str], int | None]:
        """Rank 0: the checkpoint to resume from (kept in ``state``) or a fresh config.json;
        the notes to log and the step resumed from (None: a fresh start)."""
        nonlocal state
        notes: list[str] = []
        if status == "partial":
            try:
                state, path, notes = load_latest_checkpoint(run.checkpoints, map_location=dev)
            except CheckpointError as exc:
                notes.append(f"{exc}; starting again from step 0")
            else:
                try:
                    ddp_tools.check_resumable(state, steps, world)
                except ValueError as exc:
                    raise RunError(f"--resume: {run.path}: {exc}") from None
                notes.append(f"resuming from {path} (step {state.step} of {steps})")
        else:
            meta = {
                "config": config_to_dict(cfg),
                "config_hash": digest,
                "method_options": options,
                "bbh_version": __version__,
                "torch_version": torch.__version__,
                "data_source": data.source,
                "data_fingerprint": data.fingerprint,
                "num_train": len(data.train_y),
                "steps": steps,
                "steps_per_epoch": per_epoch,
                "world_size": world,
                "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
                **(extra_meta or {}),  # bbh finetune: where the run started from
            }
            write_json(run.config_file, meta)
        for note in notes:
            print(f"bbh train: {note}", file=sys.stderr)
        return notes, state.step if state else None

    notes, resumed_from = run_on_main(prepare, ranks, "preparing the run folder")
    resuming = resumed_from is not None
    scored = (
        _scored_candidates(run.log_file, cfg, data)
        if main and status == "partial" and not resuming
        else {}
    )
    if scored:
        note = (f"reusing the validation NLL of {len(scored)} temperature candidate(s) the "
                "interrupted search scored")  # fmt: skip
        notes.append(note)
        print(f"bbh train: {note}", file=sys.stderr)
    log: RunLog | _NoLog = (
        RunLog(run.log_file, keep_until_step=state.step if state else 0) if main else _NoLog()
    )
    try:
        log.write({"event": "resume" if resuming else "start", "step": resumed_from or 0,
                   "device": str(dev), "world_size": world, "notes": notes})  # fmt: skip
        method.to(dev)
        hooks = _RunHooks(cfg, run, log, data, dev, digest, ranks, scored)
        result = _fit(cfg, method, data, dev, steps, per_epoch, hooks, state, progress and main)

        def finish() -> None:
            save_model(
                run.model_file,
                method,
                {"config": config_to_dict(cfg), "config_hash": digest,
                 "bbh_version": __version__},
            )  # fmt: skip
            summary = {
                "config_hash": digest,
                "steps": result.steps,
                "epochs": result.steps / per_epoch,
                "seconds": result.seconds,
                "final": result.logs[-1] if result.logs else {},
                "validation": hooks.validation,
                "temperature": result.temperature.to_dict() if result.temperature else None,
                "device": str(dev),
                "world_size": world,
                "backend": ranks.backend if ranks else None,
                "finished": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            }
            write_json(run.train_file, summary)
            if result.temperature is not None:
                log.write({"event": "temperature", **result.temperature.to_dict()})
                if progress:
                    print(f"{cfg.display_name}: {result.temperature.summary()}", file=sys.stderr)
            log.write({"event": "done", "step": result.steps, "seconds": result.seconds})
            run.mark_done()

        run_on_main(finish, ranks, "writing the trained model")
    finally:
        log.close()
    status = "resumed" if resuming else "trained"
    return TrainOutcome(run, status, result.steps, result.seconds, notes, rank, world)


def _scored_candidates(log_file: Path, cfg: ExperimentConfig, data: RunData) -> dict[float, float]:
    """The temperature candidates an interrupted run's search scored (its log's
    ``temperature_candidate`` rows), where they were scored on the same validation examples with
    the same draws (``train.val_samples`` is in the config hash only away from its default)."""
    return {
        float(row["temperature"]): float(row["val_nll"])
        for row in read_log(log_file)
        if row.get("event") == "temperature_candidate"
        and row.get("val_samples") == cfg.train.val_samples
        and row.get("val_examples") == _val_examples(data)
    }


def _val_examples(data: RunData) -> int:
    return len(data.val.labels) if data.val is not None else 0


def _load_data(cfg: ExperimentConfig, ranks: Ranks | None) -> RunData:
    """Every rank's copy of the data: rank 0 first (it downloads and caches what is missing;
    its error stops every rank), then the others."""
    loaded: list[RunData] = []
    run_on_main(lambda: loaded.append(load_run_data(cfg)), ranks, "loading the data")
    return loaded[0] if loaded else load_run_data(cfg)


def _fit(
    cfg: ExperimentConfig,
    method: Method,
    data: RunData,
    dev: torch.device,
    steps: int,
    per_epoch: int,
    hooks: _RunHooks,
    state: TrainState | None,
    progress: bool,
) -> FitResult:
    """``bbh.training.fit`` with the run's hooks, a progress bar and SIGINT as a stop request;
    an interruption or a non-finite loss becomes a one-line ``RunError``."""
    with progress_bar(steps, state.step if state else 0, cfg.display_name, progress) as bar:
        hooks.bar = bar
        try:
            with _sigint_requests_stop(hooks, announce=progress_owner(hooks)):
                return fit(
                    method,
                    data.train_x.to(dev),
                    data.train_y.to(dev),
                    steps=steps,
                    batch_size=cfg.train.batch_size,
                    lr=cfg.train.lr,
                    lr_schedule=cfg.train.lr_schedule,
                    lr_warmup=cfg.train.lr_warmup,
                    kl_schedule=kl_schedule(cfg, per_epoch),
                    optimizer=cfg.train.optimizer,
                    seed=cfg.seed,
                    num_data=cfg.train.num_data,
                    transform=data.train_transform,
                    log_every=cfg.train.log_every,
                    hooks=hooks,
                    resume=state,
                    ddp=DDPSettings(find_unused_parameters=cfg.distributed.find_unused_parameters),
                    validation=validation_pair(data, dev),
                    val_samples=cfg.train.val_samples,
                    temperature_patience=cfg.train.temperature_patience,
                )
        except TrainingInterrupted as stop:  # every rank stops at the same step
            hooks.log.write({"event": "interrupted", "step": stop.step})
            raise ddp_tools.reported_by_main(
                RunInterrupted(
                    f"interrupted at step {stop.step}; checkpoint {hooks.last_checkpoint}; "
                    f"continue with --resume"
                ),
                hooks.ranks,
            ) from None
        except FloatingPointError as exc:  # every rank raises at the same step
            hooks.log.write({"event": "non-finite", "message": str(exc)})
            last = hooks.last_checkpoint or "none (no checkpoint was written yet)"
            raise ddp_tools.reported_by_main(
                RunError(f"{hooks.run.path}: {exc}; last good checkpoint: {last}"), hooks.ranks
            ) from None


def validation_pair(data: RunData, dev: torch.device) -> tuple[torch.Tensor, torch.Tensor] | None:
    """The validation split as the model takes it (for ``temperature="validation"``).

    Args:
        data: The run's data.
        dev: The device to put it on.

    Returns:
        ``(x, y)`` with ``x`` through the data's input transform (for CIFAR the central crop
        and standardisation), or None where the run holds out no validation split.
    """
    if data.val is None:
        return None
    x = data.val.images.to(dev)
    if data.input_transform is not None:
        x = data.input_transform(x)
    return x, data.val.labels.to(dev)


def _check_folder(run: RunFolder, digest: str, resume: bool | None) -> str:
    """The folder's status if this run may use it as asked, else a ``RunError``."""
    status = run.status()
    if status == "foreign":
        raise RunError(f"{run.path} is not a bbh run folder (it holds other files); use a new one")
    if status in ("finished", "partial"):
        old = run.meta().get("config_hash")
        if status == "finished" and old != digest:
            raise RunError(
                f"{run.path} holds a finished run of another config (hash {old}, this one "
                f"{digest}); choose another --out"
            )
        if status == "partial" and resume is False:
            raise RunError(
                f"{run.path} holds an unfinished run; continue it with --resume or choose "
                "another --out"
            )
        if status == "partial" and old != digest:
            raise RunError(
                f"--resume: {run.path} was started with another config (hash {old}, this one "
                f"{digest}); choose another --out"
            )
    elif resume is True:
        raise RunError(f"--resume: {run.path} holds no run to resume")
    return status


# ------------------------------------------------------------------------------ run log


class _NoLog:
    """The log of a rank other than 0: it writes nothing."""

    def write(self, row: dict[str, Any]) -> None:
        pass

    def close(self) -> None:
        pass


class RunLog:
    """Appends JSON lines to ``log.jsonl``; on resume keeps only rows up to the checkpoint's step
    (a row cut by a kill is dropped) so the log reads as one uninterrupted run."""

    def __init__(self, path: Path, *, keep_until_step: int = 0):
        self.path = path
        if keep_until_step > 0 and path.is_file():
            kept = [
                line
                for line in _valid_lines(path)
                if json.loads(line).get("step", 0) <= keep_until_step
            ]
            text = "".join(line + "\n" for line in kept)
            atomic_write(path, lambda tmp: _write_text(tmp, text))
        elif keep_until_step == 0 and path.is_file():
            path.unlink()
        self._file = open(path, "a", encoding="utf-8")  # noqa: SIM115 - kept open for the run

    def write(self, row: dict[str, Any]) -> None:
        """Append one row (with the time) and flush it.

        Args:
            row: JSON-serialisable values.
        """
        row = {"time": round(_now(), 3), **row}
        self._file.write(json.dumps(row, allow_nan=True) + "\n")
        self._file.flush()

    def close(self) -> None:
        """Close the log file."""
        self._file.close()


def _write_text(path: Path, text: str) -> None:
    path.write_text(text, encoding="utf-8")


def read_log(path: Path) -> list[dict[str, Any]]:
    """The rows of a run's ``log.jsonl`` (a last line cut by a kill is skipped)."""
    return [json.loads(line) for line in _valid_lines(path)] if path.is_file() else []


def _valid_lines(path: Path) -> Iterator[str]:
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            if isinstance(json.loads(line), dict):
                yield line
        except ValueError:
            continue


def _now() -> float:
    return dt.datetime.now(dt.timezone.utc).timestamp()


# ------------------------------------------------------------------------------ hooks


class _RunHooks(FitHooks):
    def __init__(
        self,
        cfg: ExperimentConfig,
        run: RunFolder,
        log: RunLog | _NoLog,
        data: RunData,
        device: torch.device,
        digest: str,
        ranks: Ranks | None = None,
        scored: dict[float, float] | None = None,
    ):
        self.cfg, self.run, self.log, self.data, self.device = cfg, run, log, data, device
        self.digest = digest
        self.scored = dict(scored or {})
        self.ranks = ranks
        self.checkpoint_every = cfg.train.checkpoint_every
        self.last_checkpoint: Path | None = None
        self.validation: list[dict[str, float]] = []
        self.stop_requested = False
        self.bar: Any = None
        self._postfix: dict[str, str] = {}

    def on_log(self, row: dict[str, float]) -> None:
        self.log.write({"event": "train", **row})
        for key in ("loss", "nll", "kl", "kl_weight", "examples_per_s"):
            if key in row:
                self._postfix[key.replace("examples_per_s", "ex/s")] = f"{row[key]:.4g}"
        self.bar.set_postfix(self._postfix, refresh=False)

    def on_step(self, step: int) -> None:
        self.bar.update(1)

    def on_temperature_candidate(self, temperature: float, val_nll: float | None) -> None:
        """The temperature search's candidates: a log row and a line above the bar (which moves
        only in the final run)."""
        if val_nll is None:
            self.bar.write(f"{self.cfg.display_name}: training at temperature {temperature:g}")
            return
        self.log.write({"event": "temperature_candidate", "temperature": temperature,
                        "val_nll": val_nll, "val_samples": self.cfg.train.val_samples,
                        "val_examples": _val_examples(self.data)})  # fmt: skip
        before = " (scored before the interruption)" if temperature in self.scored else ""
        self.bar.write(f"{self.cfg.display_name}: temperature {temperature:g}: validation NLL "
                       f"{val_nll:.4f}{before}")  # fmt: skip
        reset = getattr(self.bar, "reset", None)  # tqdm: the bar's clock starts again at 0 steps
        if reset is not None:
            reset()

    def scored_temperatures(self) -> dict[float, float]:
        """The candidates the interrupted search of this run scored (its log's rows)."""
        return dict(self.scored)

    def on_epoch_end(self, method: Method, epoch: int, step: int) -> None:
        """Validation accuracy and NLL; under DDP each rank predicts its share of the
        validation set and the metrics are averaged over the ranks, weighted by share."""
        val = self.data.val
        if val is None:
            return
        torch.manual_seed(self.cfg.seed + epoch)  # inside fit's forked RNG
        part = ddp_tools.shard(len(val.labels), self.ranks)
        labels = val.labels[part]
        regression = labels.is_floating_point()
        metrics = {"mse": 0.0, "nll": 0.0} if regression else {"accuracy": 0.0, "nll": 0.0}
        if len(labels) and regression:
            metrics = _regression_metrics(
                method, val.images[part].to(self.device), labels.to(self.device),
                self.cfg.train.val_samples, self.cfg.eval.batch_size, self.data.input_transform,
            )  # fmt: skip
        elif len(labels):
            pred = predict_batched(
                method,
                val.images[part].to(self.device),
                num_samples=self.cfg.train.val_samples,
                batch_size=self.cfg.eval.batch_size,
                input_transform=self.data.input_transform,
            )
            metrics = {"accuracy": accuracy(pred.probs, labels), "nll": nll(pred.probs, labels)}
        metrics = ddp_tools.mean_over_ranks(metrics, self.ranks, weight=len(labels))
        if regression:  # the RMSE of the whole split, from the ranks' mean squared errors
            metrics = {"rmse": metrics.pop("mse") ** 0.5, **metrics}
        row = {"epoch": epoch, "step": step, **metrics}
        self.validation.append(row)
        self.log.write({"event": "val", **row})
        key = "rmse" if regression else "accuracy"
        self._postfix[f"val_{key[:3]}"] = f"{row[key]:.4f}"

    def on_checkpoint(self, state: TrainState) -> None:
        state.extra["config_hash"] = self.digest
        self.last_checkpoint = save_checkpoint(state, self.run.checkpoints)
        self.log.write({"event": "checkpoint", "step": state.step,
                        "path": str(self.last_checkpoint)})  # fmt: skip

    def should_stop(self) -> bool:
        return self.stop_requested


@torch.no_grad()
def _regression_metrics(
    method: Method,
    x: torch.Tensor,
    y: torch.Tensor,
    num_samples: int,
    batch_size: int,
    transform: Any,
) -> dict[str, float]:
    """Regression validation: the squared error of the predictive mean (the mean of the
    ``num_samples`` draws' outputs ``[S, B, D]``) and the NLL of the predictive mixture, both
    per example."""
    sq, nll_sum = 0.0, 0.0
    n = num_samples if method.stochastic else 1
    for xb, yb in zip(x.split(batch_size), y.split(batch_size), strict=True):
        out = method.predict_logits(xb if transform is None else transform(xb), n)  # [S, B, D]
        sq += float((out.mean(0) - yb.reshape(len(yb), -1)).pow(2).sum(-1).sum())
        loglik = method.likelihood.log_prob(out, yb)  # [S, B]
        nll_sum -= float((torch.logsumexp(loglik, 0) - math.log(len(out))).sum())
    return {"mse": sq / len(y), "nll": nll_sum / len(y)}


def progress_owner(hooks: _RunHooks) -> bool:
    """Does this process speak for the run (one process, or rank 0)?"""
    return hooks.ranks is None or hooks.ranks.is_main


@contextmanager
def _sigint_requests_stop(hooks: _RunHooks, announce: bool = True) -> Iterator[None]:
    """The first SIGINT asks the loop to stop at the next step boundary; a second one stops now.

    Under torchrun the agent forwards SIGINT to every rank; the ranks agree on the step to stop
    at (``bbh.training.distributed.StepAgreement``), and rank 0 alone announces it."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        if hooks.stop_requested:
            raise KeyboardInterrupt
        hooks.stop_requested = True
        if not announce:
            return
        print(
            "\nbbh train: stopping at the next step (a checkpoint is saved); "
            "press Ctrl-C again to stop at once",
            file=sys.stderr,
        )

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
