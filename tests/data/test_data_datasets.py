"""The public loaders on small generated data roots: splits, layouts, cache, errors."""

from __future__ import annotations

import functools
import hashlib
import http.server
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from data_test_utils import (
    image_folder_files,
    make_cifar_python,
    make_mnist_like,
    write_idx,
    write_tar,
)

import bbh.data.datasets as datasets_module
from bbh.data import (
    CIFAR10_CLASSES,
    REMOTE_FILES,
    DataError,
    LabeledData,
    MissingDataError,
    RemoteFile,
    load_cifar5,
    load_cifar10,
    load_dataset,
    load_mnist,
    load_notmnist,
)
from bbh.data.datasets import class_interleaved_order

# ------------------------------------------------------------------------------------ MNIST


def test_mnist_paper_split_is_first_images(tmp_path: Path) -> None:
    arrays = make_mnist_like(tmp_path / "mnist", 50, 20)
    splits = load_mnist(tmp_path, validation_size=10)
    assert (len(splits.train), len(splits.val), len(splits.test)) == (40, 10, 20)
    assert splits.train.images.shape == (40, 1, 28, 28)
    assert splits.train.images.dtype == torch.float32
    assert splits.train.images.min() >= 0.0 and splits.train.images.max() <= 1.0
    # Validation = the first 10 training images, train = the rest, order kept (TF read_data_sets).
    np.testing.assert_allclose(splits.val.images[:, 0].numpy(), arrays["train_x"][:10] / 255.0)
    np.testing.assert_allclose(splits.train.images[:, 0].numpy(), arrays["train_x"][10:] / 255.0)
    np.testing.assert_array_equal(splits.train.labels.numpy(), arrays["train_y"][10:])
    assert splits.class_names == tuple("0123456789")
    assert splits.ood is None


def test_mnist_seeded_split(tmp_path: Path) -> None:
    make_mnist_like(tmp_path / "mnist", 50, 20)
    a = load_mnist(tmp_path, validation_size=10, seed=3, as_float=False)
    b = load_mnist(tmp_path, validation_size=10, seed=3, as_float=False)
    c = load_mnist(tmp_path, validation_size=10, seed=4, as_float=False)
    assert a.train.images.dtype == torch.uint8
    assert torch.equal(a.val.images, b.val.images)
    assert not torch.equal(a.val.images, c.val.images)
    both = torch.cat([a.train.images, a.val.images]).flatten(1)
    assert len(torch.unique(both, dim=0)) == 50  # disjoint and complete


def test_mnist_no_validation(tmp_path: Path) -> None:
    make_mnist_like(tmp_path / "mnist", 30, 10)
    splits = load_mnist(tmp_path, validation_size=0)
    assert splits.val is None and len(splits.train) == 30
    with pytest.raises(ValueError, match="validation_size"):
        load_mnist(tmp_path, validation_size=30)


def test_mnist_uncompressed_files_and_env_root(tmp_path: Path) -> None:
    folder = tmp_path / "bbh-data" / "mnist"  # $BBH_DATA is tmp_path/bbh-data in these tests
    x = np.zeros((12, 28, 28), np.uint8)
    y = np.arange(12, dtype=np.uint8) % 10
    for prefix in ("train", "t10k"):
        write_idx(folder / f"{prefix}-images-idx3-ubyte", x, gz=False)
        write_idx(folder / f"{prefix}-labels-idx1-ubyte", y, gz=False)
    splits = load_mnist(validation_size=2)
    assert len(splits.train) == 10 and len(splits.test) == 12


def test_mnist_offline_missing_names_the_file(tmp_path: Path) -> None:
    with pytest.raises(MissingDataError, match=r"mnist/train-images-idx3-ubyte\.gz"):
        load_mnist(tmp_path)


def test_mnist_corrupt_file_named(tmp_path: Path) -> None:
    make_mnist_like(tmp_path / "mnist", 20, 10)
    write_idx(tmp_path / "mnist" / "t10k-labels-idx1-ubyte.gz", np.zeros(9, np.uint8))
    with pytest.raises(DataError, match=r"t10k-images.*10 images but.*t10k-labels.*9 labels"):
        load_mnist(tmp_path, validation_size=5)


