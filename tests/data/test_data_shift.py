"""Shifted test sets (bbh.data.shift): rotations and the common corruptions."""

from __future__ import annotations

import sys
from itertools import pairwise

import pytest
import torch

from bbh.data import (
    CORRUPTIONS,
    EXTRA_CORRUPTIONS,
    ROTATION_ANGLES,
    Shift,
    corrupt,
    corruption_shifts,
    rotate,
    rotation_shifts,
)
from bbh.evaluation import rotate_images


def _smooth_images(n: int = 6, channels: int = 3, side: int = 32, seed: int = 0) -> torch.Tensor:
    """Images with structure at several scales, in [0.1, 0.9] (so no corruption starts clipped)."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(n, channels, side // 4, side // 4, generator=g)
    fine = torch.rand(n, channels, side, side, generator=g)
    up = torch.nn.functional.interpolate(coarse, size=(side, side), mode="bilinear")
    return 0.1 + 0.8 * (0.7 * up + 0.3 * fine)


def test_rotation_by_zero_is_the_identity() -> None:
    x = _smooth_images(channels=1, side=28)
    assert torch.allclose(rotate(x, 0.0), x, atol=1e-6)


@pytest.mark.parametrize("k", [1, 2, 3])
def test_rotation_by_quarter_turns_equals_rot90(k: int) -> None:
    x = _smooth_images(channels=3, side=16)
    out = rotate(x, 90.0 * k)
    expected = torch.rot90(x, k, dims=(-2, -1))  # counter-clockwise as displayed
    # a square image's grid maps onto itself: equal up to interpolation round-off at the border
    assert torch.allclose(out[..., 1:-1, 1:-1], expected[..., 1:-1, 1:-1], atol=1e-5)
    assert (out - expected).abs().mean() < 1e-4


def test_rotation_agrees_with_the_single_image_sweep_and_keeps_shape_and_dtype() -> None:
    x = _smooth_images(n=3, channels=1, side=12)
    for angle in (15.0, 100.0):
        sweep = torch.stack([rotate_images(img, [angle])[0] for img in x])
        assert torch.allclose(rotate(x, angle), sweep, atol=1e-6)
    flat = x.reshape(3, 144)
    assert rotate(flat, 30.0).shape == (3, 144)
    assert rotate(x[:, 0], 30.0).shape == (3, 12, 12)
    as_bytes = (x * 255).round().to(torch.uint8)
    out = rotate(as_bytes, 45.0)
    assert out.dtype == torch.uint8 and out.shape == as_bytes.shape
    with pytest.raises(ValueError, match="images"):
        rotate(torch.rand(3, 10), 10.0)  # 10 is not a square
    with pytest.raises(TypeError, match="floating or uint8"):
        rotate(torch.zeros(2, 1, 4, 4, dtype=torch.int64), 10.0)


@pytest.mark.parametrize("name", [c for c in CORRUPTIONS if c != "jpeg_compression"])
def test_corruptions_keep_shape_range_and_grow_with_severity(name: str) -> None:
    x = _smooth_images()
    changes = []
    for severity in range(1, 6):
        out = corrupt(x, name, severity, seed=3)
        assert out.shape == x.shape and out.dtype == x.dtype
        assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0
        assert torch.isfinite(out).all()
        changes.append(float((out - x).abs().mean()))
    assert changes[0] > 0
    assert all(b > a for a, b in pairwise(changes)), changes


def test_jpeg_compression_grows_with_severity() -> None:
    pytest.importorskip("PIL", reason="jpeg_compression needs Pillow (the images extra)")
    x = _smooth_images()
    changes = [float((corrupt(x, "jpeg_compression", s) - x).abs().mean()) for s in range(1, 6)]
    assert all(b > a for a, b in pairwise(changes)), changes


def test_jpeg_compression_without_pillow_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "PIL", None)  # import PIL now raises ImportError
    with pytest.raises(ImportError, match=r"bayes-by-hypernet\[images\]"):
        corrupt(_smooth_images(n=1), "jpeg_compression", 1)


@pytest.mark.parametrize("name", EXTRA_CORRUPTIONS)
def test_extra_corruptions_keep_shape_and_range(name: str) -> None:
    x = _smooth_images()
    for severity in (1, 5):
        out = corrupt(x, name, severity)
        assert out.shape == x.shape and 0.0 <= float(out.min()) <= float(out.max()) <= 1.0
        assert float((out - x).abs().mean()) > 0


def test_corruptions_are_seeded_and_keep_uint8() -> None:
    x = _smooth_images(n=2)
    a, b = corrupt(x, "shot_noise", 3, seed=1), corrupt(x, "shot_noise", 3, seed=1)
    assert torch.equal(a, b)
    assert not torch.equal(a, corrupt(x, "shot_noise", 3, seed=2))
    as_bytes = (x * 255).round().to(torch.uint8)
    out = corrupt(as_bytes, "contrast", 5)
    assert out.dtype == torch.uint8 and out.shape == as_bytes.shape
    grey = _smooth_images(n=2, channels=1)
    assert corrupt(grey, "brightness", 2).shape == grey.shape


def test_bad_corruption_arguments_are_clear_errors() -> None:
    x = _smooth_images(n=1)
    with pytest.raises(ValueError, match="unknown corruption 'glass_blur'"):
        corrupt(x, "glass_blur", 1)
    with pytest.raises(ValueError, match="severity"):
        corrupt(x, "fog", 6)
    with pytest.raises(ValueError, match="3 \\(RGB\\)"):
        corrupt(_smooth_images(n=1, channels=1), "saturate", 1)
    with pytest.raises(ValueError, match=r"\[N, C, H, W\]"):
        corrupt(x[0], "fog", 1)


def test_shift_lists_and_names() -> None:
    rot = rotation_shifts()
    assert [s.intensity for s in rot] == list(ROTATION_ANGLES)
    assert ROTATION_ANGLES[0] == 0.0 and ROTATION_ANGLES[-1] == 180.0
    assert rot[3].name == "rotation_45"
    cor = corruption_shifts(["fog", "contrast"], [1, 5])
    assert [s.name for s in cor] == ["fog_1", "fog_5", "contrast_1", "contrast_5"]
    x = _smooth_images(n=2)
    assert torch.equal(Shift("fog", 2).apply(x, seed=4), corrupt(x, "fog", 2, seed=4))
    assert torch.equal(Shift("rotation", 30).apply(x), rotate(x, 30))
    with pytest.raises(ValueError, match="unknown corruption"):
        Shift("snow", 1)
    with pytest.raises(ValueError, match="empty"):
        rotation_shifts([])


def test_rotated_mnist_on_the_real_test_images(real_root) -> None:
    from bbh.data import load_mnist

    x = load_mnist(real_root).test.images[:200]
    assert x.shape[1:] == (1, 28, 28)
    quarter = rotate(x, 90.0)
    assert torch.allclose(quarter, torch.rot90(x, 1, dims=(-2, -1)), atol=1e-5)
    # a 45 degree turn keeps the ink of a centred digit: the pixel mass moves, little is lost
    kept = rotate(x, 45.0).sum(dim=(1, 2, 3)) / x.sum(dim=(1, 2, 3))
    assert float(kept.min()) > 0.9
