"""From a config to the objects of a run: data, primary net, method, KL schedule, transforms.

The one place that turns a config into code (nets from ``bbh.nets.NETS``, methods from
``bbh.methods``'s registry), so that training, evaluation and ``bbh.load`` build exactly the same
things.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import torch
from torch import Tensor, nn

from bbh.data import (
    DatasetSplits,
    LabeledData,
    cifar_eval_transform,
    cifar_train_augment,
    load_cifar5,
    load_embedded_mnist,
    load_embedded_notmnist,
    load_mnist,
    load_notmnist,
    split_validation,
)
from bbh.data.user_data import fingerprint
from bbh.experiments.config import OWN_DATA, ConfigError, ExperimentConfig, resolved_options
from bbh.experiments.own_data import load_own_splits, num_outputs, sized_config
from bbh.methods import METHODS, Method, build
from bbh.nets import NETS
from bbh.training.schedules import KLSchedule, annealing, constant

#: the OOD set each data set is evaluated against by default
DEFAULT_OOD = {"mnist": "notmnist", "cifar5": "cifar5-ood", "embedded-mnist": "embedded-notmnist"}

InputTransform = Callable[[Tensor], Tensor]


@dataclass(frozen=True)
class RunData:
    """A run's data as the loop and ``evaluate`` want it.

    ``train_x`` is what the training transform takes (CIFAR: uint8 [N, 3, 32, 32]; MNIST: float
    [N, 1, 28, 28] in [0, 1]); ``val``/``test``/``ood`` are float in [0, 1] (pixel space, where
    attacks act) and ``input_transform`` maps them to the model's input (CIFAR: crop and
    standardise; None for MNIST).
    """

    train_x: Tensor
    train_y: Tensor
    val: LabeledData | None
    test: LabeledData
    ood: LabeledData | None
    source: str
    train_transform: Callable[[Tensor, torch.Generator], Tensor] | None
    input_transform: InputTransform | None
    #: the user's own data: a hash of its arrays (``bbh.data.user_data.fingerprint``), which
    #: the run's config hash includes; None for a shipped data set
    fingerprint: str | None = None


def size_from_data(cfg: ExperimentConfig, data: RunData) -> ExperimentConfig:
    """``cfg`` with the net's size options that it leaves out filled from the user's own data
    (``bbh.experiments.own_data.sized_config``); a shipped data set's config is unchanged."""
    if cfg.data.name not in OWN_DATA:
        return cfg
    shape = tuple(data.test.images.shape[1:])
    return sized_config(cfg, NETS[cfg.net.name], shape, num_outputs(data.test))


def build_net(cfg: ExperimentConfig) -> nn.Module:
    """The net that ``cfg.net`` names, built with its options.

    Args:
        cfg: The experiment's config.

    Returns:
        A fresh ``nn.Module``.

    Raises:
        ConfigError: The net rejects its options.
    """
    try:
        return NETS[cfg.net.name](**cfg.net.options)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"net {cfg.net.name!r} with options {cfg.net.options}: {exc}") from None


def build_method(cfg: ExperimentConfig, net: nn.Module | None = None) -> Method:
    """The method of ``cfg`` around a fresh net; bad option values raise ``ConfigError``."""
    net = build_net(cfg) if net is None else net
    try:
        return build(cfg.method.name, net, **cfg.method.options)
    except (TypeError, ValueError) as exc:
        raise ConfigError(
            f"method {cfg.method.name!r} with options {cfg.method.options}: {exc}"
        ) from None


def method_options(cfg: ExperimentConfig) -> dict[str, Any]:
    """The method's options with its defaults filled in (recorded in the run folder)."""
    return resolved_options(METHODS[cfg.method.name], cfg.method.options)


def kl_schedule(cfg: ExperimentConfig, steps_per_epoch: int) -> KLSchedule:
    """The KL weight schedule of ``cfg.train``, with its epochs turned into steps.

    Args:
        cfg: The experiment's config.
        steps_per_epoch: Optimiser steps per epoch.

    Returns:
        A function of the step that gives the KL weight.
    """
    s = cfg.train.kl_schedule
    if s.kind == "annealing":
        return annealing(
            round(s.start_epochs * steps_per_epoch), round(s.length_epochs * steps_per_epoch)
        )
    return constant(s.value)


def load_run_data(cfg: ExperimentConfig, ood: str | None = None) -> RunData:
    """Load the data of ``cfg`` (``ood`` overrides ``cfg.data.ood``; "none" for no OOD set)."""
    d = cfg.data
    ood_name = d.ood if ood is None else (None if ood == "none" else ood)
    if d.name in OWN_DATA:
        splits = load_own_splits(d)
        return replace(_run_data(cfg, splits, ood_name), fingerprint=fingerprint(splits))
    if d.name == "mnist":
        splits = load_mnist(d.root, validation_size=d.validation_size, seed=d.validation_seed)
    elif d.name == "cifar5":
        # the paper held out no CIFAR-5 images, and the JPEG copy's training images come sorted
        # by class (its first 2,500 are all airplanes): without a seed the split is random
        seed = 0 if d.validation_seed is None else d.validation_seed
        splits = load_cifar5(d.root, validation_size=d.validation_size, seed=seed)
    else:
        splits = load_embedded_mnist()
        train, val = split_validation(splits.train, d.validation_size, d.validation_seed)
        splits = replace(splits, train=train, val=val)
    return _run_data(cfg, splits, ood_name)


def _run_data(cfg: ExperimentConfig, splits: DatasetSplits, ood_name: str | None) -> RunData:
    root = cfg.data.root
    if ood_name is None:
        ood = None
    elif ood_name == "notmnist":
        ood = load_notmnist(root)
    elif ood_name == "embedded-notmnist":
        ood = load_embedded_notmnist()
    elif ood_name == "cifar5-ood":
        if splits.ood is None:
            raise ConfigError(
                f"OOD set 'cifar5-ood' needs data.name = 'cifar5', not {cfg.data.name!r}"
            )
        ood = splits.ood
    else:
        allowed = ["notmnist", "cifar5-ood", "embedded-notmnist", "none"]
        raise ConfigError(f"unknown OOD set {ood_name!r}; allowed: {allowed}")
    cifar = cfg.data.name == "cifar5"
    if ood is not None and ood.images.shape[1:] != splits.test.images.shape[1:]:
        raise ConfigError(
            f"OOD set {ood_name!r} has images {list(ood.images.shape[1:])}, the test set "
            f"{list(splits.test.images.shape[1:])}"
        )
    train_transform: Callable[[Tensor, torch.Generator], Tensor] | None = None
    if cfg.data.augment == "cifar":
        train_transform = cifar_train_augment
    input_transform = _cifar_input if cifar else None
    train = splits.train if cifar else splits.train.to_float()
    if cifar and cfg.data.augment == "none":
        train_transform = _cifar_train_plain
    return RunData(
        train_x=train.images,
        train_y=train.labels,
        val=None if splits.val is None else splits.val.to_float(),
        test=splits.test.to_float(),
        ood=None if ood is None else ood.to_float(),
        source=splits.source,
        train_transform=train_transform,
        input_transform=input_transform,
    )


def _cifar_input(x: Tensor) -> Tensor:
    """CIFAR pixels in [0, 1] -> the model's input: central 24x24 crop, per-image standardisation
    (on the 0..255 scale, exactly as for uint8 images)."""
    return cifar_eval_transform(x * 255.0)


def _cifar_train_plain(x: Tensor, generator: torch.Generator) -> Tensor:
    return cifar_eval_transform(x)
