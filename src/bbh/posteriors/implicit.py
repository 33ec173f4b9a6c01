"""The implicit posterior of Bayes by Hypernet, optionally semi-implicit.

``w = G(z) + sigma * eps`` with ``z ~ N(0, I_k)`` per noise block, ``eps ~ N(0, I_D)`` and a learned
per-weight ``sigma``:

    q(w) = integral N(w; G(z), diag(sigma^2)) N(z; 0, I) dz.

With ``sigma = 0`` (``init_sigma=None``) this is the paper's implicit posterior: the samples lie
on the k-dimensional image of the generator, so ``KL(q || p)`` to a Gaussian prior in R^D is
infinite and only sample-based estimates of it exist. With ``sigma > 0`` (semi-implicit; Yin and
Zhou 2018) the density exists everywhere and ``bbh.divergences.JacobianKL`` estimates its entropy
from the generator's Jacobian.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import torch
from torch import Tensor, nn

from bbh.posteriors.tensor_scale import add_per_tensor, checked_tensor_sizes


class Generator(Protocol):
    """What a generator offers the posterior (``bbh.hypernets``)."""

    noise_dim: int

    @property
    def noise_segments(self) -> tuple[int, ...]:
        """The sizes of the noise's segments."""

    def draw_noise(self, num_samples: int, *, generator: torch.Generator | None = None) -> Tensor:
        """Draw the generator's noise z.

        Args:
            num_samples: S.
            generator: The random number generator (default: torch's global one).

        Returns:
            Noise ``[S, ...]``.
        """

    def generate(self, z: Tensor) -> Tensor:
        """The generated weights' means ``G(z)``.

        Args:
            z: Noise from ``draw_noise``.

        Returns:
            ``[S, D]``.
        """

    def generate_with_tangents(self, z: Tensor, dz: Tensor) -> tuple[Tensor, Tensor]:
        """``G(z)`` and its directional derivative along ``dz``.

        Args:
            z: Noise from ``draw_noise``.
            dz: A tangent of ``z``'s shape.

        Returns:
            ``(G(z), J_G(z) dz)``, each ``[S, D]``.
        """

    def parameters(self, recurse: bool = True) -> Iterator[nn.Parameter]:
        """The generator's parameters (``nn.Module.parameters``).

        Args:
            recurse: Include submodules' parameters.

        Returns:
            An iterator over the parameters.
        """


@dataclass(frozen=True)
class ImplicitSample:
    """One draw of S joint samples: ``weights = mean + sigma * eps``."""

    weights: Tensor  # [S, D]
    mean: Tensor  # [S, D], G(z)
    noise: Tensor  # [S, n_blocks, k], z
    sigma: Tensor | None = None  # [D], the semi-implicit noise's scale (None: purely implicit)
    log_sigma: Tensor | None = None  # [D], its log (formed once a draw, for the KL's entropy)


