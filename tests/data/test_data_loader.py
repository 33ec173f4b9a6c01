"""TensorLoader: whole epochs from in-memory tensors, batched transforms."""

from __future__ import annotations

import torch

from bbh.data import LabeledData, TensorLoader, cifar_train_augment


def _data(n: int = 25) -> LabeledData:
    images = torch.arange(n, dtype=torch.uint8)[:, None, None, None].expand(n, 3, 32, 32)
    return LabeledData(images.contiguous(), torch.arange(n), tuple(f"c{i}" for i in range(n)))


def test_epoch_covers_every_example_once() -> None:
    loader = TensorLoader(_data(), 10, generator=torch.Generator().manual_seed(0))
    assert len(loader) == 3 and loader.num_examples == 25
    seen = torch.cat([y for _, y in loader])
    assert sorted(seen.tolist()) == list(range(25))
    assert [len(y) for _, y in loader] == [10, 10, 5]
    for x, y in loader:  # images stay paired with their labels
        assert torch.equal(x[:, 0, 0, 0].long(), y)


def test_shuffle_is_seeded_and_changes_per_epoch() -> None:
    def order(seed: int) -> list[list[int]]:
        loader = TensorLoader(_data(), 25, generator=torch.Generator().manual_seed(seed))
        return [next(iter(loader))[1].tolist() for _ in range(2)]

    first = order(1)
    assert first == order(1)
    assert first[0] != first[1]
    plain = TensorLoader(_data(), 25, shuffle=False)
    assert next(iter(plain))[1].tolist() == list(range(25))


def test_drop_last_and_transform() -> None:
    g = torch.Generator().manual_seed(0)
    loader = TensorLoader(
        (_data().images, _data().labels),
        10,
        drop_last=True,
        transform=lambda x: cifar_train_augment(x, g),
    )
    batches = list(loader)
    assert len(loader) == len(batches) == 2
    assert batches[0][0].shape == (10, 3, 24, 24) and batches[0][0].dtype == torch.float32
