"""Readers for the on-disk formats, all in numpy (no torchvision).

- IDX (the MNIST / notMNIST format), raw or gzip-compressed: ``read_idx``,
  ``read_idx_pair``.
- The canonical CIFAR-10 python batches, from ``cifar-10-batches-py/`` or straight from
  ``cifar-10-python.tar.gz``: ``read_cifar10_python``.
- Image folders (``<split>/<class>/<image>.{jpg,png}``), from a folder or straight from a
  ``.tar``/``.tar.gz`` archive of one: ``read_image_folder``, ``read_image_folders``.

Images come back as ``uint8`` arrays in NCHW layout ``[N, C, H, W]``, labels as ``int64 [N]``.
Every malformed input raises ``bbh.data.errors.DataError`` naming the file.
"""

from __future__ import annotations

import gzip
import io
import os
import pickle
import tarfile
import zlib
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path, PurePosixPath
from typing import Any, ClassVar

import numpy as np

from bbh.data.errors import DataError

PathLike = str | os.PathLike[str]

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")

# IDX type codes (third magic byte) -> big-endian numpy dtype.
_IDX_DTYPES: dict[int, np.dtype[Any]] = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


# --------------------------------------------------------------------------------------- IDX


def read_idx(path: PathLike) -> np.ndarray:
    """Read an IDX file (raw, or gzip-compressed whatever its name) into a native-endian array.

    Args:
        path: The IDX file, raw or gzip-compressed.

    Returns:
        The array, of the shape and dtype the header gives.

    Raises:
        DataError: The file is missing, has a bad magic number, is truncated, or is a corrupt
            gzip stream (the message names ``path``).
    """
    path = Path(path)
    data = _read_maybe_gzip(path)
    if len(data) < 4:
        raise DataError(f"{path}: too short for an IDX file ({len(data)} bytes)")
    zero, code, ndim = int.from_bytes(data[:2], "big"), data[2], data[3]
    if zero != 0 or code not in _IDX_DTYPES or ndim == 0:
        raise DataError(
            f"{path}: not an IDX file (magic number 0x{data[:4].hex()}; expected 0x0000 then a "
            "type code 08/09/0b/0c/0d/0e and the number of dimensions)"
        )
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DataError(f"{path}: truncated IDX header")
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    dtype = _IDX_DTYPES[code]
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(data) - header != expected:
        raise DataError(
            f"{path}: IDX header promises shape {shape} ({expected} bytes of data) but the file "
            f"has {len(data) - header}; the file is truncated or corrupt"
        )
    array = np.frombuffer(data, dtype=dtype, offset=header).reshape(shape)
    return array.astype(dtype.newbyteorder("="), copy=True)


