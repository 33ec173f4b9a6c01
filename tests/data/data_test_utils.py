"""Helpers that write small data files in the formats the readers accept."""

from __future__ import annotations

import gzip
import io
import pickle
import tarfile
from pathlib import Path

import numpy as np

IDX_CODES = {np.uint8: 0x08, np.int8: 0x09, np.int16: 0x0B, np.int32: 0x0C, np.float32: 0x0D}


def idx_bytes(array: np.ndarray) -> bytes:
    code = IDX_CODES[array.dtype.type]
    header = bytes([0, 0, code, array.ndim]) + b"".join(
        int(d).to_bytes(4, "big") for d in array.shape
    )
    return header + array.astype(array.dtype.newbyteorder(">")).tobytes()


def write_idx(path: Path, array: np.ndarray, *, gz: bool | None = None) -> Path:
    data = idx_bytes(array)
    if gz if gz is not None else path.suffix == ".gz":
        data = gzip.compress(data)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def make_mnist_like(folder: Path, n_train: int, n_test: int, *, seed: int = 0) -> dict:
    """Write the four IDX files (gzipped) of an MNIST-shaped data set; return the arrays."""
    rng = np.random.default_rng(seed)
    arrays = {
        "train_x": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "train_y": (np.arange(n_train) % 10).astype(np.uint8),
        "test_x": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "test_y": (np.arange(n_test) % 10).astype(np.uint8),
    }
    write_idx(folder / "train-images-idx3-ubyte.gz", arrays["train_x"])
    write_idx(folder / "train-labels-idx1-ubyte.gz", arrays["train_y"])
    write_idx(folder / "t10k-images-idx3-ubyte.gz", arrays["test_x"])
    write_idx(folder / "t10k-labels-idx1-ubyte.gz", arrays["test_y"])
    return arrays


def cifar_batch_bytes(images: np.ndarray, labels: np.ndarray) -> bytes:
    """A pickled batch like the canonical ones (bytes keys, data [N, 3072], labels list)."""
    batch = {b"batch_label": b"test", b"labels": labels.tolist(), b"data": images.reshape(-1, 3072)}
    return pickle.dumps(batch, protocol=2)


def make_cifar_python(root: Path, per_batch: int = 20, *, as_tar: bool = False) -> dict:
    """Write ``cifar-10-batches-py/`` (or ``cifar-10-python.tar.gz``) with tiny batches."""
    rng = np.random.default_rng(1)
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    out: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    blobs = {}
    for name in names:
        x = rng.integers(0, 256, (per_batch, 3, 32, 32), dtype=np.uint8)
        y = np.arange(per_batch) % 10
        out[name] = (x, y)
        blobs[name] = cifar_batch_bytes(x, y)
    if as_tar:
        members = {f"cifar-10-batches-py/{n}": b for n, b in blobs.items()}
        write_tar(root / "cifar-10-python.tar.gz", members)
    else:
        folder = root / "cifar-10-batches-py"
        folder.mkdir(parents=True)
        for n, b in blobs.items():
            (folder / n).write_bytes(b)
    return out


def image_bytes(array: np.ndarray, fmt: str) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    mode = "L" if array.ndim == 2 else "RGB"
    Image.fromarray(array, mode=mode).save(buf, format=fmt)
    return buf.getvalue()


def write_tar(path: Path, files: dict[str, bytes]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    mode = "w:gz" if path.name.endswith(".gz") else "w"
    with tarfile.open(path, mode) as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def image_folder_files(
    classes: list[str], per_class: int, *, prefix: str = "", fmt: str = "PNG", seed: int = 0
) -> tuple[dict[str, bytes], dict[str, np.ndarray]]:
    """``{relative path: encoded image}`` for ``<prefix><class>/<NNNN>.<ext>`` and the pixels."""
    rng = np.random.default_rng(seed)
    ext = "png" if fmt == "PNG" else "jpg"
    files, pixels = {}, {}
    for c in classes:
        for i in range(per_class):
            arr = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
            name = f"{prefix}{c}/{i:04d}.{ext}"
            files[name] = image_bytes(arr, fmt)
            pixels[name] = arr
    return files, pixels


def write_files(root: Path, files: dict[str, bytes]) -> Path:
    for name, data in files.items():
        p = root / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
    return root
