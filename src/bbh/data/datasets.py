"""The paper's data sets as in-memory tensors with class names (as read by the paper's code,
pawni/BayesByHypernet, ``utils.py`` and ``utils_cifar.py``).

- ``load_mnist``: train 55,000 / validation 5,000 / test 10,000, float32 ``[N, 1, 28, 28]``
  in [0, 1] (TF ``read_data_sets(validation_size=5000)``: the validation set is the *first*
  5,000 training images, not shuffled).
- ``load_notmnist``: the notMNIST test split (10,000 letters A-J), the OOD set for MNIST.
- ``load_cifar10``, ``load_cifar5``: uint8 ``[N, 3, 32, 32]``; CIFAR-5 = classes 0-4 in
  (train 25,000, test 5,000) and the test images of classes 5-9 as OOD (5,000).

Each function reads from the data root (``root`` > ``$BBH_DATA`` > user cache, see
``bbh.data.paths``), downloads missing files unless offline, and caches decoded CIFAR arrays.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from bbh.data.cache import cached_arrays
from bbh.data.download import REMOTE_FILES, fetch
from bbh.data.errors import DataError, MissingDataError
from bbh.data.paths import resolve_data_root, resolve_offline
from bbh.data.readers import read_cifar10_python, read_idx_pair, read_image_folders

PathLike = str | os.PathLike[str]

MNIST_CLASSES = tuple(str(i) for i in range(10))
NOTMNIST_CLASSES = tuple("ABCDEFGHIJ")
CIFAR10_CLASSES = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)
CIFAR5_CLASSES = CIFAR10_CLASSES[:5]
CIFAR5_OOD_CLASSES = CIFAR10_CLASSES[5:]
MNIST_VALIDATION_SIZE = 5000


@dataclass(frozen=True, eq=False)
class LabeledData(Dataset[tuple[Tensor, Tensor]]):
    """Images ``[N, C, H, W]`` (uint8 0..255 or float32 0..1), labels int64 ``[N]``, class names.

    A user's own data (``bbh.data.user_data``) may hold other inputs ``[N, ...]`` (features
    ``[N, F]``, token ids int64 ``[N, T]``) and, for regression, float targets ``[N]`` or
    ``[N, D]`` with no class names. A map-style ``Dataset``; for training, iterate whole batches
    with ``bbh.data.loader.TensorLoader`` instead of a per-item ``DataLoader``.

    Args:
        images: The inputs ``[N, ...]``: images ``[N, C, H, W]`` or a user's features or token
            ids.
        labels: The targets ``[N]``: int64 class ids in ``[0, len(class_names))``, or float
            regression targets ``[N]`` or ``[N, D]``.
        class_names: The class names in class-id order; empty for float targets.

    Raises:
        ValueError: ``images`` has fewer than 2 dimensions, ``images`` and ``labels`` differ in
            length, float labels come with class names, or a class id lies outside
            ``[0, len(class_names))``.
    """

    images: Tensor
    labels: Tensor
    class_names: tuple[str, ...]

    def __post_init__(self) -> None:
        if self.images.ndim < 2:
            raise ValueError(
                f"images must be [N, C, H, W] or [N, ...], got {list(self.images.shape)}"
            )
        if len(self.images) != len(self.labels):
            raise ValueError(f"{len(self.images)} images but {len(self.labels)} labels")
        if self.labels.is_floating_point():
            if self.class_names:
                raise ValueError("float labels (regression targets) take no class names")
        elif self.labels.numel():
            low, high = int(self.labels.min()), int(self.labels.max())
            if low < 0 or high >= len(self.class_names):
                raise ValueError(
                    f"labels must lie in [0, {len(self.class_names)}) for the classes "
                    f"{list(self.class_names)}, got values in [{low}, {high}]"
                )

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        return self.images[index], self.labels[index]

    @property
    def num_classes(self) -> int:
        """The number of classes C, ``len(class_names)``."""
        return len(self.class_names)

    def class_counts(self) -> list[int]:
        """Number of examples per class, in class order.

        Returns:
            A list of ``num_classes`` counts.
        """
        return torch.bincount(self.labels, minlength=self.num_classes).tolist()

    def subset(self, index: Tensor | slice) -> LabeledData:
        """The examples at ``index``.

        Args:
            index: Indices, a boolean mask ``[N]`` or a slice.

        Returns:
            A new ``LabeledData`` with those examples; the class names are shared.
        """
        return replace(self, images=self.images[index], labels=self.labels[index])

    def to_float(self) -> LabeledData:
        """uint8 images as float32 in [0, 1]; other inputs (float, token ids) unchanged.

        Returns:
            A new ``LabeledData`` with float images, or ``self`` where the inputs are not uint8.
        """
        if self.images.dtype != torch.uint8:
            return self
        return replace(self, images=self.images.float().div_(255.0))

    def to(self, device: torch.device | str) -> LabeledData:
        """The same examples on ``device``.

        Args:
            device: Where the images and labels go.

        Returns:
            A new ``LabeledData``; the class names are shared.
        """
        return replace(self, images=self.images.to(device), labels=self.labels.to(device))


@dataclass(frozen=True, eq=False)
class DatasetSplits:
    """A data set's splits. ``val`` and ``ood`` are ``None`` where there are none.

    Args:
        name: The data set's name (``"mnist"``, ``"cifar5"``, ``"cifar10"``, a user's name).
        train: The training split.
        test: The test split.
        val: The validation split, or None.
        ood: The out-of-distribution set (notMNIST for MNIST, CIFAR-5's held-out classes), or
            None.
        source: Which files the data came from (e.g. "CIFAR-10 (JPEG copy): <path>").
    """

    name: str
    train: LabeledData
    test: LabeledData
    val: LabeledData | None = None
    ood: LabeledData | None = None
    source: str = ""

    @property
    def class_names(self) -> tuple[str, ...]:
        """The class names, in class-id order (the training split's)."""
        return self.train.class_names

    @property
    def num_classes(self) -> int:
        """The number of classes C (the training split's)."""
        return self.train.num_classes

    def to_float(self) -> DatasetSplits:
        """Every split as float32 in [0, 1] (``LabeledData.to_float``).

        Returns:
            A new ``DatasetSplits``; the name and source are kept.
        """
        return replace(
            self,
            train=self.train.to_float(),
            test=self.test.to_float(),
            val=None if self.val is None else self.val.to_float(),
            ood=None if self.ood is None else self.ood.to_float(),
        )


# ----------------------------------------------------------------------------------- MNIST


def load_mnist(
    root: PathLike | None = None,
    *,
    offline: bool | None = None,
    validation_size: int = MNIST_VALIDATION_SIZE,
    seed: int | None = None,
    as_float: bool = True,
    with_ood: bool = False,
) -> DatasetSplits:
    """MNIST as in the paper: train 55,000, val 5,000, test 10,000.

    With ``seed=None`` (the paper's split, as TF's ``read_data_sets``) the validation set is the
    first ``validation_size`` training images; an integer seed draws it at random instead.
    Images are float32 ``[N, 1, 28, 28]`` in [0, 1] (``as_float=False``: uint8). With
    ``with_ood=True`` the notMNIST test set is attached as ``ood``.

    Args:
        root: The data root; None: ``$BBH_DATA``, else the user cache (``resolve_data_root``).
        offline: Never download; None: ``$BBH_OFFLINE`` (``resolve_offline``).
        validation_size: Training images split off as ``val`` (0: no validation split).
        seed: None takes the first ``validation_size`` images; an integer draws them at random.
        as_float: Return float32 images in [0, 1] rather than uint8.
        with_ood: Attach the notMNIST test set as ``ood``.

    Returns:
        The splits ``train``, ``val``, ``test`` (and ``ood``), named ``"mnist"``.

    Raises:
        MissingDataError: A file is missing and may not or could not be downloaded.
        DataError: A file is corrupt or not in IDX format.
        ValueError: ``validation_size`` is not smaller than the 60,000 training images.
    """
    root = resolve_data_root(root)
    train_x, train_y = _read_idx_dataset(root, "mnist", "train", offline)
    test_x, test_y = _read_idx_dataset(root, "mnist", "t10k", offline)
    train = LabeledData(torch.from_numpy(train_x), torch.from_numpy(train_y), MNIST_CLASSES)
    test = LabeledData(torch.from_numpy(test_x), torch.from_numpy(test_y), MNIST_CLASSES)
    train, val = split_validation(train, validation_size, seed)
    ood = load_notmnist(root, offline=offline, as_float=False) if with_ood else None
    splits = DatasetSplits("mnist", train, test, val, ood, source=f"MNIST: {root / 'mnist'}")
    return splits.to_float() if as_float else splits


def load_notmnist(
    root: PathLike | None = None, *, offline: bool | None = None, as_float: bool = True
) -> LabeledData:
    """The notMNIST test split in MNIST format: 10,000 letters A-J (labels 0-9),
    ``[N, 1, 28, 28]``.

    Args:
        root: The data root; None: ``$BBH_DATA``, else the user cache (``resolve_data_root``).
        offline: Never download; None: ``$BBH_OFFLINE`` (``resolve_offline``).
        as_float: Return float32 images in [0, 1] rather than uint8.

    Returns:
        The 10,000 letters with the class names A-J.

    Raises:
        MissingDataError: A file is missing and may not or could not be downloaded.
        DataError: A file is corrupt or not in IDX format.
    """
    root = resolve_data_root(root)
    x, y = _read_idx_dataset(root, "notmnist", "t10k", offline)
    data = LabeledData(torch.from_numpy(x), torch.from_numpy(y), NOTMNIST_CLASSES)
    return data.to_float() if as_float else data


def _read_idx_dataset(
    root: Path, subdir: str, prefix: str, offline: bool | None
) -> tuple[np.ndarray, np.ndarray]:
    images = _find_idx(root, subdir, f"{prefix}-images-idx3-ubyte", offline)
    labels = _find_idx(root, subdir, f"{prefix}-labels-idx1-ubyte", offline)
    return read_idx_pair(images, labels, num_classes=10)  # MNIST digits, notMNIST letters A-J


def _find_idx(root: Path, subdir: str, stem: str, offline: bool | None) -> Path:
    """``<root>/<subdir>/<stem>.gz`` or the uncompressed ``<stem>``; else download the ``.gz``."""
    for candidate in (root / subdir / f"{stem}.gz", root / subdir / stem):
        if candidate.is_file():
            return candidate
    return fetch(REMOTE_FILES[f"{subdir}/{stem}.gz"], root, offline=offline)


# ----------------------------------------------------------------------------------- CIFAR

CIFAR_SOURCES = ("auto", "python", "jpeg")


def load_cifar10(
    root: PathLike | None = None,
    *,
    offline: bool | None = None,
    source: str = "auto",
    validation_size: int = 0,
    seed: int | None = 0,
    cache_dir: PathLike | None = None,
    use_cache: bool = True,
) -> DatasetSplits:
    """CIFAR-10: train 50,000, test 10,000, uint8 ``[N, 3, 32, 32]``, canonical class order.

    ``source``: ``"python"`` (canonical ``cifar-10-batches-py/`` or ``cifar-10-python.tar.gz``,
    downloaded if missing), ``"jpeg"`` (``cifar10-jpeg/cifar10-jpeg.tar.gz`` or its unpacked
    folder, the project's JPEG copy) or ``"auto"`` (the first present, canonical first). Decoded
    arrays are cached in ``cache_dir`` (> ``$BBH_CACHE`` > user cache). ``validation_size``
    training images, drawn with ``seed`` (``None``: the first ones), form ``val``.

    Args:
        root: The data root; None: ``$BBH_DATA``, else the user cache (``resolve_data_root``).
        offline: Never download; None: ``$BBH_OFFLINE`` (``resolve_offline``).
        source: ``"auto"``, ``"python"`` or ``"jpeg"``, as above.
        validation_size: Training images split off as ``val`` (0: no validation split).
        seed: Draws the validation images; None takes the first ones.
        cache_dir: The folder of decoded arrays; None: ``$BBH_CACHE``, else the user cache.
        use_cache: Read and write the decoded arrays' cache (False: decode every time).

    Returns:
        The splits ``train``, ``test`` (and ``val``), named ``"cifar10"``, no ``ood``.

    Raises:
        ValueError: ``source`` is not one of the three, or ``validation_size`` is not smaller
            than the 50,000 training images.
        MissingDataError: No copy is found and none may (offline) or could be downloaded, or
            ``source="jpeg"`` and the JPEG copy is not there.
        DataError: A file is corrupt or its arrays are not 3x32x32 images with labels 0-9.
    """
    arrays, description = _cifar10_arrays(
        resolve_data_root(root), offline, source, cache_dir, use_cache
    )
    train = _labeled(arrays["train_images"], arrays["train_labels"], CIFAR10_CLASSES)
    test = _labeled(arrays["test_images"], arrays["test_labels"], CIFAR10_CLASSES)
    train, val = split_validation(train, validation_size, seed)
    return DatasetSplits("cifar10", train, test, val, None, source=description)


def load_cifar5(
    root: PathLike | None = None,
    *,
    offline: bool | None = None,
    source: str = "auto",
    validation_size: int = 0,
    seed: int | None = 0,
    cache_dir: PathLike | None = None,
    use_cache: bool = True,
) -> DatasetSplits:
    """CIFAR-5 (the paper's CIFAR5): classes 0-4 in, the test images of classes 5-9 as OOD.

    ``train`` 25,000 and ``test`` 5,000 images of airplane, automobile, bird, cat, deer (labels
    0-4); ``ood`` 5,000 test images of dog, frog, horse, ship, truck, relabelled 0-4 in that order
    (their ``class_names``). uint8 ``[N, 3, 32, 32]``.

    Args:
        root: The data root, as for ``load_cifar10``.
        offline: Never download, as for ``load_cifar10``.
        source: ``"auto"``, ``"python"`` or ``"jpeg"``, as for ``load_cifar10``.
        validation_size: Training images (of the 25,000) split off as ``val``.
        seed: Draws the validation images; None takes the first ones.
        cache_dir: The folder of decoded arrays, as for ``load_cifar10``.
        use_cache: Read and write the decoded arrays' cache.

    Returns:
        The splits ``train``, ``test``, ``ood`` (and ``val``), named ``"cifar5"``.

    Raises:
        ValueError: As for ``load_cifar10``; ``validation_size`` must be smaller than
            25,000.
        MissingDataError: As for ``load_cifar10``.
        DataError: As for ``load_cifar10``.
    """
    full = load_cifar10(
        root,
        offline=offline,
        source=source,
        validation_size=0,
        cache_dir=cache_dir,
        use_cache=use_cache,
    )
    inside = full.train.labels < 5
    train = LabeledData(full.train.images[inside], full.train.labels[inside], CIFAR5_CLASSES)
    test_in = full.test.labels < 5
    test = LabeledData(full.test.images[test_in], full.test.labels[test_in], CIFAR5_CLASSES)
    ood = LabeledData(
        full.test.images[~test_in], full.test.labels[~test_in] - 5, CIFAR5_OOD_CLASSES
    )
    train, val = split_validation(train, validation_size, seed)
    return DatasetSplits("cifar5", train, test, val, ood, source=full.source)


def _labeled(images: np.ndarray, labels: np.ndarray, names: tuple[str, ...]) -> LabeledData:
    return LabeledData(torch.from_numpy(images), torch.from_numpy(labels.astype(np.int64)), names)


def _cifar10_arrays(
    root: Path,
    offline: bool | None,
    source: str,
    cache_dir: PathLike | None,
    use_cache: bool,
) -> tuple[dict[str, np.ndarray], str]:
    if source not in CIFAR_SOURCES:
        raise ValueError(f"unknown CIFAR source {source!r}; choose one of {CIFAR_SOURCES}")
    batches_dir = root / "cifar-10-batches-py"
    python_tar = REMOTE_FILES["cifar-10-python.tar.gz"].path(root)
    jpeg_tar = root / "cifar10-jpeg" / "cifar10-jpeg.tar.gz"
    jpeg_dirs = [root / "cifar10-jpeg" / "cifar10-jpeg", root / "cifar10-jpeg"]
    if source in ("auto", "python"):
        if batches_dir.is_dir():
            files = sorted(p for p in batches_dir.iterdir() if p.is_file())
            return _cached("cifar10-python", files, batches_dir, cache_dir, use_cache), (
                f"CIFAR-10 (canonical python batches): {batches_dir}"
            )
        if python_tar.is_file() or source == "python":
            return _python_tar(root, offline, cache_dir, use_cache)
    if jpeg_tar.is_file():
        return _cached_jpeg(jpeg_tar, [jpeg_tar], cache_dir, use_cache), (
            f"CIFAR-10 (JPEG copy): {jpeg_tar}"
        )
    for folder in jpeg_dirs:
        if (folder / "train").is_dir() and (folder / "test").is_dir():
            files = sorted(p for p in folder.rglob("*") if p.is_file())
            return _cached_jpeg(folder, files, cache_dir, use_cache), (
                f"CIFAR-10 (JPEG copy): {folder}"
            )
    if source == "jpeg":
        raise MissingDataError(
            f"the CIFAR-10 JPEG copy is not at {jpeg_tar} (nor unpacked in {jpeg_dirs[1]}/); "
            "put cifar10-jpeg.tar.gz there or use source='python'"
        )
    if resolve_offline(offline):
        raise MissingDataError(
            f"CIFAR-10 not found under {root} and offline mode is on. Download "
            f"{REMOTE_FILES['cifar-10-python.tar.gz'].urls[0]} and put it at {python_tar} (or "
            f"unpack it to {batches_dir}/), or put the JPEG copy at {jpeg_tar}."
        )
    return _python_tar(root, offline, cache_dir, use_cache)


def _python_tar(
    root: Path, offline: bool | None, cache_dir: PathLike | None, use_cache: bool
) -> tuple[dict[str, np.ndarray], str]:
    tar = fetch(REMOTE_FILES["cifar-10-python.tar.gz"], root, offline=offline)
    arrays = _cached("cifar10-python", [tar], tar, cache_dir, use_cache)
    return arrays, f"CIFAR-10 (canonical python batches): {tar}"


def _cached(
    tag: str, files: list[Path], path: Path, cache_dir: PathLike | None, use_cache: bool
) -> dict[str, np.ndarray]:
    return cached_arrays(
        tag,
        files,
        lambda: _check_cifar(read_cifar10_python(path), path),
        cache_dir=cache_dir,
        use_cache=use_cache,
    )


def _cached_jpeg(
    path: Path, files: list[Path], cache_dir: PathLike | None, use_cache: bool
) -> dict[str, np.ndarray]:
    def build() -> dict[str, np.ndarray]:
        splits = read_image_folders(path, ["train", "test"], class_names=CIFAR10_CLASSES)
        arrays = {
            "train_images": splits["train"][0],
            "train_labels": splits["train"][1],
            "test_images": splits["test"][0],
            "test_labels": splits["test"][1],
        }
        return _check_cifar(arrays, path)

    arrays = cached_arrays("cifar10-jpeg", files, build, cache_dir=cache_dir, use_cache=use_cache)
    order = class_interleaved_order(arrays["test_labels"])
    return dict(
        arrays, test_images=arrays["test_images"][order], test_labels=arrays["test_labels"][order]
    )


def class_interleaved_order(labels: np.ndarray) -> np.ndarray:
    """Indices that put the examples in turn by class: the first of each class (in class order),
    then the second of each, and so on; within a class the order is kept.

    The JPEG copy's folder layout sorts the test split by class, where the canonical file mixes
    the classes: its first 100 test images (the paper's attack set) would all be airplanes.
    Interleaved, they hold 10 of each class (CIFAR-5: 20 of each)."""
    labels = np.asarray(labels)
    rank = np.empty(labels.shape[0], dtype=np.int64)
    for cls in np.unique(labels):
        where = np.flatnonzero(labels == cls)
        rank[where] = np.arange(where.shape[0])
    return np.lexsort((labels, rank))


def _check_cifar(arrays: dict[str, np.ndarray], path: Path) -> dict[str, np.ndarray]:
    for split in ("train", "test"):
        images, labels = arrays[f"{split}_images"], arrays[f"{split}_labels"]
        if images.shape[1:] != (3, 32, 32):
            raise DataError(f"{path}: CIFAR {split} images are {images.shape[1:]}, not 3x32x32")
        if labels.size and (labels.min() < 0 or labels.max() > 9):
            raise DataError(f"{path}: CIFAR {split} labels outside 0..9")
    return arrays


# ----------------------------------------------------------------------------------- shared


def split_validation(
    data: LabeledData, size: int, seed: int | None
) -> tuple[LabeledData, LabeledData | None]:
    """Split ``size`` examples off ``data`` as a validation set: ``(train, val)``.

    ``seed=None``: the first ``size`` examples (TF ``read_data_sets`` behaviour, used for MNIST);
    an integer: a random subset drawn with ``torch.Generator().manual_seed(seed)``, both parts
    kept in their original order.

    Args:
        data: The examples to split.
        size: How many go to the validation set; ``<= 0`` splits nothing off.
        seed: None takes the first ``size``; an integer draws them at random.

    Returns:
        The pair ``(train, val)``; ``val`` is None where ``size <= 0`` (``train`` is then
        ``data`` itself).

    Raises:
        ValueError: ``size`` is not smaller than ``len(data)``.
    """
    if size <= 0:
        return data, None
    if size >= len(data):
        raise ValueError(f"validation_size {size} must be smaller than the {len(data)} examples")
    if seed is None:
        return data.subset(slice(size, None)), data.subset(slice(0, size))
    perm = torch.randperm(len(data), generator=torch.Generator().manual_seed(seed))
    val_idx, _ = perm[:size].sort()
    train_idx, _ = perm[size:].sort()
    return data.subset(train_idx), data.subset(val_idx)


#: The in-distribution data sets by name (``notmnist`` is the OOD set of ``mnist``).
DATASETS: dict[str, Callable[..., DatasetSplits]] = {
    "mnist": load_mnist,
    "cifar5": load_cifar5,
    "cifar10": load_cifar10,
}


def load_dataset(name: str, root: PathLike | None = None, **options: Any) -> DatasetSplits:
    """Load a data set by name (``"mnist"``, ``"cifar5"``, ``"cifar10"``).

    Args:
        name: A key of ``DATASETS``.
        root: The data root; None: ``$BBH_DATA``, else the user cache.
        **options: The loader's keyword arguments (``load_mnist``, ``load_cifar5``,
            ``load_cifar10``).

    Returns:
        The data set's splits.

    Raises:
        ValueError: ``name`` is not a known data set (and whatever the loader raises).
    """
    if name not in DATASETS:
        raise ValueError(f"unknown data set {name!r}; available: {sorted(DATASETS)}")
    return DATASETS[name](root, **options)
