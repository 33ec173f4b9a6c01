"""In-memory batch iteration: the whole data set is a tensor, augmentation runs per batch.

A ``TensorLoader`` slices batches out of tensors already in memory (no worker processes, no
per-item ``__getitem__``, no collation), so a training epoch never waits on data loading.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import torch
from torch import Tensor

from bbh.data.datasets import LabeledData


class TensorLoader:
    """Iterate ``(x, y)`` batches over in-memory tensors.

    Args:
        data: a ``LabeledData`` or a pair ``(images [N, ...], labels [N])``.
        batch_size: examples per batch.
        shuffle: draw a new permutation (from ``generator``) at the start of every epoch.
        drop_last: skip the last, smaller batch.
        generator: the source of the shuffling order (seed it for reproducible epochs).
        transform: applied to each whole batch of images, after moving it to ``device``
            (e.g. ``lambda x: cifar_train_augment(x, gen)``).
        device: where the batches go (``None``: where the data is).

    Raises:
        ValueError: The images and labels differ in length, or ``batch_size`` is below 1.
    """

    def __init__(
        self,
        data: LabeledData | tuple[Tensor, Tensor],
        batch_size: int,
        *,
        shuffle: bool = True,
        drop_last: bool = False,
        generator: torch.Generator | None = None,
        transform: Callable[[Tensor], Tensor] | None = None,
        device: torch.device | str | None = None,
    ) -> None:
        images, labels = (data.images, data.labels) if isinstance(data, LabeledData) else data
        if len(images) != len(labels):
            raise ValueError(f"{len(images)} images but {len(labels)} labels")
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        self.images, self.labels = images, labels
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.drop_last = drop_last
        self.generator = generator
        self.transform = transform
        self.device = device

    def __len__(self) -> int:
        n = len(self.labels)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    @property
    def num_examples(self) -> int:
        """The number of examples N (``len()`` is the number of batches)."""
        return len(self.labels)

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        n = len(self.labels)
        order = torch.randperm(n, generator=self.generator) if self.shuffle else None
        for i in range(len(self)):
            if order is None:
                x = self.images[i * self.batch_size : (i + 1) * self.batch_size]
                y = self.labels[i * self.batch_size : (i + 1) * self.batch_size]
            else:
                idx = order[i * self.batch_size : (i + 1) * self.batch_size]
                x, y = self.images[idx], self.labels[idx]
            if self.device is not None:
                x = x.to(self.device, non_blocking=True)
                y = y.to(self.device, non_blocking=True)
            if self.transform is not None:
                x = self.transform(x)
            yield x, y