class ImplicitPosterior(nn.Module):
    """``q(w)`` given by a generator and, optionally, learned per-weight Gaussian noise.

    Args:
        generator: a ``bbh.hypernets`` generator (noise ``[S, n_blocks, k]`` -> ``[S, D]``).
        init_sigma: initial ``sigma`` of the semi-implicit noise (the same for every weight,
            then learned as ``log sigma``); ``None`` for the paper's purely implicit posterior.
        sigma_blocks: ``(rows, cols)`` per contiguous block of ``[D]`` (row-major, sum of
            ``rows * cols`` = D) whose rows share one learned sigma; ``None``: one sigma per
            weight. Shared scales cut q's parameters by about D (``BayesByHypernet(sigma_per=
            "unit")``); ``log_sigma`` is still ``[D]``.
        sigma_columns: with ``sigma_blocks``, also one learned scale per column of each block
            with several rows and columns: ``sigma_ij = u_i v_j`` (``sigma_per="factored"``).
        tensor_sizes: the sizes of the contiguous runs of ``[D]`` (the net's parameter tensors)
            that each get one more learned log-scale, added to their weights' ``log sigma``
            (``sigma_ij = s_t r_ij``). The same family, another parameterisation: the shared
            scale's gradient sums the tensor's, so Adam moves the tensor's level of sigma at
            the signal-to-noise ratio of the whole tensor, not of one weight
            (``BayesByHypernet(sigma_tensor_scale=True)``, docs/methods.md).
    """

    def __init__(
        self,
        generator: Generator,
        init_sigma: float | None = None,
        *,
        log_sigma_scale: float = 1.0,
        sigma_blocks: Sequence[tuple[int, int]] | None = None,
        sigma_columns: bool = False,
        tensor_sizes: Sequence[int] | None = None,
    ):
        super().__init__()
        if init_sigma is not None and not (
            isinstance(init_sigma, (int, float)) and 0 < init_sigma < math.inf
        ):
            raise ValueError(f"init_sigma must be a positive number or None, got {init_sigma!r}")
        if not log_sigma_scale > 0:
            raise ValueError(f"log_sigma_scale must be positive, got {log_sigma_scale!r}")
        self.generator: Generator = generator  # an nn.Module: registered as a submodule
        dim = sum(generator.noise_segments)
        ref = next(generator.parameters())
        # stored divided by ``log_sigma_scale``: an Adam step of lr moves log sigma by about
        # lr * log_sigma_scale (BbH sets it so that sigma learns at ~1e-3 whatever the lr)
        self.log_sigma_scale = float(log_sigma_scale)
        #: the blocks of shared scales, adjacent row-only blocks of equal width merged (a
        #: tensor's rows, a run of vectors): ``log_sigma`` expands each with one broadcast, whose
        #: backward is a sum (``repeat_interleave``'s ``index_add`` cost LeNet-5 3 ms a step)
        self.sigma_blocks: tuple[tuple[int, int, bool], ...] | None = None
        if sigma_blocks is not None:
            shapes = [(int(r), int(c)) for r, c in sigma_blocks]
            if (
                not shapes
                or min(min(b) for b in shapes) < 1
                or sum(r * c for r, c in shapes) != dim
            ):
                raise ValueError(
                    f"sigma_blocks must be (rows, cols) >= 1 covering D = {dim} weights; got "
                    f"{len(shapes)} blocks covering {sum(r * c for r, c in shapes)}"
                )
            blocks: list[list[Any]] = []
            for rows, cols in shapes:
                factored = sigma_columns and rows > 1 and cols > 1
                last = blocks[-1] if blocks else None
                if last is not None and not factored and not last[2] and last[1] == cols:
                    last[0] += rows
                else:
                    blocks.append([rows, cols, factored])
            self.sigma_blocks = tuple((r, c, f) for r, c, f in blocks)
        #: how many of ``log_sigma_param`` each block holds (rows, then columns if factored)
        self._sigma_counts = [r + (c if f else 0) for r, c, f in self.sigma_blocks or ()]
        start = math.log(init_sigma) / log_sigma_scale if init_sigma is not None else 0.0
        if self.sigma_blocks is None:
            initial = torch.full((dim,), start, dtype=ref.dtype)
        else:  # row scales at sigma0, column scales at 1 (log 0)
            initial = torch.cat(
                [
                    torch.cat([torch.full((r,), start), torch.zeros(c if f else 0)])
                    for r, c, f in self.sigma_blocks
                ]
            ).to(ref.dtype)
        self.log_sigma_param = None if init_sigma is None else nn.Parameter(initial)
        #: the runs of ``[D]`` that share a learned log-scale (``tensor_sizes``), or ``()``
        self.tensor_sizes: tuple[int, ...] = ()
        #: one log-scale per run, stored as ``log_sigma_param`` is; ``None`` without
        self.log_sigma_tensor_param: nn.Parameter | None = None
        if tensor_sizes is not None and init_sigma is not None:
            self.tensor_sizes = checked_tensor_sizes(tensor_sizes, dim)
            self.log_sigma_tensor_param = nn.Parameter(
                torch.zeros(len(self.tensor_sizes), dtype=ref.dtype)
            )
        #: the scale ``log_sigma_param`` is stored at, saved with it: a file trained at another
        #: ``sigma_rate`` loads to the same sigma (``_load_from_state_dict``)
        self.register_buffer("saved_log_sigma_scale", torch.tensor(float(log_sigma_scale)))
        #: what a file without ``saved_log_sigma_scale`` (written before it existed) was stored at
        self.legacy_log_sigma_scale = float(log_sigma_scale)

    def _load_from_state_dict(self, state_dict: Any, prefix: str, *args: Any) -> None:
        key, param = prefix + "saved_log_sigma_scale", prefix + "log_sigma_param"
        saved = state_dict.get(key)
        saved_scale = self.legacy_log_sigma_scale if saved is None else float(saved)
        state_dict[key] = torch.tensor(self.log_sigma_scale)
        shared = prefix + "log_sigma_tensor_param"
        if self.log_sigma_tensor_param is not None and param in state_dict:
            # a file without the shared scales (or with them off): the same sigmas, scale 0
            state_dict.setdefault(shared, torch.zeros_like(self.log_sigma_tensor_param))
        for name in (param, shared):
            if name in state_dict and saved_scale != self.log_sigma_scale:
                state_dict[name] = state_dict[name] * (saved_scale / self.log_sigma_scale)
        super()._load_from_state_dict(state_dict, prefix, *args)

    @property
    def semi_implicit(self) -> bool:
        """Whether the posterior adds Gaussian noise to the generated weights (``init_sigma``)."""
        return self.log_sigma_param is not None

    @property
    def log_sigma(self) -> Tensor:
        """Per-weight ``log sigma`` ``[D]`` (only for a semi-implicit posterior)."""
        if self.log_sigma_param is None:
            raise RuntimeError("this posterior is purely implicit (init_sigma=None): no sigma")
        log_sigma = self._per_weight_log_sigma(self.log_sigma_param * self.log_sigma_scale)
        if self.log_sigma_tensor_param is None:
            return log_sigma
        shift = self.log_sigma_tensor_param * self.log_sigma_scale
        return add_per_tensor(log_sigma, shift, self.tensor_sizes)

    def _per_weight_log_sigma(self, log_sigma: Tensor) -> Tensor:
        """``log_sigma_param``'s values (times its scale) expanded to ``[D]`` by the blocks."""
        if self.sigma_blocks is None:
            return log_sigma
        parts = []
        for block, (rows, cols, factored) in zip(
            log_sigma.split(self._sigma_counts), self.sigma_blocks, strict=True
        ):
            if factored:  # log u_i + log v_j
                parts.append((block[:rows, None] + block[None, rows:]).reshape(-1))
            elif cols == 1:
                parts.append(block)
            else:
                parts.append(block.unsqueeze(1).expand(rows, cols).reshape(-1))
        return parts[0] if len(parts) == 1 else torch.cat(parts)

    def sigma(self) -> Tensor:
        """Per-weight ``sigma`` ``[D]`` (only for a semi-implicit posterior)."""
        return self.log_sigma.exp()

    def sample(
        self,
        num_samples: int,
        *,
        generator: torch.Generator | None = None,
        antithetic: bool = False,
    ) -> ImplicitSample:
        """Draw S joint samples with fresh noise.

        ``antithetic``: the second half of the samples mirrors the first, ``(-z, -eps)`` for
        ``(z, eps)`` (the last one unpaired when S is odd). Every sample is still a draw of q, so
        averages over the S samples stay unbiased; the pairs cancel the terms of a gradient that
        are odd in the noise (all of a quadratic log-likelihood's noise in the mean's gradient),
        and half as many normals are drawn. For training steps, not for sample statistics
        (the pairs are not independent).
        """
        half = -(-num_samples // 2) if antithetic else num_samples
        z = _mirrored(self.generator.draw_noise(half, generator=generator), num_samples)
        mean = self.generator.generate(z)
        if not self.semi_implicit:
            return ImplicitSample(mean, mean, z)
        log_sigma = self.log_sigma
        sigma = log_sigma.exp()
        if mean.shape[1] >= RECOMPUTE_NOISE_FROM and torch.is_grad_enabled():
            # a seed instead of eps for the backward: D floats per sample fewer at the peak
            seed = int(
                torch.randint(0, 2**62, (1,), generator=generator, device=_seed_device(generator))
            )
            weights = _NoisyWeights.apply(mean, sigma, seed, half)
            return ImplicitSample(weights, mean, z, sigma, log_sigma)
        eps = _seeded_normal(half, mean, generator)
        weights = _MirroredNoisyWeights.apply(mean, sigma, eps)
        return ImplicitSample(weights, mean, z, sigma, log_sigma)

    def forward(self, num_samples: int, *, generator: torch.Generator | None = None) -> Tensor:
        """``num_samples`` joint weight samples ``[S, D]``."""
        return self.sample(num_samples, generator=generator).weights


#: From this many generated weights on, a training step keeps the seed of the semi-implicit
#: noise, not the noise: the backward draws it again (one more normal draw of D a step: 61 ms
#: for ResNet-18's 11.2M on one CPU thread, about 1% of its step; on small nets the draw would
#: cost more than the memory is worth).
RECOMPUTE_NOISE_FROM = 2**20


def _seed_device(generator: torch.Generator | None) -> torch.device | None:
    return None if generator is None else generator.device


def _seeded_normal(half: int, like: Tensor, generator: torch.Generator | None) -> Tensor:
    """``[half, D]`` standard normals in ``like``'s dtype and device."""
    eps = torch.randn(half, like.shape[1], generator=generator, device=like.device)
    return eps.to(like.dtype)


class _NoisyWeights(torch.autograd.Function):
    """``mean + sigma * eps`` (eps mirrored in pairs as ``_mirrored``) with ``eps`` drawn from
    ``seed`` in the forward and drawn again in the backward instead of saved."""

    @staticmethod
    def forward(ctx: Any, mean: Tensor, sigma: Tensor, seed: int, half: int) -> Tensor:
        ctx.seed, ctx.half = seed, half
        return torch.addcmul(mean, sigma, _NoisyWeights.noise(seed, half, mean))

    @staticmethod
    def noise(seed: int, half: int, like: Tensor) -> Tensor:
        gen = torch.Generator(device=like.device).manual_seed(seed)
        return _mirrored(_seeded_normal(half, like, gen), like.shape[0])

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, Tensor | None, None, None]:
        grad_sigma = None
        if ctx.needs_input_grad[1]:
            grad_sigma = (grad * _NoisyWeights.noise(ctx.seed, ctx.half, grad)).sum(0)
        return (grad if ctx.needs_input_grad[0] else None), grad_sigma, None, None


