"""Tiny test methods speaking the ``Method`` interface (no dependency on real methods)."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn


class LinearMethod(nn.Module):
    """Deterministic: ``predict_logits`` repeats ``net(x)`` S times."""

    stochastic = False

    def __init__(self, in_features: int = 12, num_classes: int = 3, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.net = nn.Linear(in_features, num_classes).double()
        with torch.no_grad():
            self.net.weight.mul_(4.0)

    def predict_logits(self, x: Tensor, num_samples: int = 100) -> Tensor:
        out = self.net(x.flatten(1))
        return out[None].expand(num_samples, *out.shape)

    @torch.no_grad()
    def predict(self, x: Tensor, num_samples: int = 100) -> Tensor:
        return self.predict_logits(x, num_samples).softmax(-1).mean(0)


class DropoutMethod(LinearMethod):
    """Stochastic: an input-dropout mask (p = 0.3) per weight draw."""

    stochastic = True

    def __init__(self, *args, p: float = 0.3, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.p = p
        self.gen = torch.Generator().manual_seed(123)

    def predict_logits(self, x: Tensor, num_samples: int = 100) -> Tensor:
        flat = x.flatten(1)
        keep = torch.rand(num_samples, 1, flat.shape[1], generator=self.gen) > self.p
        return self.net(flat[None] * keep.to(flat.dtype) / (1 - self.p))


def make_data(n: int = 40, d: int = 12, c: int = 3, seed: int = 0) -> tuple[Tensor, Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, d, generator=g, dtype=torch.float64)
    y = torch.randint(0, c, (n,), generator=g)
    return x, y


@pytest.fixture
def linear() -> LinearMethod:
    return LinearMethod()


@pytest.fixture
def dropout() -> DropoutMethod:
    return DropoutMethod()


@pytest.fixture
def data() -> tuple[Tensor, Tensor]:
    return make_data()
