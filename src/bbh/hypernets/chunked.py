"""A chunked generator: one shared MLP emits the weights chunk by chunk (our scalable variant).

The flat vector ``[D]`` is cut into ``C`` chunks of ``chunk_size``; chunk ``c`` is
``MLP(concat(z, e_c))`` with a learned embedding ``e_c``. With ``C <= hidden[-1] + 1`` the
chunk matrix ``[C, chunk_size]`` can take any value, so by default ``chunk_size =
ceil(D / hidden[-1])``. A free per-weight offset carries the mean of each weight (as the output
bias of the layer-wise generator does; BbH starts it at the primary net's own initial values).
The generator then has about ``2 D`` parameters, against ``hidden[-1] * D`` for the layer-wise
generator (the paper's code, pawni/BayesByHypernet, has a variant with one-hot chunk codes:
``networks.get_bbh_mnist`` without ``layer_wise``). The shared output layer has
``hidden[-1] * chunk_size`` of them: more chunks (``num_chunks``) make it smaller, down to about
``D / 16`` with 256 chunks, and since the offset carries the means it costs q nothing there.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, cast

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


class ChunkedGenerator(nn.Module):
    """Noise ``z [S, k]`` -> flat weights ``[S, D]`` through one MLP shared by all chunks.

    Args:
        spec: The layout of the flat weights ``[D]`` (the primary net's parameters).
        noise_dim: k, the size of each noise block ``z``.
        hidden: The MLP's hidden widths (LeakyReLU layers); ``()``: each chunk is an affine
            map of ``concat(z, e_c)``.
        noise: ``"aligned"`` (one ``z`` for all chunks) or ``"independent"`` (one per chunk).
        chunk_size: The weights per chunk; None: from ``num_chunks``, else
            ``ceil(D / hidden[-1])`` (so that the chunk matrix can take any value).
        num_chunks: The number of chunks C, instead of ``chunk_size``.
        embedding_dim: The size of each chunk's learned embedding ``e_c``.
        negative_slope: The LeakyReLU's slope.
        init: The per-weight offset's initial value ``[D]`` (BbH: the net's own initial
            weights); None: zeros.
        init_noise_scale: Scales the output layer's initial weights (the initial spread that
            the noise gives each weight).
        noise_mixing: Add a free linear path ``B_c z`` from the noise into each chunk's
            output-layer input (starts at 0), so that q can take a dense low-rank covariance.

    Raises:
        ValueError: ``noise_dim``, a width, ``embedding_dim``, ``chunk_size`` or
            ``num_chunks`` is not a positive int; both ``chunk_size`` and ``num_chunks`` are
            given; ``noise`` is not a noise mode; or ``init`` is not ``[D]``.
    """

    def __init__(
        self,
        spec: ParamSpec,
        noise_dim: int = 8,
        hidden: Sequence[int] = (64, 256, 512),
        noise: NoiseMode | str = NoiseMode.ALIGNED,
        chunk_size: int | None = None,
        num_chunks: int | None = None,
        embedding_dim: int = 64,
        negative_slope: float = 0.1,
        init: Tensor | None = None,
        init_noise_scale: float = 0.1,
        noise_mixing: bool = False,
    ):
        super().__init__()
        self.hidden = check_generator_args(noise_dim, hidden)
        if not isinstance(embedding_dim, int) or embedding_dim < 1:
            raise ValueError(f"embedding_dim must be an int >= 1, got {embedding_dim!r}")
        width = self.hidden[-1] if self.hidden else noise_dim + embedding_dim
        if chunk_size is not None and num_chunks is not None:
            raise ValueError("give chunk_size or num_chunks, not both")
        if num_chunks is not None:
            if not isinstance(num_chunks, int) or num_chunks < 1:
                raise ValueError(f"num_chunks must be an int >= 1, got {num_chunks!r}")
            chunk_size = math.ceil(spec.dim / num_chunks)
        if chunk_size is None:
            chunk_size = math.ceil(spec.dim / width)
        if not isinstance(chunk_size, int) or chunk_size < 1:
            raise ValueError(f"chunk_size must be an int >= 1, got {chunk_size!r}")
        if init is not None and tuple(init.shape) != (spec.dim,):
            raise ValueError(f"init must have shape [{spec.dim}], got {list(init.shape)}")
        self.spec = spec
        self.noise_dim = noise_dim
        self.noise = parse_noise_mode(noise)
        self.chunk_size = chunk_size
        self.num_chunks = math.ceil(spec.dim / chunk_size)
        self.embeddings = nn.Parameter(torch.randn(self.num_chunks, embedding_dim))
        self.net = mlp(noise_dim + embedding_dim, self.hidden, chunk_size, negative_slope)
        # ``noise_mixing``: a free linear path from the noise into each chunk's output-layer
        # input, ``h_c += B_c z`` (B_c starts at 0). Without it the chunks differ only through
        # the MLP's gating of ``e_c``, so the directions in which a chunk moves with z are nearly
        # the same for every chunk and q cannot take a dense low-rank covariance
        # (docs/posterior_check.md). ``[C, width, k]`` is about width^2 * k numbers with the
        # default chunk size: 2,048 for hidden (64, 16) and k = 8, 2.1M for a width of 512.
        self.noise_mixing = (
            nn.Parameter(torch.zeros(self.num_chunks, width, noise_dim)) if noise_mixing else None
        )
        # The output layer is shared by every chunk, so an Adam step on it moves all D weights
        # at once, by about lr * width: its weights enter through a multiplier 1/width
        # (stored values scaled up to match, times ``init_noise_scale``), which makes the step
        # on each generated weight about lr, as for the offset.
        self.output_multiplier = 1.0 / width
        with torch.no_grad():
            self._out.weight.mul_(init_noise_scale / self.output_multiplier)
        # A free per-weight offset carries each weight's mean (like the per-tensor output bias of
        # the layer-wise generator); ``BayesByHypernet`` starts it at the net's own init.
        self.offset = nn.Parameter(torch.zeros(spec.dim) if init is None else init.clone())

    @property
    def _out(self) -> nn.Linear:
        return cast(nn.Linear, self.net[-1])

    @property
    def noise_segments(self) -> tuple[int, ...]:
        """Sizes of the contiguous runs of ``[D]`` driven by each noise block (sum = D)."""
        if self.noise is NoiseMode.INDEPENDENT:
            last = self.spec.dim - (self.num_chunks - 1) * self.chunk_size
            return (self.chunk_size,) * (self.num_chunks - 1) + (last,)
        return (self.spec.dim,)

    def draw_noise(self, num_samples: int, *, generator: torch.Generator | None = None) -> Tensor:
        """Fresh noise ``z [S, n_blocks, k]`` (one block, or one per chunk).

        Args:
            num_samples: S, the number of draws.
            generator: The random generator to draw from (on the parameters' device); None:
                the global one.

        Returns:
            Standard normal noise ``[S, n_blocks, k]`` in the parameters' dtype.
        """
        emb = self.embeddings
        n = self.num_chunks if self.noise is NoiseMode.INDEPENDENT else 1
        z = torch.randn(num_samples, n, self.noise_dim, generator=generator, device=emb.device)
        return z.to(emb.dtype)

    def generate(self, z: Tensor) -> Tensor:
        """Flat weights ``[S, D]`` for given noise ``z [S, n_blocks, k]``.

        Args:
            z: Noise ``[S, n_blocks, k]`` (``draw_noise``); one block drives every chunk.

        Returns:
            The flat weights ``[S, D]``, differentiable in the generator's parameters.
        """
        h = self._mix(self.net[:-1](self._inputs(z)), z)
        return self._output(h, bias=True) + self.offset

    def generate_with_tangents(self, z: Tensor, dz: Tensor) -> tuple[Tensor, Tensor]:
        """Weights ``[S, D]`` and derivatives ``[T, S, D]`` along ``dz [T, S, n_blocks, k]``.

        Args:
            z: Noise ``[S, n_blocks, k]``.
            dz: T tangent directions in noise space ``[T, S, n_blocks, k]`` (one block is
                broadcast to every chunk).

        Returns:
            The pair ``(w, dw)``, the weights ``[S, D]`` and their directional derivatives
            ``dG/dz . dz`` ``[T, S, D]`` (forward-mode, through the MLP).
        """
        s = z.shape[0]
        dz = dz.expand(*dz.shape[:2], self.num_chunks, self.noise_dim)
        dx = torch.cat([dz, dz.new_zeros(*dz.shape[:3], self.embeddings.shape[1])], dim=-1)
        h, dh = mlp_with_tangents(cast(nn.Sequential, self.net[:-1]), self._inputs(z), dx)
        h, dh = self._mix(h, z), self._mix(dh, dz)
        w = self._output(h, bias=True) + self.offset
        return w, self._output(dh, bias=False).reshape(-1, s, w.shape[1])

    def jacobian_grams(self, z: Tensor, log_sigma: Tensor, *, chunks: int | None = None) -> Tensor:
        """``J^T diag(sigma^-2) J`` per noise block, ``J = dG/dz [D, k]`` at each draw.

        ``z [J, n_blocks, k]``, ``log_sigma [D]`` -> ``[J, n_blocks, k, k]``; the same as
        ``bbh.divergences.jacobian.block_grams`` of ``generate_with_tangents`` along the unit
        directions, fused: the output layer's tangents ``dh W^T`` are never stored, only formed
        tile by tile into one Gram per chunk (``_ChunkGram``; the padding of the last chunk gets
        weight 0 instead of a slice).

        ``chunks`` (aligned noise only): the Gram from that many chunks drawn at random without
        replacement, times ``C / chunks`` (unbiased for the Gram; its cost falls in proportion).

        Args:
            z: The noise draws ``[J, n_blocks, k]`` at which the generator is linearised.
            log_sigma: The posterior's log standard deviations ``[D]`` (``Sigma = diag(sigma^2)``).
            chunks: With aligned noise, the number of random chunks to form the Gram from;
                None: all chunks.

        Returns:
            The Grams ``[J, n_blocks, k, k]``, differentiable in the parameters and
            ``log_sigma``.

        Raises:
            ValueError: ``chunks`` is given with independent noise.
        """
        k, c = self.noise_dim, self.num_chunks
        if chunks is not None and self.noise is not NoiseMode.ALIGNED:
            raise ValueError("jacobian_chunks needs aligned noise (one noise block)")
        eye = torch.eye(k, dtype=z.dtype, device=z.device)
        dz = eye[:, None, None, :].expand(k, z.shape[0], c, k)
        dx = torch.cat([dz, dz.new_zeros(*dz.shape[:3], self.embeddings.shape[1])], dim=-1)
        _, dh = mlp_with_tangents(cast(nn.Sequential, self.net[:-1]), self._inputs(z), dx)
        if self.noise_mixing is not None:  # the linear path's tangent along e_i is B_c[:, i]
            dh = dh + self.noise_mixing.permute(2, 0, 1).unsqueeze(1)
        dh = dh.permute(1, 2, 0, 3) * self.output_multiplier  # [J, C, k, width]
        picked, scale = None, 1.0
        if chunks is not None and chunks < c:
            picked = torch.randperm(c, device=dh.device)[:chunks]
            dh, scale = dh[:, picked], c / chunks
        grams = _ChunkGram.apply(dh, self._out.weight, log_sigma, picked)  # [J, C', k, k]
        if self.noise is NoiseMode.ALIGNED:
            return grams.sum(1, keepdim=True) * scale
        return grams

    def forward(self, num_samples: int, *, generator: torch.Generator | None = None) -> Tensor:
        """Draw ``num_samples`` joint weight samples ``[S, D]`` with fresh noise.

        Args:
            num_samples: S, the number of draws.
            generator: The random generator for the noise; None: the global one.

        Returns:
            The weights ``[S, D]``, ``generate(draw_noise(S))``.
        """
        return self.generate(self.draw_noise(num_samples, generator=generator))

    def _inputs(self, z: Tensor) -> Tensor:
        """Per chunk, the MLP input ``concat(z_block, e_c)`` ``[S, C, k + embedding_dim]``."""
        s = z.shape[0]
        z = z.expand(s, self.num_chunks, self.noise_dim)
        e = self.embeddings.unsqueeze(0).expand(s, -1, -1)
        return torch.cat([z, e], dim=-1)

    def _mix(self, h: Tensor, z: Tensor) -> Tensor:
        """``h [..., C, width]`` plus the linear noise path ``B_c z`` (z ``[..., n_blocks, k]``)."""
        if self.noise_mixing is None:
            return h
        z = z.expand(*z.shape[:-2], self.num_chunks, self.noise_dim)
        return h + torch.einsum("...ck,cwk->...cw", z, self.noise_mixing)

    def _output(self, h: Tensor, *, bias: bool) -> Tensor:
        """The shared output layer on ``h [..., C, width]`` -> flat ``[..., D]``."""
        out = self._out  # the multiplier on h [..., C, width], not on the weight [chunk, width]
        chunks = nn.functional.linear(
            h * self.output_multiplier, out.weight, out.bias if bias else None
        )
        return chunks.reshape(*chunks.shape[:-2], -1)[..., : self.spec.dim]


#: On a CPU, ``_ChunkGram`` works through the chunk in column tiles of about this many floats per
#: ``[J, C, k, tile]`` temporary, so that they stay in cache (LeNet-5: 2048 columns; measured
#: against whole chunks in ``benchmarks/ab_jacobian.py``). On a GPU one tile spans the chunk.
CPU_TILE_FLOATS = 1 << 18


class _ChunkGram(torch.autograd.Function):
    """Per chunk, ``a diag(sigma^-2) a^T`` of the output layer's tangents ``a = dh W^T``.

    ``dh [J, C', k, width]`` (the chunks ``picked [C']``, or all), ``W [chunk, width]``,
    ``log_sigma [D]`` -> ``[J, C', k, k]``. The weights ``w = sigma^-2`` are laid out
    ``[C, chunk]`` with zeros on the padding of the last chunk. Nothing of size ``[k, D]`` is
    kept: forward and backward form ``a`` tile by tile (columns of the chunk), and the backward
    takes ``ga = (G + G^T) a w`` once per tile and builds every gradient from it:
    ``d/da = ga``, ``d/dlog_sigma = -sum a * ga`` (no division by ``w``).
    """

    @staticmethod
    def forward(
        ctx: Any, dh: Tensor, weight: Tensor, log_sigma: Tensor, picked: Tensor | None
    ) -> Tensor:
        j, c, k, _ = dh.shape
        dh = dh.contiguous()
        d, chunk = log_sigma.shape[0], weight.shape[0]
        w_all = log_sigma.new_zeros(-(-d // chunk) * chunk)
        torch.mul(log_sigma, -2, out=w_all[:d]).exp_()
        w = w_all.view(-1, chunk) if picked is None else w_all.view(-1, chunk)[picked]
        w = w.unsqueeze(1)  # [C', 1, chunk]
        gram = dh.new_zeros(j * c, k, k)
        for cols in _tiles(dh, chunk):
            a = dh @ weight[cols].t()  # [J, C', k, tile]
            aw = (a * w[..., cols]).view(j * c, k, -1)
            gram.baddbmm_(aw, a.view(j * c, k, -1).transpose(-1, -2))
        ctx.save_for_backward(dh, weight, w, picked)
        ctx.dim, ctx.padded = d, w_all.shape[0]
        return gram.view(j, c, k, k)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, Tensor, Tensor, None]:
        dh, weight, w, picked = ctx.saved_tensors
        g_sym = grad + grad.transpose(-1, -2)
        dh_rows = dh.view(-1, dh.shape[-1])  # [J C' k, width]
        grad_dh = torch.zeros_like(dh)
        grad_weight = torch.empty_like(weight)
        grad_log_sigma = w.new_empty(w.shape[0], w.shape[2])  # [C', chunk]
        for cols in _tiles(dh, weight.shape[0]):
            tile = weight[cols]
            a = dh @ tile.t()  # recomputed: cheaper than keeping [J, C', k, chunk]
            ga = g_sym @ (a * w[..., cols])  # d gram / d a, [J, C', k, tile]
            grad_dh.add_(ga @ tile)
            torch.mm(ga.view(-1, ga.shape[-1]).t(), dh_rows, out=grad_weight[cols])
            grad_log_sigma[:, cols] = a.mul_(ga).sum((0, 2)).neg_()
        if picked is not None:
            grad_log_sigma = grad_log_sigma.new_zeros(
                ctx.padded // weight.shape[0], weight.shape[0]
            ).index_copy_(0, picked, grad_log_sigma)
        return grad_dh, grad_weight, grad_log_sigma.view(-1)[: ctx.dim], None


def _tiles(dh: Tensor, chunk: int) -> list[slice]:
    """Column ranges of the chunk: one on a GPU, cache-sized on a CPU."""
    if dh.device.type != "cpu":
        return [slice(0, chunk)]
    size = max(256, CPU_TILE_FLOATS // (dh.numel() // dh.shape[-1]))
    return [slice(t, min(t + size, chunk)) for t in range(0, chunk, size)]