class _MirroredNoisyWeights(torch.autograd.Function):
    """``mean + sigma * eps`` with ``eps [half, D]`` used as ``_mirrored`` would (rows ``half``
    on take ``-eps``), without forming the mirrored ``[S, D]`` noise; the backward passes the
    mean's gradient through and forms sigma's from ``half`` rows of differences (where
    ``addcmul``'s backward scales the gradient by ``value`` and multiplies all S rows)."""

    @staticmethod
    def forward(ctx: Any, mean: Tensor, sigma: Tensor, eps: Tensor) -> Tensor:
        half, s = eps.shape[0], mean.shape[0]
        out = torch.empty_like(mean, memory_format=torch.contiguous_format)
        torch.addcmul(mean[:half], sigma, eps, out=out[:half])
        if s > half:
            torch.addcmul(mean[half:], sigma, eps[: s - half], value=-1, out=out[half:])
        ctx.save_for_backward(eps)
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, Tensor | None, None]:
        (eps,) = ctx.saved_tensors
        half, s = eps.shape[0], grad.shape[0]
        grad_sigma = None
        if ctx.needs_input_grad[1]:
            if s == half:  # no mirrored rows
                grad_sigma = (grad * eps).sum(0)
            elif half == 1:  # one pair: (g_0 - g_1) eps_0
                grad_sigma = torch.sub(grad[0], grad[1]).mul_(eps[0])
            else:  # row i of the first half and its mirror half + i: (g_i - g_{half+i}) eps_i
                diff = grad[:half].clone()
                diff[: s - half].sub_(grad[half:])
                grad_sigma = diff.mul_(eps).sum(0)
        return (grad if ctx.needs_input_grad[0] else None), grad_sigma, None


def _mirrored(noise: Tensor, num_samples: int) -> Tensor:
    """``noise`` followed by its negation, cut to ``num_samples`` rows (as is if it has them)."""
    if noise.shape[0] == num_samples:
        return noise
    return torch.cat([noise, -noise])[:num_samples]
