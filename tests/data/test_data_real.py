"""The real files in ../shared/data (or $BBH_TEST_DATA); skipped with a reason when absent."""

from __future__ import annotations

import gzip
import hashlib
import importlib.util
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from bbh.data import REMOTE_FILES, load_cifar5, load_mnist, load_notmnist
from bbh.data.download import file_digest

MNIST_TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
MNIST_TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
# md5 of the decompressed canonical MNIST files (shared/data/README.md).
MNIST_RAW_MD5 = {
    "train-images-idx3-ubyte.gz": "6bbc9ace898e44ae57da46a324031adb",
    "train-labels-idx1-ubyte.gz": "a25bea736e30d166cdddb491f175f624",
    "t10k-images-idx3-ubyte.gz": "2646ac647ad5339dbf082846283269ea",
    "t10k-labels-idx1-ubyte.gz": "27ae3e4e09519cfbb04c329615203637",
}


def test_real_mnist(real_root: Path) -> None:
    splits = load_mnist(real_root, offline=True)
    assert (len(splits.train), len(splits.val), len(splits.test)) == (55000, 5000, 10000)
    assert splits.train.images.shape == (55000, 1, 28, 28)
    assert splits.train.images.dtype == torch.float32
    for part in (splits.train, splits.val, splits.test):
        assert float(part.images.min()) == 0.0 and float(part.images.max()) == 1.0
    counts = zip(splits.train.class_counts(), splits.val.class_counts(), strict=True)
    train_val = [a + b for a, b in counts]
    assert train_val == MNIST_TRAIN_COUNTS
    assert splits.test.class_counts() == MNIST_TEST_COUNTS
    # The first training labels of canonical MNIST are 5 0 4 1 9: val is the first 5,000 images.
    assert splits.val.labels[:5].tolist() == [5, 0, 4, 1, 9]
    mean = float(splits.train.images.mean())
    assert 0.12 < mean < 0.14  # MNIST's well-known mean pixel value, ~0.1307


def test_real_mnist_files_are_canonical(real_root: Path) -> None:
    for name, md5 in MNIST_RAW_MD5.items():
        data = gzip.decompress((real_root / "mnist" / name).read_bytes())
        assert hashlib.md5(data).hexdigest() == md5, name


def test_real_notmnist(real_root: Path) -> None:
    data = load_notmnist(real_root, offline=True)
    assert len(data) == 10000 and data.images.shape == (10000, 1, 28, 28)
    assert data.class_counts() == [1000] * 10
    assert float(data.images.min()) == 0.0 and float(data.images.max()) == 1.0
    # The registry's checksums are those of these files.
    for name in ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
        remote = REMOTE_FILES[f"notmnist/{name}"]
        path = real_root / "notmnist" / name
        assert file_digest(path, "md5") == remote.md5
        assert file_digest(path, "sha256") == remote.sha256


def test_embedded_files_are_reproducible(real_root: Path, tmp_path: Path) -> None:
    script = Path(__file__).resolve().parents[2] / "scripts" / "make_embedded_data.py"
    spec = importlib.util.spec_from_file_location("make_embedded_data", script)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.main(["--data-dir", str(real_root), "--out", str(tmp_path)])
    shipped = Path(__file__).resolve().parents[2] / "src" / "bbh" / "data" / "embedded"
    for name in ("mnist.npz", "notmnist.npz"):
        with np.load(tmp_path / name) as new, np.load(shipped / name) as old:
            assert sorted(new.files) == sorted(old.files)
            for key in new.files:
                np.testing.assert_array_equal(new[key], old[key], err_msg=f"{name}:{key}")


@pytest.mark.slow
def test_real_cifar5(real_root: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    splits = load_cifar5(real_root, offline=True, cache_dir=cache)
    assert (len(splits.train), len(splits.test), len(splits.ood)) == (25000, 5000, 5000)
    assert splits.train.images.shape == (25000, 3, 32, 32)
    assert splits.train.images.dtype == torch.uint8
    assert splits.train.class_counts() == [5000] * 5
    assert splits.test.class_counts() == [1000] * 5
    assert splits.ood.class_counts() == [1000] * 5
    assert splits.ood.class_names == ("dog", "frog", "horse", "ship", "truck")
    assert int(splits.train.images.min()) == 0 and int(splits.train.images.max()) == 255
    mean = float(splits.train.images.float().mean()) / 255
    assert 0.4 < mean < 0.55
    start = time.perf_counter()
    again = load_cifar5(real_root, offline=True, cache_dir=cache)
    elapsed = time.perf_counter() - start
    assert torch.equal(again.train.images, splits.train.images)
    assert elapsed <= 2.0, f"second CIFAR-5 load took {elapsed:.2f} s"
