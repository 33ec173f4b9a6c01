"""Rotation and mixup sweeps, per-class spread and weight statistics (the paper's ``utils.py``)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from eval_toys import CLASSES, SIDE, images

from bbh.evaluation import (
    PAPER_MIXUP_LAMBDAS,
    PAPER_ROTATIONS,
    mixup_images,
    mixup_study,
    per_class_spread,
    rotate_images,
    rotation_study,
    weight_statistics,
)


def test_rotation_matches_scipy_bilinear() -> None:
    ndimage = pytest.importorskip("scipy.ndimage")
    g = torch.Generator().manual_seed(0)
    img = torch.rand(20, 28, generator=g, dtype=torch.float64)
    angles = [-45.0, 30.0, 90.0, 180.0]
    ours = rotate_images(img, angles)
    for a, rot in zip(angles, ours, strict=True):
        # zero padding that still interpolates at the border is scipy's "grid-constant"
        ref = ndimage.rotate(img.numpy(), a, reshape=False, order=1, mode="grid-constant")
        assert np.allclose(rot.numpy(), ref, atol=1e-10)


def test_rotation_keeps_input_shape_and_identity() -> None:
    flat = torch.rand(SIDE * SIDE)
    out = rotate_images(flat, [0, 90, 360])
    assert out.shape == (3, SIDE * SIDE)
    assert torch.allclose(out[0], flat, atol=1e-6) and torch.allclose(out[2], flat, atol=1e-5)
    with pytest.raises(ValueError, match="flat image must be square"):
        rotate_images(torch.rand(10), [0])
    with pytest.raises(ValueError, match="angles must not be empty"):
        rotate_images(flat, [])


def test_rotation_and_mixup_studies(sto) -> None:
    x, _ = images(2)
    rot = rotation_study(sto, x[0], PAPER_ROTATIONS[217], num_samples=5)
    assert rot.probs.shape == (19, 5, CLASSES) and rot.images.shape == (19, 1, SIDE, SIDE)
    d = rot.to_dict()
    assert len(d["mean_probs"]) == 19 and d["values"][-1] == 180.0
    mix = mixup_study(sto, x[0], x[1], num_samples=4)
    assert torch.allclose(mix.images[0], x[0]) and torch.allclose(mix.images[-1], x[1])
    assert mix.to_dict()["values"] == list(PAPER_MIXUP_LAMBDAS)
    assert mix.display_images().shape == (11, SIDE, SIDE)
    with pytest.raises(ValueError, match="same shape"):
        mixup_images(x[0], x[1, 0], [0.5])


def test_per_class_spread(sto, det) -> None:
    x, _ = images(3)
    s = per_class_spread(sto, x, num_samples=7)
    assert np.array(s["samples"]).shape == (7, 3, CLASSES)
    assert np.allclose(np.array(s["mean"]).sum(-1), 1.0)
    d = per_class_spread(det, x, num_samples=7)
    assert d["num_samples"] == 1 and np.allclose(d["std"], 0.0)


def test_weight_statistics_against_numpy() -> None:
    g = torch.Generator().manual_seed(0)
    base = torch.randn(200, 3, generator=g, dtype=torch.float64)
    w = torch.cat([base, base[:, :1] * 2 + 0.1 * torch.randn(200, 1, generator=g), base], 1)
    w[:, 5] = 1.0  # a coordinate with no spread
    stats = weight_statistics(w, kernel_size=5, num_first=4)
    assert torch.allclose(stats.std, torch.from_numpy(w.numpy().std(0, ddof=1)))
    ref = np.corrcoef(w[:, :5].numpy().T)
    assert np.allclose(stats.kernel_correlation.numpy(), ref)
    assert stats.first_params.shape == (200, 4)
    chunked = weight_statistics(iter(w.split(33)), kernel_size=5, num_first=4)
    assert torch.allclose(chunked.std, stats.std) and torch.allclose(chunked.mean, stats.mean)
    assert torch.allclose(chunked.kernel_correlation, stats.kernel_correlation)
    degenerate = weight_statistics(w[:, 4:7], kernel_size=3)
    assert degenerate.kernel_correlation[1].tolist() == [0.0, 1.0, 0.0]
    d = stats.to_dict()
    assert d["num_params"] == 7 and d["kernel_size"] == 5


def test_weight_statistics_bad_input() -> None:
    with pytest.raises(ValueError, match="at least 2 samples"):
        weight_statistics(torch.randn(1, 4))
    with pytest.raises(ValueError, match=r"weight_samples must be \[S, D\]"):
        weight_statistics(torch.randn(4))
    with pytest.raises(ValueError, match="weight_samples contains NaN"):
        weight_statistics(torch.full((3, 2), float("nan")))
