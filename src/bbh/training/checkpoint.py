"""Training checkpoints: everything a run needs to continue bit for bit, written atomically.

A checkpoint holds the method's ``state_dict`` (generators, posteriors, a discriminator and its
``pretrained`` flag), the optimiser's state, the sampler's permutation, position and generator, the
global RNG states (under DDP those of every rank, and the number of ranks), the step and the
seconds trained. Files are plain ``torch.save`` dicts of
tensors and numbers (read back with ``weights_only=True``: no pickled code), named
``step-00001234.pt``; the newest ``keep`` are kept. A checkpoint that cannot be read (truncated,
corrupt) is reported and the previous one used.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from bbh.io import atomic_write

CHECKPOINT_FORMAT = "bbh-train-checkpoint"
CHECKPOINT_VERSION = 2  # 2 added world_size and rank_rngs (DDP)
_READABLE_VERSIONS = (1, 2)
_NAME = re.compile(r"^step-(\d{8})\.pt$")


class CheckpointError(RuntimeError):
    """No usable checkpoint: names the files tried and why each failed."""


@dataclass
class TrainState:
    """The state of ``bbh.training.fit`` after ``step`` optimiser steps.

    ``rng`` is the global RNG state of the process (of rank 0 under DDP); ``world_size`` the
    number of ranks that trained, and ``rank_rngs`` every rank's RNG state, by rank (empty in
    one process). The method, optimiser and sampler states are the same on every rank.

    Args:
        step: The optimiser steps done.
        method: The method's ``state_dict``.
        optimizer: The optimiser's ``state_dict``.
        sampler: The ``ShuffleSampler``'s ``state_dict``.
        rng: The RNG state (``rng_state``).
        seconds: The training's wall time so far.
        extra: Anything else the caller carries (``bbh train``: its config's hash).
        world_size: The number of ranks that trained.
        rank_rngs: Every rank's RNG state, by rank.
    """

    step: int
    method: dict[str, Any]
    optimizer: dict[str, Any]
    sampler: dict[str, Any]
    rng: dict[str, Any]
    seconds: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)
    world_size: int = 1
    rank_rngs: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """The state as a dict for ``torch.save`` (with the format and version).

        Returns:
            The dict ``from_dict`` reads.
        """
        return {
            "format": CHECKPOINT_FORMAT,
            "version": CHECKPOINT_VERSION,
            "step": self.step,
            "method": self.method,
            "optimizer": self.optimizer,
            "sampler": self.sampler,
            "rng": self.rng,
            "seconds": self.seconds,
            "extra": self.extra,
            "world_size": self.world_size,
            "rank_rngs": self.rank_rngs,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainState:
        """The state that ``to_dict`` wrote.

        Args:
            d: The dict from ``to_dict``.

        Returns:
            The training state.

        Raises:
            ValueError: ``d`` is not a bbh training checkpoint of a version this bbh reads.
        """
        if d.get("format") != CHECKPOINT_FORMAT:
            raise ValueError(f"not a bbh training checkpoint (format {d.get('format')!r})")
        if d.get("version") not in _READABLE_VERSIONS:
            raise ValueError(
                f"checkpoint version {d.get('version')!r}; this bbh reads versions "
                f"{', '.join(map(str, _READABLE_VERSIONS))}"
            )
        return cls(
            step=int(d["step"]),
            method=d["method"],
            optimizer=d["optimizer"],
            sampler=d["sampler"],
            rng=d["rng"],
            seconds=float(d["seconds"]),
            extra=dict(d.get("extra", {})),
            world_size=int(d.get("world_size", 1)),
            rank_rngs=list(d.get("rank_rngs", [])),
        )


def checkpoint_path(folder: str | os.PathLike[str], step: int) -> Path:
    """The checkpoint file of ``step`` in ``folder``.

    Args:
        folder: The checkpoints folder.
        step: The training step.

    Returns:
        ``folder / step-XXXXXXXX.pt``.
    """
    return Path(folder) / f"step-{step:08d}.pt"


def list_checkpoints(folder: str | os.PathLike[str]) -> list[Path]:
    """Checkpoint files in ``folder``, newest (highest step) first.

    Args:
        folder: The checkpoints folder (it need not exist).

    Returns:
        The files' paths (empty where there are none).
    """
    folder = Path(folder)
    if not folder.is_dir():
        return []
    found = [p for p in folder.iterdir() if _NAME.match(p.name)]
    return sorted(found, key=lambda p: p.name, reverse=True)


def save_checkpoint(state: TrainState, folder: str | os.PathLike[str], *, keep: int = 2) -> Path:
    """Write ``state`` atomically as ``folder/step-<step>.pt``; keep only the newest ``keep``.

    Args:
        state: The training state.
        folder: The checkpoints folder.
        keep: How many checkpoints to keep (at least 1).

    Returns:
        The new file's path.
    """
    path = checkpoint_path(folder, state.step)
    payload = state.to_dict()
    atomic_write(path, lambda tmp: torch.save(payload, tmp))
    for old in list_checkpoints(folder)[max(keep, 1) :]:
        old.unlink(missing_ok=True)
    return path


def load_checkpoint(
    path: str | os.PathLike[str], *, map_location: str | torch.device = "cpu"
) -> TrainState:
    """The training state saved at ``path``.

    Args:
        path: A checkpoint file (``save_checkpoint``).
        map_location: Where its tensors go.

    Returns:
        The training state.

    Raises:
        ValueError: The file does not hold a bbh training checkpoint of a readable version.
    """
    data = torch.load(path, map_location=map_location, weights_only=True)
    if not isinstance(data, dict):
        raise ValueError("not a dict")
    return TrainState.from_dict(data)


def load_latest_checkpoint(
    folder: str | os.PathLike[str], *, map_location: str | torch.device = "cpu"
) -> tuple[TrainState, Path, list[str]]:
    """The newest readable checkpoint, its path, and a note for each newer one that was not.

    Raises ``CheckpointError`` if there is none or none can be read.

    Args:
        folder: The checkpoints folder.
        map_location: Where the tensors go.

    Returns:
        ``(state, path, notes)``.

    Raises:
        CheckpointError: There is no checkpoint, or none can be read.
    """
    notes: list[str] = []
    candidates = list_checkpoints(folder)
    if not candidates:
        raise CheckpointError(f"no checkpoint in {folder}")
    for path in candidates:
        try:
            return load_checkpoint(path, map_location=map_location), path, notes
        except Exception as exc:  # truncated zip, bad pickle, wrong format ...
            notes.append(f"checkpoint {path} is unreadable ({_short(exc)})")
    raise CheckpointError("; ".join(notes) + "; no usable checkpoint is left")


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"[:200]
