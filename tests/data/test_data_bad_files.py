"""Bad data files through the loaders and ``bbh data``: one clear message naming the file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from data_test_utils import make_mnist_like, write_idx

from bbh.cli import main
from bbh.data import DataError, load_mnist
from bbh.data.datasets import LabeledData


def _mnist_with_label_42(root: Path) -> None:
    arrays = make_mnist_like(root / "mnist", 30, 10)
    labels = arrays["train_y"].copy()
    labels[17] = 42
    write_idx(root / "mnist" / "train-labels-idx1-ubyte.gz", labels)


def test_load_mnist_refuses_a_label_42(tmp_path: Path) -> None:
    _mnist_with_label_42(tmp_path)
    with pytest.raises(DataError, match=r"train-labels-idx1-ubyte\.gz: 1 label\(s\) outside"):
        load_mnist(tmp_path, offline=True, validation_size=5)


def test_bbh_data_mnist_with_a_label_42_is_one_line(tmp_path: Path, capsys) -> None:
    _mnist_with_label_42(tmp_path)
    assert main(["data", "mnist", "--data-dir", str(tmp_path), "--offline"]) == 2
    err = capsys.readouterr().err
    labels = tmp_path / "mnist" / "train-labels-idx1-ubyte.gz"
    assert err == (
        f"bbh data: error: {labels}: 1 label(s) outside the 10 classes 0-9, the first 42 at "
        "index 17; the file is corrupt or not this data set's\n"
    )


def test_labeled_data_checks_labels_against_its_classes() -> None:
    images = np.zeros((3, 1, 2, 2), np.uint8)
    import torch

    with pytest.raises(ValueError, match=r"labels must lie in \[0, 2\) .* got values in \[0, 5\]"):
        LabeledData(torch.from_numpy(images), torch.tensor([0, 1, 5]), ("a", "b"))
