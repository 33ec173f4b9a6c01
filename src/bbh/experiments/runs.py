"""Run folders and saved models: what ``bbh train`` writes and ``bbh.load`` reads.

A run folder holds:

    config.json        the resolved config, its hash, the method's resolved options, versions
    log.jsonl          one JSON object per line: training rows, validation, events
    checkpoints/       step-<N>.pt training checkpoints (the newest two; see bbh.training)
    model.pt           the trained method: a plain state_dict plus the config (no pickled code)
    train.json         the training summary: its presence means "trained"
    evaluation.json    ``bbh evaluate``'s result, and its figures in figures/
    done               ``bbh.io``'s marker of a finished run, listing its files (rewritten after
                       each evaluation)

Every file is written atomically (``bbh.io``): a reader never sees half a file. A run folder is
written in place (``bbh.io.RunFolder`` with ``staged=False``), not swapped in at the end, because
an unfinished run must stay where ``--resume`` finds it.
"""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from bbh.experiments.config import ConfigError, ExperimentConfig, config_from_dict
from bbh.io import RunFolder as IORunFolder
from bbh.io import atomic_write

MODEL_FORMAT = "bbh-model"
MODEL_VERSION = 1


class RunError(RuntimeError):
    """A run folder that cannot be used as asked (one line, names the folder)."""


class RunBusy(RunError):
    """Another process is training or evaluating in this run folder."""


LOCK_FILE = ".lock"
_held: set[Path] = set()


