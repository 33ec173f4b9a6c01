"""A user's own data as ``bbh.data.datasets.DatasetSplits``: checked, split, fingerprinted.

``user_splits`` takes the arrays read by ``bbh.data.user_files`` or returned by the
user's function (``bbh.data.user_callable``) and checks them the way the shipped sets are
checked: inputs ``[N, ...]`` of numbers (float64 becomes float32, ``[N]`` becomes ``[N, 1]``,
uint8 stays pixels that become [0, 1] floats, integer token ids stay integers), targets of the
same length, the test inputs shaped like the training inputs, and

- ``task="classification"``: labels ``[N]`` of integers ``0..C-1`` (or class-name strings,
  numbered in sorted order); ``C`` is the largest label + 1 (or the number of names);
- ``task="regression"``: finite float32 targets ``[N]`` or ``[N, D]``, no class names.

Then it holds out ``validation_size`` training examples (and ``test_size`` when there is no test
split) at random. ``fingerprint`` hashes the arrays, so a run folder never mixes data.
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np
import torch
from torch import Tensor

from bbh.data.datasets import DatasetSplits, LabeledData, split_validation
from bbh.data.errors import DataError

TASKS = ("classification", "regression")


def user_splits(
    train: tuple[Any, Any],
    test: tuple[Any, Any] | None,
    *,
    task: str,
    train_where: str,
    test_where: str,
    class_names: tuple[str, ...] | None = None,
    validation_size: int = 0,
    validation_seed: int = 0,
    test_size: int = 0,
    source: str = "",
    name: str = "user",
) -> DatasetSplits:
    """Checked splits of the user's ``(x, y)`` pairs; every error names ``train_where`` or
    ``test_where`` (the config field and file). See the module docstring."""
    if task not in TASKS:
        raise ValueError(f"task must be one of {list(TASKS)}, got {task!r}")
    x_train = _inputs(train[0], train_where)
    x_test = None if test is None else _inputs(test[0], test_where)
    if x_test is not None and (
        x_test.shape[1:] != x_train.shape[1:]
        or x_test.is_floating_point() != x_train.is_floating_point()
    ):
        raise DataError(
            f"{test_where}: inputs of {x_test.dtype} {list(x_test.shape[1:])} per example, the "
            f"training data's {x_train.dtype} {list(x_train.shape[1:])}"
        )
    y_train_raw = _targets(train[1], len(x_train), train_where)
    y_test_raw = None if test is None else _targets(test[1], len(x_test), test_where)  # type: ignore[arg-type]
    if task == "classification":
        y_train, y_test, names = _labels(
            y_train_raw, y_test_raw, class_names, train_where, test_where
        )
    else:
        y_train = _real(y_train_raw, train_where)
        y_test = None if y_test_raw is None else _real(y_test_raw, test_where)
        if y_test is not None and y_test.shape[1:] != y_train.shape[1:]:
            raise DataError(
                f"{test_where}: targets of shape {list(y_test.shape[1:])} per example, the "
                f"training data's {list(y_train.shape[1:])}"
            )
        names = ()
    train_data = LabeledData(x_train, y_train, names)
    if x_test is None or y_test is None:
        if test_size <= 0:
            raise DataError(f"{train_where}: no test data; name a test file or set data.test_size")
        train_data, held = _split(train_data, test_size, validation_seed, train_where, "test_size")
        assert held is not None
        test_data = held
    else:
        test_data = LabeledData(x_test, y_test, names)
    train_data, val = _split(
        train_data, validation_size, validation_seed, train_where, "validation_size"
    )
    return DatasetSplits(name, train_data, test_data, val, None, source=source)


def fingerprint(splits: DatasetSplits) -> str:
    """A short SHA-256 of every split's arrays, dtypes, shapes and class names."""
    h = hashlib.sha256()
    for part in (splits.train, splits.val, splits.test):
        if part is None:
            h.update(b"none")
            continue
        for t in (part.images, part.labels):
            h.update(f"{t.dtype}{list(t.shape)}".encode())
            h.update(t.contiguous().numpy().tobytes())
        h.update(repr(part.class_names).encode())
    return h.hexdigest()[:16]


# ------------------------------------------------------------------------------ helpers


def _array(value: Any, where: str, what: str) -> np.ndarray:
    if isinstance(value, Tensor):
        value = value.detach().cpu().numpy()
    try:
        array = np.asarray(value)
    except ValueError as exc:  # numpy >= 1.24 refuses ragged nested lists
        raise DataError(f"{where}: {what} are ragged (items of different shapes: {exc})") from None
    if array.dtype == object:
        raise DataError(f"{where}: {what} are ragged or not numeric (an object array)")
    return array