def read_idx_pair(
    images_path: PathLike, labels_path: PathLike, *, num_classes: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Read an IDX image file ``[N, H, W]`` and its label file ``[N]``.

    Args:
        images_path: The IDX file of uint8 images ``[N, H, W]``.
        labels_path: The IDX file of labels ``[N]``.
        num_classes: If given, every label must lie in ``[0, num_classes)``.

    Returns:
        The pair ``(images, labels)``, uint8 ``[N, 1, H, W]`` and int64 ``[N]``.

    Raises:
        DataError: A file is unreadable (see ``read_idx``), the images are not uint8
            ``[N, H, W]``, the labels not ``[N]``, the counts differ, or a label lies outside
            ``[0, num_classes)``.
    """
    images = read_idx(images_path)
    labels = read_idx(labels_path)
    if images.ndim != 3 or images.dtype != np.uint8:
        raise DataError(
            f"{images_path}: expected uint8 images of shape [N, H, W], got {images.dtype} "
            f"{list(images.shape)}"
        )
    if labels.ndim != 1:
        raise DataError(f"{labels_path}: expected labels of shape [N], got {list(labels.shape)}")
    if len(images) != len(labels):
        raise DataError(
            f"{images_path} has {len(images)} images but {labels_path} has {len(labels)} labels"
        )
    labels = labels.astype(np.int64)
    if num_classes is not None and labels.size:
        bad = np.flatnonzero((labels < 0) | (labels >= num_classes))
        if bad.size:
            raise DataError(
                f"{labels_path}: {bad.size} label(s) outside the {num_classes} classes "
                f"0-{num_classes - 1}, the first {int(labels[bad[0]])} at index {int(bad[0])}; "
                "the file is corrupt or not this data set's"
            )
    return images[:, None], labels


def _read_maybe_gzip(path: Path) -> bytes:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    if raw[:2] != b"\x1f\x8b":
        return raw
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as exc:
        raise DataError(f"{path}: corrupt or truncated gzip data ({exc})") from exc


# ----------------------------------------------------------------------- CIFAR-10 python


CIFAR10_TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
CIFAR10_TEST_BATCH = "test_batch"


def read_cifar10_python(path: PathLike) -> dict[str, np.ndarray]:
    """Read the canonical CIFAR-10 python version from its folder or its ``.tar.gz``.

    Args:
        path: The folder ``cifar-10-batches-py/`` or the archive ``cifar-10-python.tar.gz``.

    Returns:
        A dict of four arrays, ``train_images`` uint8 ``[50000, 3, 32, 32]``,
        ``train_labels`` int64 ``[50000]``, ``test_images`` uint8 ``[10000, 3, 32, 32]`` and
        ``test_labels`` int64 ``[10000]``.

    Raises:
        DataError: A batch file is missing, the archive is corrupt, or a batch is not a
            readable CIFAR batch.
    """
    path = Path(path)
    wanted = (*CIFAR10_TRAIN_BATCHES, CIFAR10_TEST_BATCH)
    blobs: dict[str, bytes] = {}
    if path.is_dir():
        for name in wanted:
            f = path / name
            if not f.is_file():
                raise DataError(f"{path}: missing the CIFAR-10 batch file {name}")
            blobs[name] = f.read_bytes()
    else:
        for member, data in _iter_tar_files(path):
            name = PurePosixPath(member).name
            if name in wanted:
                blobs[name] = data
        missing = [n for n in wanted if n not in blobs]
        if missing:
            raise DataError(f"{path}: the archive lacks the CIFAR-10 batch files {missing}")
    train = [read_cifar_batch(blobs[n], f"{path}/{n}") for n in CIFAR10_TRAIN_BATCHES]
    test = read_cifar_batch(blobs[CIFAR10_TEST_BATCH], f"{path}/{CIFAR10_TEST_BATCH}")
    return {
        "train_images": np.concatenate([b[0] for b in train]),
        "train_labels": np.concatenate([b[1] for b in train]),
        "test_images": test[0],
        "test_labels": test[1],
    }


def read_cifar_batch(data: bytes, name: str = "<batch>") -> tuple[np.ndarray, np.ndarray]:
    """Decode one pickled CIFAR batch: ``(images uint8 [N, 3, 32, 32], labels int64 [N])``.

    Unpickling is restricted to numpy arrays and builtins, so a hostile file cannot run code.
    """
    try:
        batch = _SafeUnpickler(io.BytesIO(data), encoding="bytes").load()
    except Exception as exc:
        raise DataError(f"{name}: not a readable CIFAR python batch ({exc})") from exc
    if not isinstance(batch, dict):
        raise DataError(f"{name}: expected a dict, got {type(batch).__name__}")
    batch = {k.decode() if isinstance(k, bytes) else k: v for k, v in batch.items()}
    labels_obj = batch.get("labels", batch.get("fine_labels"))
    if "data" not in batch or labels_obj is None:
        raise DataError(f"{name}: the batch has no 'data' or 'labels' entry")
    images = np.asarray(batch["data"])
    labels = np.asarray(labels_obj, dtype=np.int64)
    if images.dtype != np.uint8 or images.ndim != 2 or images.shape[1] != 3 * 32 * 32:
        raise DataError(f"{name}: expected uint8 data [N, 3072], got {images.dtype} {images.shape}")
    if len(images) != len(labels):
        raise DataError(f"{name}: {len(images)} images but {len(labels)} labels")
    return images.reshape(-1, 3, 32, 32).copy(), labels


class _SafeUnpickler(pickle.Unpickler):
    _ALLOWED: ClassVar[frozenset[tuple[str, str]]] = frozenset(
        {
            ("numpy.core.multiarray", "_reconstruct"),
            ("numpy._core.multiarray", "_reconstruct"),
            ("numpy.core.multiarray", "scalar"),
            ("numpy._core.multiarray", "scalar"),
            ("numpy", "ndarray"),
            ("numpy", "dtype"),
            ("builtins", "list"),
            ("builtins", "dict"),
            ("_codecs", "encode"),
        }
    )

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in self._ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}")


# ------------------------------------------------------------------------------ image folders


def read_image_folder(
    path: PathLike,
    subfolder: str | None = None,
    *,
    class_names: Sequence[str] | None = None,
    mode: str = "RGB",
) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    """Read ``<path>[/<subfolder>]/<class>/<image>`` from a folder or a ``.tar``/``.tar.gz``.

    Args:
        path: A folder or a ``.tar``/``.tar.gz`` archive, as for ``read_image_folders``.
        subfolder: The split's folder under ``path``; None or ``""``: the classes sit at the
            top.
        class_names: The label order, as for ``read_image_folders``.
        mode: The Pillow mode (``"RGB"``, ``"L"``).

    Returns:
        The triple ``(images, labels, class_names)``, uint8 ``[N, C, H, W]``, int64 ``[N]``
        and the classes in label order.

    Raises:
        DataError: As for ``read_image_folders``.
    """
    key = subfolder or ""
    return read_image_folders(path, [key], class_names=class_names, mode=mode)[key]


def read_image_folders(
    path: PathLike,
    subfolders: Sequence[str],
    *,
    class_names: Sequence[str] | None = None,
    mode: str = "RGB",
) -> dict[str, tuple[np.ndarray, np.ndarray, tuple[str, ...]]]:
    """Read several image-folder splits (e.g. ``["train", "test"]``) in one pass.

    ``path`` is a folder or a ``.tar``/``.tar.gz`` archive; when every entry of the archive (or
    the folder) sits in a single top-level folder (``cifar10-jpeg/train/...``), that folder is
    skipped. ``""`` as a subfolder means the classes sit directly at the top.
    ``class_names`` fixes the label order (every class folder must be one of them); by default the
    sorted folder names are the classes. Images are sorted by path inside a class, so the order
    is reproducible.

    Args:
        path: A folder or a ``.tar``/``.tar.gz`` archive of one.
        subfolders: The splits' folders under ``path`` (``""``: the classes sit at the top).
        class_names: The label order; every class folder must be one of them. None: the sorted
            folder names.
        mode: The Pillow mode (``"RGB"``, ``"L"``).

    Returns:
        Each subfolder -> ``(images uint8 [N, C, H, W], labels int64 [N], class_names)``.

    Raises:
        DataError: ``path`` does not exist, the archive is corrupt, a split has no class
            folders with images, a class folder is not in ``class_names`` (or one of them has
            no folder), an image is unreadable, or the images differ in size.
        ImportError: Pillow is not installed.
    """
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: no such folder or archive")
    found: dict[str, dict[str, list[tuple[str, bytes | Path]]]] = {s: {} for s in subfolders}
    all_entries: list[tuple[str, bytes | Path]] = list(
        _iter_dir_files(path) if path.is_dir() else _iter_tar_files(path)
    )
    parts_list = [PurePosixPath(name).parts for name, _ in all_entries]
    strip = _common_top(parts_list, subfolders)
    for (name, data), parts in zip(all_entries, parts_list, strict=True):
        parts = parts[strip:]
        if PurePosixPath(name).suffix.lower() not in IMAGE_SUFFIXES:
            continue
        for sub in subfolders:
            sub_parts = PurePosixPath(sub).parts if sub else ()
            n = len(sub_parts)
            if tuple(parts[:n]) == sub_parts and len(parts) == n + 2:
                found[sub].setdefault(parts[n], []).append((name, data))
    return {sub: _decode_split(path, sub, found[sub], class_names, mode) for sub in subfolders}


def _common_top(parts_list: list[tuple[str, ...]], subfolders: Sequence[str]) -> int:
    """1 if all entries share one top-level folder that is not itself a requested split."""
    tops = {p[0] for p in parts_list if len(p) > 1}
    if len(tops) == 1 and all(len(p) > 1 for p in parts_list):
        top = next(iter(tops))
        if top not in {PurePosixPath(s).parts[0] for s in subfolders if s}:
            return 1
    return 0


def _decode_split(
    path: Path,
    sub: str,
    by_class: dict[str, list[tuple[str, bytes | Path]]],
    class_names: Sequence[str] | None,
    mode: str,
) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    where = f"{path}/{sub}" if sub else str(path)
    if not by_class:
        raise DataError(f"{where}: no class folders with .jpg/.jpeg/.png images found")
    if class_names is None:
        names = tuple(sorted(by_class))
    else:
        names = tuple(class_names)
        unknown = sorted(set(by_class) - set(names))
        if unknown:
            raise DataError(f"{where}: unexpected class folders {unknown}; expected {list(names)}")
        missing = [c for c in names if c not in by_class]
        if missing:
            raise DataError(f"{where}: missing class folders {missing}")
    items: list[tuple[str, bytes | Path]] = []
    labels: list[int] = []
    for index, cls in enumerate(names):
        files = sorted(by_class[cls], key=lambda e: e[0])
        items.extend(files)
        labels.extend([index] * len(files))
    images = _decode_images(path, items, mode)
    return images, np.asarray(labels, dtype=np.int64), names


def _decode_images(path: Path, items: list[tuple[str, bytes | Path]], mode: str) -> np.ndarray:
    try:
        from PIL import Image
    except ImportError as exc:  # pragma: no cover - pillow is in the dev extra
        raise ImportError(
            "reading image folders needs Pillow: pip install 'bayes-by-hypernet[images]'"
        ) from exc

    out: np.ndarray | None = None
    for i, (name, data) in enumerate(items):
        try:
            src = io.BytesIO(data) if isinstance(data, bytes) else data
            with Image.open(src) as img:
                arr = np.asarray(img.convert(mode))
        except Exception as exc:
            where = name if isinstance(data, Path) else f"{path} (member {name})"
            raise DataError(f"{where}: unreadable image ({exc})") from exc
        if arr.ndim == 2:
            arr = arr[:, :, None]
        if out is None:
            out = np.empty((len(items), *arr.shape), dtype=np.uint8)
        elif arr.shape != out.shape[1:]:
            raise DataError(
                f"{path} (image {name}): size {arr.shape[:2]} differs from the first image's "
                f"{out.shape[1:3]}; all images must have the same size"
            )
        out[i] = arr
    assert out is not None
    return np.ascontiguousarray(out.transpose(0, 3, 1, 2))


def _iter_dir_files(root: Path) -> Iterator[tuple[str, Path]]:
    for dirpath, _, filenames in os.walk(root):
        for f in filenames:
            full = Path(dirpath) / f
            yield full.relative_to(root).as_posix(), full


def _iter_tar_files(path: Path) -> Iterable[tuple[str, bytes]]:
    """Yield ``(member name, bytes)`` of every regular file, reading the archive once."""
    out: list[tuple[str, bytes]] = []
    try:
        with tarfile.open(path, "r:*") as tar:
            for member in tar:
                if not member.isfile():
                    continue
                handle = tar.extractfile(member)
                if handle is None:
                    continue
                name = member.name[2:] if member.name.startswith("./") else member.name
                out.append((name, handle.read()))
            _check_archive_end(tar, path, len(out))
    except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:
        raise DataError(f"{path}: corrupt or truncated archive ({exc})") from exc
    return out


def _check_archive_end(tar: tarfile.TarFile, path: Path, files: int) -> None:
    """``tarfile`` takes an unreadable header after the first as the end of the archive: make
    sure the iteration stopped at the real end (only zero padding after it).

    For a compressed archive this reads the stream to its end, so a gzip checksum error
    surfaces too.
    """
    stream = tar.fileobj
    assert stream is not None
    stream.seek(tar.offset)
    while chunk := stream.read(1 << 20):
        if chunk.strip(b"\0"):
            raise DataError(
                f"{path}: corrupt archive: an unreadable entry header at byte {tar.offset} "
                f"(uncompressed) after {files} files; the rest of the archive was not read"
            )
