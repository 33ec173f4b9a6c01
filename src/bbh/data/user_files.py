"""Readers for a user's own data files: ``.npz``, a ``.npy`` pair, ``.csv``, an image folder.

``read_user_file`` returns ``(x, y, class_names)`` as numpy arrays: ``x [N, ...]`` as stored
(a CSV gives float ``[N, F]``, an image folder uint8 ``[N, C, H, W]``), ``y [N]`` or ``[N, D]``
numbers, or strings for a CSV target column of class names; ``class_names`` comes only from an
image folder (its sorted sub-folders). Every error is a one-line
``bbh.data.errors.DataError`` that starts with the config field and the file
(``data.train = x.csv: ...``).
"""

from __future__ import annotations

import csv
import os
import zipfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from bbh.data.errors import DataError
from bbh.data.readers import read_image_folder

PathLike = str | os.PathLike[str]

#: file name endings read as arrays; a folder is an image folder
ARRAY_SUFFIXES = (".npz", ".npy", ".csv")


def read_user_file(
    path: PathLike,
    *,
    field: str,
    targets: PathLike | None = None,
    x_key: str = "x",
    y_key: str = "y",
    columns: Sequence[str] = (),
    target: str | None = None,
    image_mode: str = "RGB",
    numeric_target: bool = False,
) -> tuple[np.ndarray, np.ndarray, tuple[str, ...] | None]:
    """Read one split of the user's data from ``path`` (see the module docstring).

    ``field`` names the config key in errors (``data.train``). ``.npz``: arrays ``x_key`` and
    ``y_key``. ``.npy``: the inputs; ``targets`` is the ``.npy`` of the targets. ``.csv``: a header
    row, ``target`` the target column, ``columns`` the feature columns (default: all others).
    A folder: ``<path>/<class>/<image>.png|jpg``, read in Pillow mode ``image_mode``.
    ``numeric_target``: a CSV target value that is not a number is an error (regression).
    """
    path = Path(path)
    where = f"{field} = {path}"
    if not path.exists():
        raise DataError(f"{where}: no such file or folder")
    if path.is_dir():
        if targets is not None:
            raise DataError(f"{where}: an image folder holds its labels; drop {field}_targets")
        return _read_folder(path, where, image_mode)
    suffix = path.suffix.lower()
    if suffix not in ARRAY_SUFFIXES:
        raise DataError(
            f"{where}: unknown file type {suffix or '(no extension)'!r}; expected one of "
            f"{list(ARRAY_SUFFIXES)} or an image folder"
        )
    if targets is not None and suffix != ".npy":
        raise DataError(f"{where}: {field}_targets applies only to a .npy file of inputs")
    if suffix == ".npz":
        x, y = _read_npz(path, where, x_key, y_key)
    elif suffix == ".npy":
        if targets is None:
            raise DataError(f"{where}: a .npy file holds the inputs only; set {field}_targets")
        x = _load_npy(path, where)
        y = _load_npy(Path(targets), f"{field}_targets = {targets}")
    else:
        if target is None:
            raise DataError(f"{where}: a CSV file needs data.target, the target column's name")
        x, y = _read_csv(path, where, columns, target, numeric_target)
    return x, y, None


# ------------------------------------------------------------------------------ helpers


def _read_folder(
    path: Path, where: str, mode: str
) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    classes = sorted(p.name for p in path.iterdir() if p.is_dir())
    if not classes:
        raise DataError(f"{where}: an image folder needs one sub-folder per class, found none")
    for name in classes:
        if not any(f.suffix.lower() in (".png", ".jpg", ".jpeg") for f in (path / name).iterdir()):
            raise DataError(f"{where}: the class folder {name!r} holds no .png/.jpg images")
    try:
        x, y, names = read_image_folder(path, class_names=classes, mode=mode)
    except DataError as exc:
        raise DataError(f"{where}: {exc}") from None
    return x, y, names


def _read_npz(path: Path, where: str, x_key: str, y_key: str) -> tuple[np.ndarray, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as npz:
            keys = list(npz.files)
            missing = [k for k in (x_key, y_key) if k not in keys]
            if missing:
                raise DataError(
                    f"{where}: no array {missing[0]!r} (data.x_key / data.y_key); the file holds "
                    f"{keys}"
                )
            return npz[x_key], npz[y_key]
    except DataError:
        raise
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise DataError(f"{where}: not a readable .npz file ({_short(exc)})") from None


def _load_npy(path: Path, where: str) -> np.ndarray:
    if not path.is_file():
        raise DataError(f"{where}: no such file")
    try:
        array = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        raise DataError(f"{where}: not a readable .npy file ({_short(exc)})") from None
    if not isinstance(array, np.ndarray):
        raise DataError(f"{where}: expected one array, got {type(array).__name__}")
    return array


def _read_csv(
    path: Path, where: str, columns: Sequence[str], target: str, numeric_target: bool
) -> tuple[np.ndarray, np.ndarray]:
    """Feature columns as float64 ``[N, F]``; the target column as float64 ``[N]`` when every
    value is a number, else as strings (class names)."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            rows = list(csv.reader(handle))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"{where}: not a readable CSV file ({_short(exc)})") from None
    if not rows or not any(cell.strip() for cell in rows[0]):
        raise DataError(f"{where}: empty; a CSV file needs a header row of column names")
    header = [cell.strip() for cell in rows[0]]
    body = [(i + 2, row) for i, row in enumerate(rows[1:]) if any(cell.strip() for cell in row)]
    if not body:
        raise DataError(f"{where}: no data rows under the header")
    features = list(columns) or [c for c in header if c != target]
    for name, key in [(target, "data.target"), *((c, "data.columns") for c in features)]:
        if name not in header:
            raise DataError(f"{where}: column {name!r} ({key}) not found; the header has {header}")
    if target in features:
        raise DataError(f"{where}: column {target!r} is both data.target and in data.columns")
    if not features:
        raise DataError(f"{where}: no feature columns besides the target {target!r}")
    index = [header.index(c) for c in features]
    t_index = header.index(target)
    x = np.empty((len(body), len(features)), dtype=np.float64)
    labels: list[str] = []
    for r, (line, row) in enumerate(body):
        if len(row) != len(header):
            raise DataError(
                f"{where}: row {line} has {len(row)} values, the header {len(header)} columns"
            )
        for c, (i, name) in enumerate(zip(index, features, strict=True)):
            x[r, c] = _number(row[i], where, line, name)
        if numeric_target:
            _number(row[t_index], where, line, target)
        labels.append(row[t_index].strip())
    try:
        y = np.asarray([float(v) for v in labels], dtype=np.float64)
    except ValueError:
        y = np.asarray(labels, dtype=str)
    return x, y


def _number(text: str, where: str, line: int, column: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise DataError(
            f"{where}: row {line}, column {column!r}: {text!r} is not a number"
        ) from None


def _short(exc: BaseException) -> str:
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__