def _inputs(value: Any, where: str) -> Tensor:
    x = _array(value, where, "inputs")
    if x.ndim == 0 or len(x) == 0:
        raise DataError(f"{where}: no inputs (shape {list(x.shape)})")
    if x.dtype.kind not in "biuf":
        raise DataError(f"{where}: inputs must be numbers, got {x.dtype}")
    if x.dtype.kind == "f":
        x = x.astype(np.float32)
        bad = np.flatnonzero(~np.isfinite(x.reshape(len(x), -1)).all(axis=1))
        if bad.size:
            raise DataError(f"{where}: non-finite inputs (NaN or inf), first in example {bad[0]}")
    elif x.dtype.kind == "b":
        x = x.astype(np.float32)
    elif x.dtype != np.uint8:
        x = x.astype(np.int64)  # token ids, category codes
    if x.ndim == 1:
        x = x[:, None]
    return torch.from_numpy(np.ascontiguousarray(x))


def _targets(value: Any, n: int, where: str) -> np.ndarray:
    y = _array(value, where, "targets")
    if y.ndim == 0:
        raise DataError(f"{where}: targets must be [N] or [N, D], got a scalar")
    if len(y) != n:
        raise DataError(f"{where}: {n} inputs but {len(y)} targets")
    return y


def _labels(
    y_train: np.ndarray,
    y_test: np.ndarray | None,
    class_names: tuple[str, ...] | None,
    train_where: str,
    test_where: str,
) -> tuple[Tensor, Tensor | None, tuple[str, ...]]:
    if y_train.dtype.kind in "US":
        names = class_names or tuple(sorted(set(y_train.tolist())))
        lookup = {c: i for i, c in enumerate(names)}
        out = [_named(y, lookup, w) for y, w in ((y_train, train_where), (y_test, test_where))]
        return out[0], out[1], names  # type: ignore[return-value]
    train = _integers(y_train, train_where)
    test = None if y_test is None else _integers(y_test, test_where)
    top = max(int(train.max()), -1 if test is None or not len(test) else int(test.max()))
    names = class_names or tuple(str(i) for i in range(top + 1))
    if top >= len(names):
        raise DataError(f"{test_where}: label {top} outside the {len(names)} classes {list(names)}")
    return train, test, names


def _named(y: np.ndarray | None, lookup: dict[str, int], where: str) -> Tensor | None:
    if y is None:
        return None
    if y.ndim != 1:
        raise DataError(f"{where}: class labels must be [N], got shape {list(y.shape)}")
    unknown = sorted(set(y.tolist()) - set(lookup))
    if unknown:
        raise DataError(
            f"{where}: class name(s) {unknown[:5]} not among the training classes {list(lookup)}"
        )
    return torch.tensor([lookup[v] for v in y.tolist()], dtype=torch.int64)


def _integers(y: np.ndarray, where: str) -> Tensor:
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1:
        raise DataError(
            f"{where}: classification labels must be [N], got shape {list(y.shape)} "
            "(set data.task = 'regression' for vector targets)"
        )
    if y.dtype.kind == "f":
        bad = np.flatnonzero(~np.isfinite(y) | (y != np.round(y)))
        if bad.size:
            raise DataError(
                f"{where}: label {y[bad[0]].item()!r} at index {bad[0]} is not an integer; "
                "classification needs class indices (set data.task = 'regression' for real "
                "targets)"
            )
    elif y.dtype.kind not in "biu":
        raise DataError(f"{where}: labels must be integers or class names, got {y.dtype}")
    labels = y.astype(np.int64)
    if labels.size and labels.min() < 0:
        first = int(np.flatnonzero(labels < 0)[0])
        raise DataError(f"{where}: negative label {labels[first]} at index {first}")
    return torch.from_numpy(np.ascontiguousarray(labels))


def _real(y: np.ndarray, where: str) -> Tensor:
    if y.dtype.kind not in "biuf":
        raise DataError(f"{where}: regression targets must be numbers, got {y.dtype}")
    if y.ndim > 2:
        raise DataError(f"{where}: regression targets must be [N] or [N, D], got {list(y.shape)}")
    y = y.astype(np.float32)
    bad = np.flatnonzero(~np.isfinite(y.reshape(len(y), -1)).all(axis=1))
    if bad.size:
        raise DataError(f"{where}: non-finite target (NaN or inf) at index {bad[0]}")
    return torch.from_numpy(np.ascontiguousarray(y))


def _split(
    data: LabeledData, size: int, seed: int, where: str, key: str
) -> tuple[LabeledData, LabeledData | None]:
    if size and size >= len(data):
        raise DataError(
            f"{where}: data.{key} = {size} must be smaller than the {len(data)} training examples"
        )
    return split_validation(data, size, seed)
