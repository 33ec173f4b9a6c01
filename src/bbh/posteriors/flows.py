"""Masked RealNVP flows in the gated form of MNF (Louizos and Welling 2017; Dinh et al. 2017).

One step with a binary mask ``m``:

    h = tanh(f(m * z));  mu = g(h);  sigma = sigmoid(k(h))
    z' = m * z + (1 - m) * (z * sigma + (1 - sigma) * mu)
    log|det dz'/dz| = sum (1 - m) * log sigma

Masks alternate between the even and odd coordinates from step to step.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class MaskedCoupling(nn.Module):
    """One gated RealNVP step on ``[..., d]`` with a fixed mask."""

    mask: Tensor

    def __init__(self, dim: int, hidden: int, mask: Tensor):
        super().__init__()
        self.register_buffer("mask", mask.float())
        self.f = nn.Linear(dim, hidden)
        self.g = nn.Linear(hidden, dim)
        self.k = nn.Linear(hidden, dim)

    def forward(self, z: Tensor) -> tuple[Tensor, Tensor]:
        """``z [..., d] -> (z' [..., d], log|det| [...])``."""
        m = self.mask
        h = torch.tanh(self.f(m * z))
        mu = self.g(h)
        log_sigma = F.logsigmoid(self.k(h))
        sigma = log_sigma.exp()
        out = m * z + (1 - m) * (z * sigma + (1 - sigma) * mu)
        return out, ((1 - m) * log_sigma).sum(-1)


class MaskedRealNVP(nn.Module):
    """``num_steps`` gated coupling steps with alternating masks (MNF: 2 steps, hidden 50/100)."""

    def __init__(self, dim: int, num_steps: int = 2, hidden: int = 50):
        super().__init__()
        if dim < 1 or num_steps < 0 or hidden < 1:
            raise ValueError(f"bad flow sizes: dim={dim}, num_steps={num_steps}, hidden={hidden}")
        even = torch.arange(dim) % 2 == 0
        self.steps = nn.ModuleList(
            MaskedCoupling(dim, hidden, even if i % 2 == 0 else ~even) for i in range(num_steps)
        )

    def forward(self, z: Tensor) -> tuple[Tensor, Tensor]:
        """``z [..., d] -> (f(z) [..., d], log|det df/dz| [...])``."""
        logdet = z.new_zeros(z.shape[:-1])
        for step in self.steps:
            z, ld = step(z)
            logdet = logdet + ld
        return z, logdet
