"""``bbh finetune SOURCE --method bbh``: Bayesian fine-tuning of a trained net into a run folder.

``SOURCE`` is a finished run folder of ``bbh train`` (or its ``model.pt``) of a point-estimate
method (``map``, ``mc_dropout``: its net is the start), or a checkpoint file holding a plain
``state_dict`` of the net, with ``config=`` naming the net and the data (a shipped config name
or a TOML file). The fine-tuned run takes the source's config with the method replaced (its
options from ``--set method.options.KEY=VALUE``), the KL weight constant 1 (the posterior
starts at the trained weights, nothing to anneal) and the budget given (default one epoch); so
the same data, splits, seed (data order), batch size and evaluation settings. It is written as
``bbh train`` writes a run (``config.json`` with ``finetuned_from``, ``log.jsonl``, checkpoints,
``model.pt``, ``train.json``, the ``done`` marker), so ``bbh evaluate OUT`` and ``bbh.load(OUT)``
work on it; an interrupted fine-tune continues from its checkpoint when run again.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from bbh.experiments.builders import build_net, load_run_data, method_options, size_from_data
from bbh.experiments.config import (
    ConfigError,
    ExperimentConfig,
    KLScheduleConfig,
    MethodConfig,
    config_from_dict,
    config_hash,
    config_to_dict,
    load_config,
    merge_tables,
    parse_override,
    plain_value,
)
from bbh.experiments.runs import MODEL_FORMAT, RunError, RunFolder, load_with_config
from bbh.experiments.train import (
    TrainOutcome,
    lock_unless_foreign,
    resolve_device,
    torch_threads,
    train_in_folder,
)
from bbh.methods import Method
from bbh.training.finetuning import FINETUNE_WARMUP, check_finetune_method, start_from

#: source methods whose trained net is a point estimate to start from (``net`` in their state)
POINT_SOURCES = ("map", "mc_dropout")


@dataclass(frozen=True)
class Source:
    """Where a fine-tune starts: the trained net, the config it came with, and a record."""

    net: nn.Module
    cfg: ExperimentConfig
    record: dict[str, Any]


def finetune_run(
    source: str | os.PathLike[str],
    method: str = "bbh",
    out: str | os.PathLike[str] | None = None,
    *,
    epochs: float | None = None,
    steps: int | None = None,
    overrides: tuple[str, ...] | list[str] = (),
    config: str | None = None,
    scale: str = "paper",
    data_dir: str | None = None,
    device: str | None = None,
    progress: bool = True,
) -> TrainOutcome:
    """Fine-tune the trained net of ``source`` with ``method`` into the run folder ``out``.

    Args:
        source: A finished run folder of a ``map`` or ``mc_dropout`` run (or its ``model.pt``),
            or a file holding a plain ``state_dict`` of the net (then ``config`` is required).
        method: ``bbh``, ``bbb``, ``mc_dropout`` or ``map`` (``bbh.training.FINETUNE_STARTS``).
        out: The run folder to write (default: ``default_out(source, method)``).
        epochs: The budget in epochs (default 1 when neither it nor ``steps`` is given).
        steps: The budget in optimiser steps (instead of ``epochs``).
        overrides: ``KEY=VALUE`` config overrides applied last (``method.options.p=0.1``).
        config: For a ``state_dict`` file: the config naming its net and the data.
        scale: ``config``'s scale (``paper`` or ``cpu``).
        data_dir: The data root (default: the source config's).
        device: ``cpu``, ``cuda`` or ``auto`` (default: the config's ``train.device``).
        progress: Show a progress bar.

    Returns:
        What training did (``TrainOutcome``), whose status is trained, resumed or already
        finished.

    Raises:
        RunError: The source is not a finished run, not a point-estimate run, unreadable, or
            does not fit the net; the method asks for a validation split the data lack; or the
            folder cannot be written.
        ConfigError: A bad override, config or method option.
        ValueError: The method cannot fine-tune (``bbh.training.check_finetune_method``), or
            both ``epochs`` and ``steps`` are given.
    """
    check_finetune_method(method)
    if epochs is not None and steps is not None:
        raise ValueError("give --epochs or --steps, not both")
    src = read_source(source, config=config, scale=scale)
    cfg = finetune_config(src.cfg, method, epochs=epochs, steps=steps, overrides=overrides)
    if data_dir is not None:
        cfg = replace(cfg, data=replace(cfg.data, root=str(data_dir)))
    target = Path(out) if out is not None else Path(default_out(source, method))
    with torch_threads(cfg.train.threads):
        data = load_run_data(cfg)
        cfg = size_from_data(cfg, data)
        torch.manual_seed(cfg.seed)
        try:
            model: Method = start_from(src.net, cfg.method.name, **cfg.method.options)
        except (TypeError, ValueError) as exc:
            raise ConfigError(
                f"method {cfg.method.name!r} with options {cfg.method.options}: {exc}"
            ) from None
        if getattr(model, "temperature_candidates", None) and data.val is None:
            raise RunError(
                f"{method} chooses its temperature on validation data, which this run's data "
                f"have none of (data.validation_size = {cfg.data.validation_size}): give "
                "--set method.options.temperature=1 (or another number), or fine-tune a run "
                "with a validation split"
            )
        options = method_options(cfg)
        base = config_hash(cfg, options, data.fingerprint)
        digest = hashlib.sha256(f"{base}:{src.record['sha256']}".encode()).hexdigest()[:12]
        options.update(plain_value(getattr(model, "resolved_options", {})))
        dev = resolve_device(device or cfg.train.device)
        run = RunFolder.at(target)
        meta = {"finetuned_from": src.record}
        with contextlib.ExitStack() as held:
            held.enter_context(lock_unless_foreign(run))
            return train_in_folder(
                run, cfg, model, dev, digest, options, None, progress, None, data, meta
            )


def default_out(source: str | os.PathLike[str], method: str) -> str:
    """The default run folder of a fine-tune: beside the source, ``<source>-finetune-<method>``.

    Args:
        source: The source run folder or file.
        method: The fine-tuning method.

    Returns:
        The folder's path.
    """
    path = Path(source)
    if path.is_file():
        stem = path.parent.name if path.name == "model.pt" else path.stem
        path = path.parent.parent / stem if path.name == "model.pt" else path.parent / stem
    return f"{path}-finetune-{method}"


def read_source(
    source: str | os.PathLike[str], *, config: str | None = None, scale: str = "paper"
) -> Source:
    """The trained net of ``source`` and the config it trains with.

    Args:
        source: A finished run folder (or its ``model.pt``) of a point-estimate method, or a
            plain ``state_dict`` file of the net.
        config: For a ``state_dict`` file: the config (name or TOML file) naming the net.
        scale: ``config``'s scale.

    Returns:
        The ``Source``, with the net (in eval mode), the config and a record for
        ``config.json``.

    Raises:
        RunError: The source is missing, unfinished, unreadable, of another method, or does
            not fit the config's net.
        ConfigError: ``config`` is bad.
    """
    path = Path(source)
    if path.is_dir():
        status = RunFolder.at(path).status()
        if status != "finished":
            hint = {
                "partial": "training is unfinished: finish it with bbh train CONFIG --out "
                f"{path} --resume",
                "missing": "no such folder",
            }.get(status, "it holds no trained model")
            raise RunError(f"{path} is not a finished bbh run ({hint})")
        if config is not None:
            raise ConfigError("--config applies to a state_dict file, not to a run folder")
        return _from_model(path, RunFolder.at(path).model_file)
    if not path.is_file():
        raise RunError(f"{path}: no such run folder or checkpoint file")
    payload = _load_file(path)
    if isinstance(payload, dict) and payload.get("format") == MODEL_FORMAT:
        if config is not None:
            raise ConfigError("--config applies to a state_dict file, not to a bbh model.pt")
        return _from_model(path, path)
    if config is None:
        raise ConfigError(
            f"{path} is a plain state_dict: give --config CONFIG naming its net and data "
            "(e.g. mnist/map)"
        )
    cfg = load_config(config, scale=scale)
    if not isinstance(cfg, ExperimentConfig):
        raise ConfigError(f"{config}: the toy config cannot fine-tune a net")
    state = payload.get("state_dict", payload) if isinstance(payload, dict) else None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise RunError(f"{path} holds no state_dict of tensors")
    net = build_net(cfg)
    if (
        state
        and all(k.startswith("net.") for k in state)
        and not any(k.startswith("net.") for k in net.state_dict())
    ):  # a MAP method's state_dict: its net's entries
        state = {k[len("net.") :]: v for k, v in state.items()}
    try:
        net.load_state_dict(state)
    except RuntimeError as exc:
        first = str(exc).splitlines()[1].strip() if "\n" in str(exc) else str(exc)
        raise RunError(f"{path} does not fit net {cfg.net.name!r} of {config}: {first}") from None
    record = {"kind": "state_dict", "path": str(path.resolve()), "sha256": _sha256(path),
              "config": cfg.name}  # fmt: skip
    return Source(net.eval(), cfg, record)


def finetune_config(
    cfg: ExperimentConfig,
    method: str,
    *,
    epochs: float | None = None,
    steps: int | None = None,
    overrides: tuple[str, ...] | list[str] = (),
) -> ExperimentConfig:
    """The fine-tune's config: ``cfg`` with ``method`` (no options), a constant KL weight of 1,
    the budget (default one epoch), the rate warmed up over ``FINETUNE_WARMUP`` of the run and
    then ``overrides`` applied.

    Args:
        cfg: The source's config.
        method: The fine-tuning method.
        epochs: The budget in epochs.
        steps: The budget in steps (instead of epochs).
        overrides: ``KEY=VALUE`` overrides, applied last.

    Returns:
        The checked config.

    Raises:
        ConfigError: An override is bad.
    """
    label = f"{method} fine-tuned from {cfg.display_name}"
    train = replace(
        cfg.train,
        epochs=1.0 if epochs is None else float(epochs),
        steps=steps,
        kl_schedule=KLScheduleConfig(),
        lr_warmup=FINETUNE_WARMUP,
    )
    cfg = replace(
        cfg,
        name=f"{cfg.name}+finetune-{method}",
        label=label,
        method=MethodConfig(method, {}),
        train=train,
    )
    raw = config_to_dict(cfg)
    for item in overrides:
        raw = merge_tables(raw, parse_override(item))
    out = config_from_dict(raw, source="bbh finetune")
    if not isinstance(out, ExperimentConfig):  # pragma: no cover - the fields say experiment
        raise ConfigError("bbh finetune: the config is not an experiment config")
    if out.method.name != method:
        raise ConfigError("bbh finetune: choose the method with --method, not method.name")
    return out


def _from_model(path: Path, model_file: Path) -> Source:
    """A ``Source`` from a bbh ``model.pt`` of a point-estimate method."""
    trained, cfg = load_with_config(model_file)
    if cfg.method.name not in POINT_SOURCES:
        raise RunError(
            f"{path} is a {cfg.method.name!r} run; fine-tuning starts from a point-estimate "
            f"net ({', '.join(POINT_SOURCES)} runs, or a state_dict file with --config)"
        )
    net = build_net(cfg)
    net.load_state_dict(trained.net.state_dict())  # the trained values, without dropout hooks
    folder = model_file.parent
    meta = RunFolder.at(folder).meta() if (folder / "config.json").is_file() else {}
    record = {
        "kind": "run",
        "path": str(path.resolve()),
        "sha256": _sha256(model_file),
        "method": cfg.method.name,
        "config": cfg.name,
        "config_hash": meta.get("config_hash"),
    }
    return Source(net.eval(), dataclasses.replace(cfg), record)


def _load_file(path: Path) -> Any:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise RunError(f"{path} is not a readable checkpoint ({type(exc).__name__})") from None


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
