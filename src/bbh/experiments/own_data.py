"""The user's own data in a run: ``[data] name = "files"`` or ``"callable"`` (docs/own_data.md).

``load_own_splits`` reads the files (``bbh.data.user_files``) or calls the function
(``bbh.data.user_callable``) and checks and splits the result (``bbh.data.user_data``).
``sized_config`` fills the net's size options that the config leaves out (``in_features``,
``in_channels``, ``out_features``, ``num_classes``) from the data, so that ``[net] name = "mlp"``
with only ``hidden = [64]`` fits any table of features.
"""

from __future__ import annotations

import inspect
import math
from dataclasses import replace
from typing import Any

from bbh.data import DatasetSplits, LabeledData
from bbh.data.user_callable import load_user_function
from bbh.data.user_data import user_splits
from bbh.data.user_files import read_user_file
from bbh.experiments.config import ConfigError, DataConfig, ExperimentConfig

#: the seed of the random validation / test split when ``data.validation_seed`` is None (the
#: files' order may be sorted by class, so the first examples are no fair sample)
DEFAULT_SPLIT_SEED = 0


def load_own_splits(d: DataConfig) -> DatasetSplits:
    """The splits of ``d`` (``d.name`` is ``files`` or ``callable``); errors name the field."""
    seed = DEFAULT_SPLIT_SEED if d.validation_seed is None else d.validation_seed
    regression = d.task == "regression"
    names: tuple[str, ...] | None = None
    if d.name == "files":
        assert d.train is not None
        read: dict[str, Any] = {
            "x_key": d.x_key,
            "y_key": d.y_key,
            "columns": d.columns,
            "target": d.target,
            "image_mode": d.image_mode,
            "numeric_target": regression,
        }
        x, y, names = read_user_file(d.train, field="data.train", targets=d.train_targets, **read)
        train: tuple[Any, Any] = (x, y)
        test: tuple[Any, Any] | None = None
        if d.test is not None:
            tx, ty, test_names = read_user_file(
                d.test, field="data.test", targets=d.test_targets, **read
            )
            if names is not None and test_names != names:
                raise ConfigError(
                    f"data.test = {d.test}: class folders {list(test_names or ())}, the "
                    f"training folder's {list(names)}"
                )
            test = (tx, ty)
        train_where, test_where = f"data.train = {d.train}", f"data.test = {d.test}"
        source = f"own files: {d.train}" + (f", {d.test}" if d.test else "")
    else:
        assert d.source is not None
        train, test = load_user_function(d.source)
        train_where = f"data.source = {d.source!r} (train)"
        test_where = f"data.source = {d.source!r} (test)"
        source = f"own function: {d.source}"
    return user_splits(
        train,
        test,
        task=d.task,
        train_where=train_where,
        test_where=test_where,
        class_names=names,
        validation_size=d.validation_size,
        validation_seed=seed,
        test_size=d.test_size,
        source=source,
        name=d.name,
    )


def num_outputs(data: LabeledData) -> int:
    """Classes, or the regression target's dimension."""
    if data.labels.is_floating_point():
        return 1 if data.labels.ndim == 1 else int(data.labels.shape[1])
    return data.num_classes


def sized_config(
    cfg: ExperimentConfig, factory: Any, input_shape: tuple[int, ...], outputs: int
) -> ExperimentConfig:
    """``cfg`` with the net's size options filled from the data where the config leaves them
    out; one that contradicts the data is a ``ConfigError``.

    ``input_shape`` is one example's (``x.shape[1:]``), ``outputs`` the classes (or the target
    dimension). Options: ``in_features`` (all input values), ``in_channels`` (``x.shape[1]``),
    ``out_features`` and ``num_classes``."""
    sizes = {
        "in_features": math.prod(input_shape),
        "in_channels": input_shape[0] if len(input_shape) >= 3 else None,
        "out_features": outputs,
        "num_classes": outputs,
    }
    params = inspect.signature(factory).parameters
    options = dict(cfg.net.options)
    for key, value in sizes.items():
        if key not in params or value is None:
            continue
        if key not in options:
            options[key] = value
            continue
        given = options[key]
        too_small = key in ("out_features", "num_classes") and given < value
        if too_small or (key.startswith("in_") and given != value):
            what = (
                f"inputs of shape {list(input_shape)}"
                if key.startswith("in_")
                else f"{value} outputs (classes or target dimensions)"
            )
            raise ConfigError(f"net.options.{key} = {given} does not fit the data ({what})")
    return (
        cfg if options == cfg.net.options else replace(cfg, net=replace(cfg.net, options=options))
    )
