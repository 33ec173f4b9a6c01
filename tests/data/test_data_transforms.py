"""Batched transforms against direct per-image definitions (the paper's CIFAR preprocessing)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from bbh.data import (
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


def _batch(b: int = 16, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (b, 3, 32, 32), generator=g, dtype=torch.uint8)


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_per_image_standardize_matches_tf_formula() -> None:
    x = _batch(4).float()
    out = per_image_standardize(x)
    for i in range(4):
        a = x[i].numpy().astype(np.float64)
        adjusted = max(a.std(), 1.0 / math.sqrt(a.size))
        np.testing.assert_allclose(out[i].numpy(), (a - a.mean()) / adjusted, atol=1e-5)
    constant = torch.full((2, 3, 8, 8), 7, dtype=torch.uint8)
    assert torch.equal(per_image_standardize(constant), torch.zeros(2, 3, 8, 8))


def test_to_unit_float() -> None:
    x = torch.tensor([0, 255], dtype=torch.uint8)
    assert torch.equal(to_unit_float(x), torch.tensor([0.0, 1.0]))
    f = torch.rand(3)
    assert to_unit_float(f) is f


def test_center_crop() -> None:
    x = _batch(2)
    assert torch.equal(center_crop(x, 24), x[:, :, 4:28, 4:28])
    with pytest.raises(ValueError):
        center_crop(x, 40)


def test_random_crop_windows_of_the_padded_image() -> None:
    x = _batch(32)
    out = random_crop(x, 24, padding=2, generator=_gen())
    assert out.shape == (32, 3, 24, 24) and out.dtype == torch.uint8
    padded = F.pad(x, (2, 2, 2, 2))
    offsets = set()
    for i in range(32):
        hits = [
            (t, left)
            for t in range(13)
            for left in range(13)
            if torch.equal(padded[i, :, t : t + 24, left : left + 24], out[i])
        ]
        assert hits, f"image {i} is not a window of its padded input"
        offsets.update(hits)
    assert len(offsets) > 10  # offsets vary between images
    assert torch.equal(random_crop(x, 32, generator=_gen()), x)
    assert torch.equal(
        random_crop(x, 24, padding=2, generator=_gen(5)),
        random_crop(x, 24, padding=2, generator=_gen(5)),
    )


def test_random_flip() -> None:
    x = _batch(64)
    out = random_horizontal_flip(x, generator=_gen())
    flipped = [torch.equal(out[i], x[i].flip(-1)) for i in range(64)]
    kept = [torch.equal(out[i], x[i]) for i in range(64)]
    assert all(f or k for f, k in zip(flipped, kept, strict=True))
    assert 10 < sum(flipped) < 54
    assert torch.equal(random_horizontal_flip(x, p=1.0), x.flip(-1))
    assert torch.equal(random_horizontal_flip(x, p=0.0), x)


def test_random_brightness_and_contrast() -> None:
    x = _batch(64).float()
    bright = random_brightness(x, 63.0, generator=_gen())
    delta = (bright - x).flatten(1)
    assert torch.allclose(delta, delta[:, :1].expand_as(delta), atol=1e-4)
    assert delta.abs().max() <= 63.0 and delta[:, 0].std() > 10
    contrast = random_contrast(x, 0.2, 1.8, generator=_gen())
    mean = x.mean(dim=(2, 3), keepdim=True)
    torch.testing.assert_close(contrast.mean(dim=(2, 3), keepdim=True), mean, atol=1e-3, rtol=0)
    ratio = (contrast - mean).flatten(1).norm(dim=1) / (x - mean).flatten(1).norm(dim=1)
    assert ratio.min() >= 0.2 - 1e-4 and ratio.max() <= 1.8 + 1e-4


def test_cifar_train_augment() -> None:
    x = _batch(32)
    out = cifar_train_augment(x, _gen(1))
    assert out.shape == (32, 3, 24, 24) and out.dtype == torch.float32
    flat = out.flatten(1)
    torch.testing.assert_close(flat.mean(1), torch.zeros(32), atol=1e-4, rtol=0)
    torch.testing.assert_close(flat.std(1, unbiased=False), torch.ones(32), atol=1e-3, rtol=0)
    assert torch.equal(out, cifar_train_augment(x, _gen(1)))
    assert not torch.equal(out, cifar_train_augment(x, _gen(2)))
    assert torch.equal(out, cifar_train_augment(x.float(), _gen(1)))
    full = cifar_train_augment(x, _gen(1), crop_size=None)
    assert full.shape == (32, 3, 32, 32)


def test_cifar_eval_transform() -> None:
    x = _batch(8)
    out = cifar_eval_transform(x)
    assert out.shape == (8, 3, 24, 24)
    assert torch.equal(out, per_image_standardize(x[:, :, 4:28, 4:28].float()))
    assert cifar_eval_transform(x, crop_size=None).shape == (8, 3, 32, 32)
