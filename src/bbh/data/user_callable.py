"""A user's data from their own Python function: ``data.source = "package.module:function"``
(imported from ``sys.path``) or ``"path/to/file.py:function"`` (a file, run as a module).

The function takes no arguments and returns one of:

- ``(x_train, y_train, x_test, y_test)``: arrays or tensors;
- a dict with the keys ``x_train``, ``y_train``, ``x_test``, ``y_test``;
- ``(train, test)`` or a dict ``{"train": ..., "test": ...}`` where each split is a map-style
  ``torch.utils.data.Dataset`` of ``(x, y)`` items or an ``(x, y)`` pair of arrays.

The test split may be left out (``x_test``/``y_test`` or ``test`` missing, or ``None``) when the
config holds some training examples out instead (``data.test_size``). Datasets are read item by
item into tensors, up to ``MAX_DATASET_BYTES``.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import sys
import types
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from bbh.data.errors import DataError

#: the largest Dataset read into memory (a bigger one should be returned as arrays or tensors)
MAX_DATASET_BYTES = 4 << 30

Pair = tuple[Any, Any]


def load_user_function(spec: str, *, field: str = "data.source") -> tuple[Pair, Pair | None]:
    """Import ``spec`` (``package.module:function`` or ``file.py:function``), call it, return
    ``((x, y) train, (x, y) test or None)`` with each part an array or tensor; any problem is a
    one-line ``DataError`` naming ``field`` and ``spec``."""
    where = f"{field} = {spec!r}"
    func = _import(spec, where)
    try:
        result = func()
    except Exception as exc:
        raise DataError(f"{where}: the function raised {type(exc).__name__}: {exc}") from exc
    train, test = _splits(result, where)
    return _pair(train, f"{where} (train)"), None if test is None else _pair(
        test, f"{where} (test)"
    )


# ------------------------------------------------------------------------------ helpers


def _import(spec: str, where: str) -> Any:
    module_name, sep, attr = spec.rpartition(":")
    if not sep or not module_name or not attr:
        raise DataError(f"{where}: expected 'package.module:function' or 'file.py:function'")
    try:
        if module_name.endswith(".py"):
            module = _from_file(Path(module_name), where)
        else:
            module = importlib.import_module(module_name)
    except DataError:
        raise
    except Exception as exc:
        raise DataError(
            f"{where}: cannot import module {module_name!r} ({type(exc).__name__}: {exc})"
        ) from exc
    func: Any = module
    for part in attr.split("."):
        if not hasattr(func, part):
            raise DataError(f"{where}: module {module_name!r} has no attribute {attr!r}")
        func = getattr(func, part)
    if not callable(func):
        raise DataError(f"{where}: {attr!r} is a {type(func).__name__}, not a function")
    return func


def _from_file(path: Path, where: str) -> types.ModuleType:
    """The module of a ``.py`` file (run once per file and content)."""
    if not path.is_file():
        raise DataError(f"{where}: no such file {path}")
    digest = hashlib.sha256(f"{path.resolve()}".encode() + path.read_bytes()).hexdigest()[:12]
    name = f"bbh_user_data_{path.stem}_{digest}"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module


def _splits(result: Any, where: str) -> tuple[Any, Any]:
    expected = (
        "expected (x_train, y_train, x_test, y_test), a dict with those keys, or (train, test) "
        "Datasets"
    )
    if isinstance(result, Mapping):
        if "x_train" in result or "y_train" in result:
            missing = [k for k in ("x_train", "y_train") if k not in result]
            if missing:
                raise DataError(f"{where}: the returned dict lacks {missing}; {expected}")
            test = None
            if result.get("x_test") is not None or result.get("y_test") is not None:
                test = (result.get("x_test"), result.get("y_test"))
            return (result["x_train"], result["y_train"]), test
        if "train" in result:
            return result["train"], result.get("test")
        raise DataError(
            f"{where}: the returned dict has keys {sorted(map(str, result))}; {expected}"
        )
    if isinstance(result, Dataset):
        return result, None
    if isinstance(result, Sequence) and not isinstance(result, str):
        if len(result) == 4:
            test = None if result[2] is None and result[3] is None else (result[2], result[3])
            return (result[0], result[1]), test
        if len(result) == 2 and all(_is_split(r) for r in result):
            return result[0], result[1]
        if len(result) == 2 and _is_split(result[0]) and result[1] is None:
            return result[0], None
        raise DataError(f"{where}: returned {len(result)} values; {expected}")
    raise DataError(f"{where}: returned a {type(result).__name__}; {expected}")


def _is_split(value: Any) -> bool:
    return isinstance(value, Dataset) or (
        isinstance(value, Sequence) and not isinstance(value, str) and len(value) == 2
    )


def _pair(split: Any, where: str) -> Pair:
    """``(x, y)`` from a pair or a Dataset; a Dataset's items are stacked."""
    if isinstance(split, Dataset):
        return _materialise(split, where)
    if isinstance(split, Sequence) and not isinstance(split, str) and len(split) == 2:
        x, y = split
        if x is None or y is None:
            raise DataError(f"{where}: inputs and targets must both be given")
        return x, y
    raise DataError(f"{where}: expected a Dataset or an (x, y) pair, got {type(split).__name__}")


def _materialise(dataset: Dataset[Any], where: str) -> Pair:
    try:
        n = len(dataset)  # type: ignore[arg-type]
    except TypeError:
        raise DataError(
            f"{where}: the Dataset has no len(); return a map-style Dataset or arrays"
        ) from None
    if n == 0:
        raise DataError(f"{where}: the Dataset is empty")
    xs: list[torch.Tensor] = []
    ys: list[torch.Tensor] = []
    for i in range(n):
        item = dataset[i]
        if not isinstance(item, (tuple, list)) or len(item) != 2:
            raise DataError(
                f"{where}: item {i} of the Dataset is a {type(item).__name__}, not an (x, y) pair"
            )
        try:
            x, y = (torch.as_tensor(np.asarray(v)) for v in item)
        except (TypeError, ValueError) as exc:
            raise DataError(f"{where}: item {i} is not numeric ({exc})") from None
        if i == 0:
            size = (x.element_size() * x.numel() + y.element_size() * y.numel()) * n
            if size > MAX_DATASET_BYTES:
                raise DataError(
                    f"{where}: the Dataset would take {size / 2**30:.1f} GiB in memory (limit "
                    f"{MAX_DATASET_BYTES / 2**30:.0f} GiB); return arrays or tensors instead"
                )
        elif x.shape != xs[0].shape or y.shape != ys[0].shape:
            raise DataError(
                f"{where}: item {i} has x {list(x.shape)}, y {list(y.shape)}; item 0 had "
                f"x {list(xs[0].shape)}, y {list(ys[0].shape)} (ragged items)"
            )
        xs.append(x)
        ys.append(y)
    return torch.stack(xs), torch.stack(ys)
