"""From configs to data, nets and transforms."""

from __future__ import annotations

import torch

from bbh.data import cifar_eval_transform
from bbh.experiments.builders import _cifar_input


def test_cifar_input_transform_matches_uint8_path_and_is_differentiable():
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (4, 3, 32, 32), generator=g, dtype=torch.uint8)
    pixels = (images.float() / 255.0).requires_grad_(True)
    out = _cifar_input(pixels)
    assert out.shape == (4, 3, 24, 24)
    torch.testing.assert_close(out, cifar_eval_transform(images), atol=1e-4, rtol=1e-4)
    (grad,) = torch.autograd.grad(out[:, 0].sum(), pixels)  # attacks differentiate through it
    assert torch.isfinite(grad).all() and grad.abs().sum() > 0
