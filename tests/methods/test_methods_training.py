"""Every registered method trains through the one loop (``bbh.training.fit``) to well above chance.

The task: 8x8 single-channel images of 4 classes, class c being a bright 4x4 patch in quadrant c
plus Gaussian pixel noise (chance accuracy 25%).
"""

from __future__ import annotations

import pytest
import torch
from method_helpers import small_options

from bbh.methods import available, build
from bbh.nets.convnet import TinyConvNet
from bbh.training import fit


def patch_images(n: int, seed: int, noise: float = 0.6) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 4, (n,), generator=gen)
    x = noise * torch.randn(n, 1, 8, 8, generator=gen)
    for c in range(4):
        r, col = divmod(c, 2)
        x[y == c, :, 4 * r : 4 * r + 4, 4 * col : 4 * col + 4] += 1.0
    return x, y


TRAIN = {
    "map": {},
    "mc_dropout": {"p": 0.2},
    "ensemble": {"num_members": 3},
    "bbb": {},
    "mnf": {"flow_hidden": 8, "aux_flow_hidden": 8},
    "bbh": {"noise_dim": 8, "num_samples": 5, "hidden": (32,), "nll": "mean"},
}


@pytest.mark.parametrize("name", available())
def test_trains_well_above_chance_on_a_synthetic_image_task(name: str) -> None:
    x, y = patch_images(1024, seed=0)
    x_test, y_test = patch_images(256, seed=1)
    torch.manual_seed(0)
    options = TRAIN.get(name, small_options(name))
    method = build(name, TinyConvNet(in_channels=1, num_classes=4, channels=6), **options)
    result = fit(method, x, y, steps=150, batch_size=64, lr=3e-3, seed=0)
    assert all(torch.isfinite(torch.tensor(list(row.values()))).all() for row in result.logs)
    with torch.no_grad():
        acc = (method.predict(x_test, 10).argmax(-1) == y_test).float().mean().item()
    assert acc > 0.7, f"{name}: test accuracy {acc:.3f} (chance 0.25)"