def test_notmnist_and_ood(tmp_path: Path) -> None:
    make_mnist_like(tmp_path / "mnist", 20, 10)
    rng = np.random.default_rng(0)
    write_idx(
        tmp_path / "notmnist" / "t10k-images-idx3-ubyte.gz",
        rng.integers(0, 256, (30, 28, 28), dtype=np.uint8),
    )
    write_idx(
        tmp_path / "notmnist" / "t10k-labels-idx1-ubyte.gz", np.arange(30, dtype=np.uint8) % 10
    )
    notmnist = load_notmnist(tmp_path)
    assert len(notmnist) == 30 and notmnist.class_names == tuple("ABCDEFGHIJ")
    assert notmnist.class_counts() == [3] * 10
    splits = load_mnist(tmp_path, validation_size=5, with_ood=True)
    assert splits.ood is not None and len(splits.ood) == 30
    assert splits.ood.images.dtype == torch.float32


def test_download_path_through_loader(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    served = tmp_path / "served"
    make_mnist_like(served, 20, 10)
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(served))
    handler.log_message = lambda *a: None  # type: ignore[attr-defined]
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        base = f"http://127.0.0.1:{httpd.server_address[1]}/"
        for key in [k for k in REMOTE_FILES if k.startswith("mnist/")]:
            name = key.split("/")[1]
            md5 = hashlib.md5((served / name).read_bytes()).hexdigest()
            monkeypatch.setitem(REMOTE_FILES, key, RemoteFile("mnist", name, (base + name,), md5))
        root = tmp_path / "root"
        splits = load_mnist(root, offline=False, validation_size=5)
        assert len(splits.train) == 15
        assert sorted(p.name for p in (root / "mnist").iterdir()) == sorted(
            p.name for p in served.iterdir()
        )
    finally:
        httpd.shutdown()
        httpd.server_close()


# ------------------------------------------------------------------------------------ CIFAR


def _jpeg_root(root: Path, train_per_class: int = 2, test_per_class: int = 2) -> Path:
    train, _ = image_folder_files(
        list(CIFAR10_CLASSES), train_per_class, prefix="cifar10-jpeg/train/", fmt="JPEG"
    )
    test, _ = image_folder_files(
        list(CIFAR10_CLASSES), test_per_class, prefix="cifar10-jpeg/test/", fmt="JPEG", seed=1
    )
    return write_tar(root / "cifar10-jpeg" / "cifar10-jpeg.tar.gz", {**train, **test})


def test_cifar5_from_jpeg_tar(tmp_path: Path) -> None:
    _jpeg_root(tmp_path, 3, 2)
    splits = load_cifar5(tmp_path)
    assert "JPEG copy" in splits.source
    assert (len(splits.train), len(splits.test), len(splits.ood)) == (15, 10, 10)
    assert splits.train.images.shape == (15, 3, 32, 32)
    assert splits.train.images.dtype == torch.uint8
    assert splits.class_names == ("airplane", "automobile", "bird", "cat", "deer")
    assert splits.ood.class_names == ("dog", "frog", "horse", "ship", "truck")
    assert splits.train.class_counts() == [3] * 5
    assert splits.ood.class_counts() == [2] * 5
    full = load_cifar10(tmp_path)
    assert len(full.train) == 30 and full.class_names == CIFAR10_CLASSES
    # OOD images are the class 5..9 test images, relabelled 0..4.
    assert torch.equal(splits.ood.images, full.test.images[full.test.labels >= 5])
    # the folder layout sorts by class; the test split is put in turn by class, as the
    # canonical file mixes them, so that its first images (the attack set) span the classes
    assert full.test.labels.tolist() == list(range(10)) * 2
    assert splits.test.labels.tolist() == list(range(5)) * 2


def test_class_interleaved_order_keeps_the_order_within_a_class() -> None:
    labels = np.array([0, 0, 0, 1, 2, 2])
    order = class_interleaved_order(labels)
    assert order.tolist() == [0, 3, 4, 1, 5, 2]
    assert labels[order].tolist() == [0, 1, 2, 0, 2, 0]


def test_cifar_second_load_uses_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _jpeg_root(tmp_path)
    first = load_cifar5(tmp_path)

    def fail(*args: object, **kwargs: object) -> None:
        raise AssertionError("decoded again instead of reading the cache")

    monkeypatch.setattr(datasets_module, "read_image_folders", fail)
    second = load_cifar5(tmp_path)
    assert torch.equal(first.train.images, second.train.images)
    with pytest.raises(AssertionError, match="decoded again"):
        load_cifar5(tmp_path, use_cache=False)


