"""Data: the paper's data sets, readers, verified downloads, caching and batched transforms.

Quick use:

    from bbh.data import load_mnist, load_notmnist, load_cifar5, load_embedded_mnist
    mnist = load_mnist("path/to/data")  # train 55k / val 5k / test 10k, float [N, 1, 28, 28]
    cifar = load_cifar5()  # root from $BBH_DATA or the user cache; uint8 [N, 3, 32, 32]
    demo = load_embedded_mnist()  # shipped inside the package, no files needed
    shifted = corrupt(cifar.test.images, "fog", severity=3)  # dataset shift (bbh.data.shift)

See ``docs/data.md`` for the data root, offline mode, the cache and the file layouts.
"""

from bbh.data.cache import cached_arrays
from bbh.data.datasets import (
    CIFAR5_CLASSES,
    CIFAR5_OOD_CLASSES,
    CIFAR10_CLASSES,
    DATASETS,
    MNIST_CLASSES,
    NOTMNIST_CLASSES,
    DatasetSplits,
    LabeledData,
    load_cifar5,
    load_cifar10,
    load_dataset,
    load_mnist,
    load_notmnist,
    split_validation,
)
from bbh.data.download import REMOTE_FILES, RemoteFile, download, fetch
from bbh.data.embedded import embedded_metadata, load_embedded_mnist, load_embedded_notmnist
from bbh.data.errors import ChecksumError, DataError, DownloadError, MissingDataError
from bbh.data.loader import TensorLoader
from bbh.data.paths import resolve_cache_dir, resolve_data_root, resolve_offline, user_cache_dir
from bbh.data.readers import (
    read_cifar10_python,
    read_idx,
    read_idx_pair,
    read_image_folder,
    read_image_folders,
)
from bbh.data.shift import (
    CORRUPTIONS,
    EXTRA_CORRUPTIONS,
    ROTATION_ANGLES,
    SEVERITIES,
    Shift,
    corrupt,
    corruption_shifts,
    rotate,
    rotation_shifts,
)
from bbh.data.transforms import (
    center_crop,
    cifar_eval_transform,
    cifar_train_augment,
    per_image_standardize,
    random_brightness,
    random_contrast,
    random_crop,
    random_horizontal_flip,
    to_unit_float,
)

__all__ = [
    "CIFAR5_CLASSES",
    "CIFAR5_OOD_CLASSES",
    "CIFAR10_CLASSES",
    "CORRUPTIONS",
    "DATASETS",
    "EXTRA_CORRUPTIONS",
    "MNIST_CLASSES",
    "NOTMNIST_CLASSES",
    "REMOTE_FILES",
    "ROTATION_ANGLES",
    "SEVERITIES",
    "ChecksumError",
    "DataError",
    "DatasetSplits",
    "DownloadError",
    "LabeledData",
    "MissingDataError",
    "RemoteFile",
    "Shift",
    "TensorLoader",
    "cached_arrays",
    "center_crop",
    "cifar_eval_transform",
    "cifar_train_augment",
    "corrupt",
    "corruption_shifts",
    "download",
    "embedded_metadata",
    "fetch",
    "load_cifar5",
    "load_cifar10",
    "load_dataset",
    "load_embedded_mnist",
    "load_embedded_notmnist",
    "load_mnist",
    "load_notmnist",
    "per_image_standardize",
    "random_brightness",
    "random_contrast",
    "random_crop",
    "random_horizontal_flip",
    "read_cifar10_python",
    "read_idx",
    "read_idx_pair",
    "read_image_folder",
    "read_image_folders",
    "resolve_cache_dir",
    "resolve_data_root",
    "resolve_offline",
    "rotate",
    "rotation_shifts",
    "split_validation",
    "to_unit_float",
    "user_cache_dir",
]