@dataclass(frozen=True)
class RunFolder:
    """A run folder of ``bbh train``: the paths of its files and its state."""

    path: Path

    @classmethod
    def at(cls, path: str | os.PathLike[str]) -> RunFolder:
        """The run folder at ``path``.

        Args:
            path: The folder (it need not exist yet).

        Returns:
            A ``RunFolder``.
        """
        return cls(Path(path))

    @property
    def config_file(self) -> Path:
        """``config.json``: the resolved config the run was trained with."""
        return self.path / "config.json"

    @property
    def log_file(self) -> Path:
        """``log.jsonl``: the training log, one JSON row per logged step."""
        return self.path / "log.jsonl"

    @property
    def checkpoints(self) -> Path:
        """``checkpoints/``: the resumable training states."""
        return self.path / "checkpoints"

    @property
    def model_file(self) -> Path:
        """``model.pt``: the trained model (``bbh.load`` reads it)."""
        return self.path / "model.pt"

    @property
    def train_file(self) -> Path:
        """``train.json``: the training summary, written when training finished."""
        return self.path / "train.json"

    @property
    def evaluation_file(self) -> Path:
        """``evaluation.json``: the evaluation's results (``bbh evaluate``)."""
        return self.path / "evaluation.json"

    @property
    def figures(self) -> Path:
        """``figures/``: the evaluation's figures."""
        return self.path / "figures"

    def status(self) -> str:
        """``missing``, ``empty``, ``foreign`` (files but no run), ``partial`` or ``finished``."""
        if not self.path.exists():
            return "missing"
        if not self.path.is_dir():
            return "foreign"
        if self.train_file.is_file() and self.model_file.is_file():
            return "finished"
        if self.config_file.is_file():
            return "partial"
        return "foreign" if any(p.name != LOCK_FILE for p in self.path.iterdir()) else "empty"

    @contextmanager
    def lock(self) -> Iterator[None]:
        """Hold this folder for the calling process (an advisory ``flock`` on ``.lock``, released
        when the process dies); ``RunBusy`` if another process holds it. Reentrant."""
        key = self.path.resolve()
        if key in _held:
            yield
            return
        try:
            import fcntl
        except ImportError:  # pragma: no cover - no flock on this platform: no locking
            yield
            return
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise RunError(f"cannot write to {self.path}: {exc.strerror or exc}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise RunBusy(f"{self.path} is in use by another bbh process") from None
        _held.add(key)
        try:
            yield
        finally:
            _held.discard(key)
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def meta(self) -> dict[str, Any]:
        """The contents of ``config.json``."""
        return read_json(self.config_file)

    def train_summary(self) -> dict[str, Any]:
        """The training summary (``train.json``).

        Returns:
            The summary as a dict.

        Raises:
            RunError: The file is missing or unreadable.
        """
        return read_json(self.train_file)

    def mark_done(self) -> None:
        """Write (or refresh) ``bbh.io``'s ``done`` marker listing the run's files."""
        IORunFolder(self.path, self.path, staged=False).commit()


def read_json(path: Path) -> dict[str, Any]:
    """A JSON object from ``path``.

    Args:
        path: The file.

    Returns:
        The object as a dict.

    Raises:
        RunError: The file is missing, unreadable or holds no JSON object.
    """
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RunError(f"{path} is missing") from None
    except (OSError, ValueError) as exc:
        raise RunError(f"{path} is unreadable ({exc})") from None
    if not isinstance(data, dict):
        raise RunError(f"{path} does not hold a JSON object")
    return data


def check_writable(folder: Path) -> None:
    """Create ``folder`` and write a probe file, or raise ``RunError`` saying why not."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".write-test.", dir=folder)
        try:
            os.write(fd, b"\0" * 4096)
        finally:
            os.close(fd)
            os.unlink(probe)
    except OSError as exc:
        raise RunError(f"cannot write to {folder}: {exc.strerror or exc}") from None


def save_model(path: Path, method: torch.nn.Module, meta: dict[str, Any]) -> None:
    """Write the trained method: ``state_dict`` (on the CPU) plus ``meta`` (config, versions)."""
    payload = {
        "format": MODEL_FORMAT,
        "version": MODEL_VERSION,
        "meta": meta,
        "state_dict": {k: v.detach().cpu() for k, v in method.state_dict().items()},
    }
    atomic_write(path, lambda tmp: torch.save(payload, tmp))


def load(run: str | os.PathLike[str], device: str | torch.device | None = None) -> Any:
    """The trained method of a run folder (or a ``model.pt``), in ``eval`` mode, on ``device``.

    Rebuilds the net and the method from the saved config and loads the plain ``state_dict``;
    a file of another format version or a layout that no longer matches the code is a
    ``RunError`` that says so.
    """
    method, _ = load_with_config(run, device)
    return method


def load_with_config(
    run: str | os.PathLike[str], device: str | torch.device | None = None
) -> tuple[Any, ExperimentConfig]:
    """The trained method of a run folder (or ``model.pt`` file) and the config it was trained with.

    Args:
        run: The run folder, or its ``model.pt``.
        device: Where the method goes (default: the CPU).

    Returns:
        ``(method, config)``.

    Raises:
        RunError: There is no trained model, the file is not a readable bbh model of this format
            version, or its config is invalid.
    """
    from bbh.experiments.builders import build_method
    from bbh.methods import METHODS

    path = Path(run)
    model_file = path if path.is_file() else RunFolder(path).model_file
    if not model_file.is_file():
        hint = (
            " (training is unfinished: continue it with bbh train CONFIG --out RUN --resume)"
            if RunFolder(path).status() == "partial"
            else ""
        )
        raise RunError(f"{path} holds no trained model: {model_file} is missing{hint}")
    try:
        data = torch.load(model_file, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise RunError(f"{model_file} is not a readable bbh model ({type(exc).__name__})") from None
    if not isinstance(data, dict) or data.get("format") != MODEL_FORMAT:
        raise RunError(f"{model_file} is not a bbh model file")
    if data.get("version") != MODEL_VERSION:
        raise RunError(
            f"{model_file} has model format version {data.get('version')!r}; this bbh reads "
            f"version {MODEL_VERSION}: load it with the bbh that wrote it, or retrain"
        )
    meta = data.get("meta", {})
    try:
        cfg = config_from_dict(meta.get("config", {}), source=str(model_file))
    except ConfigError as exc:
        raise RunError(
            f"{exc} (the model was saved by bbh {meta.get('bbh_version', '?')})"
        ) from None
    if not isinstance(cfg, ExperimentConfig):
        raise RunError(f"{model_file} holds no trained method")
    adapt = getattr(METHODS.get(cfg.method.name), "options_for_state_dict", None)
    if adapt is not None:  # a method whose layout depends on options that defaults fill in
        options = adapt(cfg.method.options, data["state_dict"])
        cfg = dataclasses.replace(cfg, method=dataclasses.replace(cfg.method, options=options))
    method = build_method(cfg)
    result = method.load_state_dict(data["state_dict"], strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise RunError(
            f"{model_file} does not match method {cfg.method.name!r} of this bbh (saved by bbh "
            f"{meta.get('bbh_version', '?')}): missing {result.missing_keys[:5]}, unexpected "
            f"{result.unexpected_keys[:5]}; retrain, or load it with the bbh that wrote it"
        )
    if device is not None:
        method.to(device)
    method.eval()
    return method, cfg
