"""The paper's layer-wise generator: one MLP per generated parameter tensor.

As in the paper's code (pawni/BayesByHypernet, ``base_layers.BBHLayer._get_weight`` with
``--layer_wise_gen``, the setting of every run in its README).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import cast

import torch
from torch import Tensor, nn

from bbh.functional import ParamSpec
from bbh.hypernets.common import (
    NoiseMode,
    check_generator_args,
    mlp,
    mlp_with_tangents,
    parse_noise_mode,
)


class LayerwiseGenerator(nn.Module):
    """Noise ``z [S, k]`` -> flat weights ``[S, D]``, one MLP per tensor of ``spec``.

    Each generator maps ``concat(z, 1)`` through ``hidden`` LeakyReLU(0.1) layers (the paper:
    64, 256, 512) to the tensor's ``numel`` outputs. Its size is about ``hidden[-1] * D``: the
    faithful option, large for big nets (see ``ChunkedGenerator``). ``hidden=()`` makes each
    generator affine in z.

    Noise: ``aligned`` draws one ``z`` for every tensor, ``independent`` one per tensor; either
    way ``draw_noise`` returns ``[S, n_blocks, k]`` and ``noise_segments`` says which contiguous
    run of the flat weights each block drives.

    Args:
        spec: The layout of the flat weights ``[D]`` (the primary net's parameters).
        noise_dim: k, the size of each noise block ``z``.
        hidden: The MLP's hidden widths (LeakyReLU layers); ``()``: each generator is affine in z.
        noise: ``"aligned"`` (one ``z`` for all tensors) or ``"independent"`` (one per tensor).
        negative_slope: The LeakyReLU's slope.
        init: For an affine generator, the biases' initial value ``[D]`` (BbH: the net's own
            initial weights); None, or with hidden layers: the layers' default init.
        init_noise_scale: For an affine generator, the standard deviation of the initial
            loadings (the initial spread of each weight); unused with hidden layers.

    Raises:
        ValueError: ``noise_dim`` or a width is not a positive int, ``noise`` is not a noise
            mode, or ``init`` is not ``[D]``.
    """

    def __init__(
        self,
        spec: ParamSpec,
        noise_dim: int = 8,
        hidden: Sequence[int] = (64, 256, 512),
        noise: NoiseMode | str = NoiseMode.ALIGNED,
        negative_slope: float = 0.1,
        init: Tensor | None = None,
        init_noise_scale: float = 0.01,
    ):
        super().__init__()
        self.hidden = check_generator_args(noise_dim, hidden)
        if init is not None and tuple(init.shape) != (spec.dim,):
            raise ValueError(f"init must have shape [{spec.dim}], got {list(init.shape)}")
        self.spec = spec
        self.noise_dim = noise_dim
        self.noise = parse_noise_mode(noise)
        # the paper's input is concat(z, 1); without hidden layers the 1 would only repeat the
        # output bias, so an affine generator maps z alone: its weight is the loadings A
        self.generators = nn.ModuleList(
            mlp(noise_dim + self._const, self.hidden, e.numel, negative_slope) for e in spec
        )
        # An affine generator takes z / sqrt(k), so that an Adam step of lr on its loadings moves
        # each weight by about lr (not k lr); its loadings start at ``init_noise_scale`` (the
        # generated spread of each weight) and its biases, the means, at ``init`` (BbH: the
        # net's own initial values). The paper's generators keep TF's Xavier/zero init.
        self.input_scale = 1.0 / math.sqrt(noise_dim) if self.affine else 1.0
        if self.affine:
            with torch.no_grad():
                for g, e in zip(self.generators, spec, strict=True):
                    layer = cast(nn.Linear, cast(nn.Sequential, g)[0])
                    layer.weight.normal_(0.0, init_noise_scale)
                    if init is not None:
                        layer.bias.copy_(init[e.offset : e.offset + e.numel])

    @property
    def noise_segments(self) -> tuple[int, ...]:
        """Sizes of the contiguous runs of ``[D]`` driven by each noise block (sum = D)."""
        if self.noise is NoiseMode.INDEPENDENT:
            return tuple(e.numel for e in self.spec)
        return (self.spec.dim,)

    def draw_noise(self, num_samples: int, *, generator: torch.Generator | None = None) -> Tensor:
        """Fresh noise ``z [S, n_blocks, k]`` (one block, or one per tensor).

        Args:
            num_samples: S, the number of draws.
            generator: The random generator to draw from (on the parameters' device); None:
                the global one.

        Returns:
            Standard normal noise ``[S, n_blocks, k]`` in the parameters' dtype.
        """
        ref = next(self.parameters())
        n = len(self.noise_segments)
        z = torch.randn(n, num_samples, self.noise_dim, generator=generator, device=ref.device)
        return z.to(ref.dtype).transpose(0, 1)

    def generate(self, z: Tensor) -> Tensor:
        """Flat weights ``[S, D]`` for given noise ``z [S, n_blocks, k]``.

        Args:
            z: Noise ``[S, n_blocks, k]`` (``draw_noise``); one block drives every tensor.

        Returns:
            The flat weights ``[S, D]``, differentiable in the generator's parameters.
        """
        return torch.cat([g(x) for g, x in zip(self.generators, self._inputs(z), strict=True)], 1)

    @property
    def _const(self) -> int:
        """Width of the constant input appended to z: 1 (the paper's), 0 for an affine map."""
        return 1 if self.hidden else 0

    @property
    def affine(self) -> bool:
        """True without hidden layers: ``G(z) = A z + b``, a Jacobian that does not depend on z."""
        return not self.hidden

    def noise_loadings(self) -> list[Tensor]:
        """Per tensor, the ``[numel, k]`` columns of its affine map that multiply the noise.

        Returns:
            One loading matrix ``A`` per tensor (scaled by ``input_scale``, so that
            ``G(z) = A z + b``), differentiable in the parameters.

        Raises:
            RuntimeError: The generator has hidden layers (it is not affine).
        """
        if not self.affine:
            raise RuntimeError("noise_loadings needs an affine generator (hidden=())")
        return [
            cast(nn.Linear, cast(nn.Sequential, g)[0]).weight * self.input_scale
            for g in self.generators
        ]

    def noise_offsets(self) -> list[Tensor]:
        """Per tensor, the ``[numel]`` offsets b of its affine map (the weights' mean).

        Returns:
            One offset vector ``b`` per tensor (the affine layers' biases, not copies).

        Raises:
            RuntimeError: The generator has hidden layers (it is not affine).
        """
        if not self.affine:
            raise RuntimeError("noise_offsets needs an affine generator (hidden=())")
        return [cast(nn.Linear, cast(nn.Sequential, g)[0]).bias for g in self.generators]

    def generate_with_tangents(self, z: Tensor, dz: Tensor) -> tuple[Tensor, Tensor]:
        """Weights ``[S, D]`` and derivatives ``[T, S, D]`` along ``dz [T, S, n_blocks, k]``.

        Args:
            z: Noise ``[S, n_blocks, k]``.
            dz: T tangent directions in noise space ``[T, S, n_blocks, k]`` (one block is
                broadcast to every tensor).

        Returns:
            The pair ``(w, dw)``, the weights ``[S, D]`` and their directional derivatives
            ``dG/dz . dz`` ``[T, S, D]`` (forward-mode, through the MLP).
        """
        zero = dz.new_zeros(*dz.shape[:-2], self._const)
        outs, douts = [], []
        for i, (g, x) in enumerate(zip(self.generators, self._inputs(z), strict=True)):
            j = i if dz.shape[-2] > 1 else 0
            w, dw = mlp_with_tangents(
                cast(nn.Sequential, g), x, torch.cat([dz[..., j, :] * self.input_scale, zero], -1)
            )
            outs.append(w)
            douts.append(dw)
        return torch.cat(outs, 1), torch.cat(douts, 2)

    def forward(self, num_samples: int, *, generator: torch.Generator | None = None) -> Tensor:
        """Draw ``num_samples`` joint weight samples ``[S, D]`` with fresh noise.

        Args:
            num_samples: S, the number of draws.
            generator: The random generator for the noise; None: the global one.

        Returns:
            The weights ``[S, D]``, ``generate(draw_noise(S))``.
        """
        return self.generate(self.draw_noise(num_samples, generator=generator))

    def _inputs(self, z: Tensor) -> list[Tensor]:
        """Per tensor, the generator input ``concat(z_block, 1)`` ``[S, k + 1]`` (affine: z)."""
        ones = z.new_ones(z.shape[0], self._const)
        z = z * self.input_scale
        blocks = [z[:, i if z.shape[1] > 1 else 0] for i in range(len(self.generators))]
        return [torch.cat([b, ones], dim=-1) for b in blocks]