def test_cifar_canonical_first_then_jpeg_on_request(tmp_path: Path) -> None:
    batches = make_cifar_python(tmp_path, per_batch=10)
    _jpeg_root(tmp_path)
    auto = load_cifar10(tmp_path)
    assert "canonical" in auto.source and len(auto.train) == 50
    np.testing.assert_array_equal(auto.train.images[:10].numpy(), batches["data_batch_1"][0])
    jpeg = load_cifar10(tmp_path, source="jpeg")
    assert "JPEG" in jpeg.source and len(jpeg.train) == 20
    with pytest.raises(ValueError, match="source"):
        load_cifar10(tmp_path, source="png")


def test_cifar_python_tar_and_validation(tmp_path: Path) -> None:
    make_cifar_python(tmp_path, per_batch=10, as_tar=True)
    splits = load_cifar5(tmp_path, validation_size=5, seed=0)
    assert len(splits.train) + len(splits.val) == 25
    assert len(splits.val) == 5 and len(splits.test) == 5 and len(splits.ood) == 5


def test_cifar_unpacked_jpeg_folder(tmp_path: Path) -> None:
    train, _ = image_folder_files(list(CIFAR10_CLASSES), 1, prefix="train/", fmt="JPEG")
    test, _ = image_folder_files(list(CIFAR10_CLASSES), 1, prefix="test/", fmt="JPEG")
    for name, data in {**train, **test}.items():
        p = tmp_path / "cifar10-jpeg" / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
    splits = load_cifar10(tmp_path)
    assert len(splits.train) == 10 and len(splits.test) == 10


def test_cifar_offline_missing(tmp_path: Path) -> None:
    with pytest.raises(MissingDataError, match=r"cifar-10-python\.tar\.gz.*cifar10-jpeg"):
        load_cifar5(tmp_path)
    with pytest.raises(MissingDataError, match="JPEG copy"):
        load_cifar5(tmp_path, source="jpeg")


def test_cifar_truncated_archive_leaves_no_cache(tmp_path: Path) -> None:
    tar = _jpeg_root(tmp_path, 5, 5)
    data = tar.read_bytes()
    tar.write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match=r"cifar10-jpeg\.tar\.gz"):
        load_cifar5(tmp_path)
    cache = tmp_path / "bbh-cache"
    assert not cache.exists() or not list(cache.iterdir())


# ------------------------------------------------------------------------------------ shared


def test_labeled_data_behaviour() -> None:
    data = LabeledData(
        torch.arange(6 * 4, dtype=torch.uint8).reshape(6, 1, 2, 2),
        torch.tensor([0, 1, 1, 2, 2, 2]),
        ("a", "b", "c"),
    )
    x, y = data[1]
    assert x.shape == (1, 2, 2) and int(y) == 1
    assert data.class_counts() == [1, 2, 3] and data.num_classes == 3
    assert data.to_float().images.max() <= 1.0
    sub = data.subset(data.labels == 2)
    assert len(sub) == 3 and sub.class_names == data.class_names
    loader = torch.utils.data.DataLoader(data, batch_size=4)
    assert next(iter(loader))[0].shape == (4, 1, 2, 2)
    with pytest.raises(ValueError):
        LabeledData(torch.zeros(3, 1, 2, 2), torch.zeros(2, dtype=torch.long), ("a",))


def test_load_dataset_registry(tmp_path: Path) -> None:
    make_mnist_like(tmp_path / "mnist", 20, 10)
    assert load_dataset("mnist", tmp_path, validation_size=5).name == "mnist"
    with pytest.raises(ValueError, match="unknown data set"):
        load_dataset("imagenet")


def test_a_cifar5_run_holds_out_every_class_though_the_jpeg_copy_sorts_by_class(
    tmp_path: Path,
) -> None:
    from bbh.experiments.builders import load_run_data
    from bbh.experiments.config import load_config

    _jpeg_root(tmp_path, 4, 1)  # training images sorted by class, 4 each
    for seed in ("", "data.validation_seed=3"):
        sets = [f"data.root={tmp_path}", "data.validation_size=8"] + ([seed] if seed else [])
        cfg = load_config("cifar5/map", scale="cpu", overrides=sets)
        data = load_run_data(cfg)
        assert data.val is not None and len(data.val.labels) == 8
        assert len(set(data.val.labels.tolist())) >= 3  # the first 8 hold two classes
        assert len(data.train_y) == 12
