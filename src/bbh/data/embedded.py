"""Small MNIST and notMNIST subsets shipped inside the package (no download, no data folder).

Made by ``scripts/make_embedded_data.py`` from the full files, class-balanced and deterministic;
each ``.npz`` carries a ``meta`` entry (JSON) saying what it was made from. Sizes: MNIST train
2,000 (200 per class, drawn from the paper's 55,000 training images), MNIST test 1,000 (100 per
class), notMNIST 1,000 (100 per letter). For demos, quick starts and tests, not for results.
"""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

import numpy as np
import torch

from bbh.data.datasets import MNIST_CLASSES, NOTMNIST_CLASSES, DatasetSplits, LabeledData
from bbh.data.errors import DataError

MNIST_FILE = "mnist.npz"
NOTMNIST_FILE = "notmnist.npz"


def load_embedded_mnist(*, as_float: bool = True, with_ood: bool = False) -> DatasetSplits:
    """The embedded MNIST subset: ``train`` [2000, 1, 28, 28], ``test`` [1000, 1, 28, 28].

    float32 in [0, 1] (``as_float=False``: uint8); ``with_ood=True`` attaches the embedded
    notMNIST subset as ``ood``. No validation split.

    Args:
        as_float: Return float32 images in [0, 1] rather than uint8.
        with_ood: Attach the embedded notMNIST subset as ``ood``.

    Returns:
        The splits, named ``"mnist-embedded"``.

    Raises:
        DataError: The embedded file is missing or unreadable (a broken install).
    """
    arrays = _load(MNIST_FILE)
    train = _labeled(arrays["train_images"], arrays["train_labels"], MNIST_CLASSES)
    test = _labeled(arrays["test_images"], arrays["test_labels"], MNIST_CLASSES)
    ood = load_embedded_notmnist(as_float=False) if with_ood else None
    splits = DatasetSplits("mnist-embedded", train, test, None, ood, source="bbh embedded MNIST")
    return splits.to_float() if as_float else splits


def load_embedded_notmnist(*, as_float: bool = True) -> LabeledData:
    """The embedded notMNIST subset: [1000, 1, 28, 28], letters A-J as labels 0-9.

    Args:
        as_float: Return float32 images in [0, 1] rather than uint8.

    Returns:
        The 1,000 letters with the class names A-J.

    Raises:
        DataError: The embedded file is missing or unreadable (a broken install).
    """
    arrays = _load(NOTMNIST_FILE)
    data = _labeled(arrays["images"], arrays["labels"], NOTMNIST_CLASSES)
    return data.to_float() if as_float else data


def embedded_metadata(name: str = MNIST_FILE) -> dict[str, Any]:
    """The provenance record stored in an embedded file (sources, checksums, selection).

    Args:
        name: The embedded file, ``"mnist.npz"`` or ``"notmnist.npz"``.

    Returns:
        The record, decoded from its JSON.

    Raises:
        DataError: The file is missing or unreadable.
    """
    return json.loads(str(_load(name)["meta"]))


def _labeled(images: np.ndarray, labels: np.ndarray, names: tuple[str, ...]) -> LabeledData:
    return LabeledData(torch.from_numpy(images), torch.from_numpy(labels.astype(np.int64)), names)


def _load(name: str) -> dict[str, np.ndarray]:
    ref = resources.files("bbh.data") / "embedded" / name
    try:
        with ref.open("rb") as handle, np.load(handle, allow_pickle=False) as npz:
            return {key: npz[key] for key in npz.files}
    except (OSError, ValueError) as exc:
        raise DataError(
            f"embedded data file bbh/data/embedded/{name} is missing or unreadable ({exc}); "
            "reinstall the package or run scripts/make_embedded_data.py"
        ) from exc
