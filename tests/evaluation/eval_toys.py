"""Tiny image-classifier methods speaking the ``Method`` interface, for the evaluation tests."""

from __future__ import annotations

import torch
from torch import Tensor, nn

SIDE, CLASSES = 8, 4


class LinearImageMethod(nn.Module):
    """Deterministic linear classifier on flattened 8x8 images."""

    stochastic = False

    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.net = nn.Linear(SIDE * SIDE, CLASSES)
        with torch.no_grad():
            self.net.weight.mul_(5.0)

    def predict_logits(self, x: Tensor, num_samples: int = 100) -> Tensor:
        out = self.net(x.flatten(1))
        return out[None].expand(num_samples, *out.shape)

    @torch.no_grad()
    def predict(self, x: Tensor, num_samples: int = 100) -> Tensor:
        return self.predict_logits(x, num_samples).softmax(-1).mean(0)


class GaussianWeightMethod(LinearImageMethod):
    """Stochastic: Gaussian noise on the weights; exposes ``sample_weights``."""

    stochastic = True

    def __init__(self, seed: int = 0, scale: float = 0.5) -> None:
        super().__init__(seed)
        self.scale = scale
        self.gen = torch.Generator().manual_seed(seed + 1)

    def sample_weights(self, num_samples: int) -> Tensor:
        w = self.net.weight.flatten()
        noise = torch.randn(num_samples, w.numel(), generator=self.gen)
        return w + self.scale * noise

    def predict_logits(self, x: Tensor, num_samples: int = 100) -> Tensor:
        w = self.sample_weights(num_samples).view(num_samples, CLASSES, SIDE * SIDE)
        return torch.einsum("bi,sci->sbc", x.flatten(1), w) + self.net.bias


def images(n: int, seed: int = 0) -> tuple[Tensor, Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 1, SIDE, SIDE, generator=g), torch.randint(0, CLASSES, (n,), generator=g)
