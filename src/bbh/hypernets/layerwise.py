"""The paper's layer-wise generator: one MLP per generated parameter tensor (PAPER.md 2.1)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from bbh.functional import ParamSpec
from bbh.hypernets.common import NoiseMode, check_generator_args, mlp, parse_noise_mode


class LayerwiseGenerator(nn.Module):
    """Noise ``z [S, k]`` -> flat weights ``[S, D]``, one MLP per tensor of ``spec``.

    Each generator maps ``concat(z, 1)`` through ``hidden`` LeakyReLU(0.1) layers (the paper:
    64, 256, 512) to the tensor's ``numel`` outputs. Its size is about ``hidden[-1] * D``: the
    faithful option, large for big nets (see ``ChunkedGenerator``).
    """

    def __init__(
        self,
        spec: ParamSpec,
        noise_dim: int = 8,
        hidden: Sequence[int] = (64, 256, 512),
        noise: NoiseMode | str = NoiseMode.ALIGNED,
        negative_slope: float = 0.1,
    ):
        super().__init__()
        self.hidden = check_generator_args(noise_dim, hidden)
        self.spec = spec
        self.noise_dim = noise_dim
        self.noise = parse_noise_mode(noise)
        self.generators = nn.ModuleList(
            mlp(noise_dim + 1, self.hidden, e.numel, negative_slope) for e in spec
        )

    def forward(self, num_samples: int, *, generator: torch.Generator | None = None) -> Tensor:
        """Draw ``num_samples`` joint weight samples ``[S, D]`` with fresh noise."""
        ref = next(self.parameters())
        n_noise = len(self.generators) if self.noise is NoiseMode.INDEPENDENT else 1
        z = torch.randn(
            n_noise, num_samples, self.noise_dim, generator=generator, device=ref.device
        ).to(ref.dtype)
        ones = torch.ones(n_noise, num_samples, 1, device=ref.device, dtype=ref.dtype)
        inputs = torch.cat([z, ones], dim=-1)
        outs = [g(inputs[i if n_noise > 1 else 0]) for i, g in enumerate(self.generators)]
        return torch.cat(outs, dim=1)
