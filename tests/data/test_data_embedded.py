"""The embedded MNIST/notMNIST subsets load with no data root and no network."""

from __future__ import annotations

from pathlib import Path

import torch

from bbh.data import embedded_metadata, load_embedded_mnist, load_embedded_notmnist
from bbh.data.paths import resolve_data_root


def test_embedded_loads_without_data_root() -> None:
    assert not resolve_data_root().exists()  # $BBH_DATA points at an empty tmp folder
    mnist = load_embedded_mnist(with_ood=True)
    assert mnist.train.images.shape == (2000, 1, 28, 28)
    assert mnist.test.images.shape == (1000, 1, 28, 28)
    assert mnist.train.class_counts() == [200] * 10
    assert mnist.test.class_counts() == [100] * 10
    assert mnist.train.images.dtype == torch.float32
    assert float(mnist.train.images.min()) == 0.0 and float(mnist.train.images.max()) == 1.0
    assert mnist.ood is not None and mnist.ood.class_counts() == [100] * 10
    notmnist = load_embedded_notmnist(as_float=False)
    assert notmnist.images.dtype == torch.uint8 and notmnist.class_names == tuple("ABCDEFGHIJ")


def test_embedded_metadata_and_size() -> None:
    meta = embedded_metadata()
    assert "MNIST" in meta["dataset"] and len(meta["train_source_indices"]) == 2000
    assert min(meta["train_source_indices"]) >= 5000  # from the paper's 55k training split
    assert "notMNIST" in embedded_metadata("notmnist.npz")["dataset"]
    folder = Path(__file__).resolve().parents[2] / "src" / "bbh" / "data" / "embedded"
    assert sum(p.stat().st_size for p in folder.glob("*.npz")) < 3_000_000
