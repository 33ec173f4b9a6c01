"""Priors over the generated weights: ``N(0, prior_scale^2 I)`` (PAPER.md section 1)."""

from __future__ import annotations

import math

import torch
from torch import Tensor


class GaussianPrior:
    """Isotropic Gaussian prior ``N(0, scale^2 I)`` over the D generated scalars."""

    def __init__(self, scale: float = 1.0):
        if not (isinstance(scale, (int, float)) and scale > 0 and math.isfinite(scale)):
            raise ValueError(f"prior_scale must be a positive finite number, got {scale!r}")
        self.scale = float(scale)

    def sample(
        self,
        num_samples: int,
        dim: int,
        *,
        generator: torch.Generator | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> Tensor:
        """Draw ``[num_samples, dim]`` prior samples."""
        return self.scale * torch.randn(
            num_samples, dim, generator=generator, device=device, dtype=dtype
        )

    def log_prob(self, w: Tensor) -> Tensor:
        """``log p(w)`` summed over the last axis: ``[..., D] -> [...]`` (exact, closed form)."""
        d = w.shape[-1]
        return -0.5 * w.pow(2).sum(-1) / self.scale**2 - d * (
            math.log(self.scale) + 0.5 * math.log(2 * math.pi)
        )

    def __repr__(self) -> str:
        return f"GaussianPrior(scale={self.scale})"
