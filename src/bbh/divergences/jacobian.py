"""Ours: the KL of a semi-implicit hypernet posterior from the generator's Jacobian.

For ``w = G(z) + sigma * eps`` (``bbh.posteriors.ImplicitPosterior`` with ``init_sigma``),
``KL(q || p) = E_q[-log p(w)] - H[q]`` with

- the cross term exact given the noise draws: for ``p = N(0, s^2 I)``,
  ``E_eps[-log p(G(z) + sigma eps)] = (|G(z)|^2 + sum sigma^2) / (2 s^2) + D log(s sqrt(2 pi))``
  (and exact over z too for an affine ``G(z) = A z + b``: ``E |G(z)|^2 = |b|^2 + |A|_F^2``);
- the entropy of ``q`` linearised at each noise draw: with ``J(z) = dG/dz`` ``[D, k]`` per noise
  block and ``Sigma = diag(sigma^2)``,

      H[q] ~ 1/2 log det(2 pi e Sigma) + E_z[ 1/2 log det(I_k + J(z)^T Sigma^-1 J(z)) ],

  (matrix determinant lemma: ``log det(J J^T + Sigma)``, the entropy of the Gaussian that the
  generator's local linearisation makes). It is **exact when G is affine** (then q is the
  Gaussian ``N(b, A A^T + Sigma)``) and, for a nonlinear G, the Laplace approximation of the
  posterior ``q(z | w)``, which sharpens as D grows; it over-counts entropy only where G folds
  (several z giving the same w).

A generator that knows its own Gaussian density (``gaussian_terms``: the Kronecker one, with
no semi-implicit noise on top) gives its second moments and entropy, and the KL is exact.

Unlike nearest-neighbour estimates it uses no distances between the S samples, so it neither
concentrates in high dimension nor needs many samples: the expectation over z is estimated from
``jacobian_samples`` of the step's noise draws (default 1, unbiased). Cost per step: k forward-mode
passes through the generator for each of those draws (``generate_with_tangents``; a generator with
``jacobian_grams``, the chunked one, forms the Gram fused without storing J), i.e. about k
generator forward passes, and a ``k x k`` Cholesky per noise block.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from bbh.divergences.base import KLEstimator
from bbh.posteriors.implicit import ImplicitPosterior, ImplicitSample
from bbh.priors import GaussianPrior


class JacobianKL(KLEstimator):
    """``KL(q || p)`` for a semi-implicit ``ImplicitPosterior`` and a Gaussian prior (scalar).

    Args:
        jacobian_samples: how many of the step's noise draws estimate the log-determinant term.
        jacobian_chunks: for a chunked generator with aligned noise, form ``J^T Sigma^-1 J`` from
            this many random chunks (scaled up: an unbiased estimate of the Gram, at that
            fraction of the cost); ``None``: all chunks. The log-determinant of an unbiased
            Gram is biased low (Jensen), so the entropy is under-, the KL over-estimated.

    Raises:
        ValueError: ``jacobian_samples`` or ``jacobian_chunks`` is not an int >= 1.
    """

    uses_posterior = True  # called with the posterior's draw and the posterior

    def __init__(self, jacobian_samples: int = 1, jacobian_chunks: int | None = None):
        super().__init__()
        if not isinstance(jacobian_samples, int) or jacobian_samples < 1:
            raise ValueError(f"jacobian_samples must be an int >= 1, got {jacobian_samples!r}")
        if jacobian_chunks is not None and (
            not isinstance(jacobian_chunks, int) or jacobian_chunks < 1
        ):
            raise ValueError(f"jacobian_chunks must be an int >= 1, got {jacobian_chunks!r}")
        self.jacobian_samples = jacobian_samples
        self.jacobian_chunks = jacobian_chunks

    def forward(
        self, draw: ImplicitSample, prior: GaussianPrior, posterior: ImplicitPosterior
    ) -> Tensor:
        """The KL estimate of one posterior draw.

        Args:
            draw: The draw (weights, means and noise) whose KL to the prior is estimated.
            prior: The prior.
            posterior: The semi-implicit posterior that made ``draw``.

        Returns:
            A scalar tensor.

        Raises:
            ValueError: The posterior is purely implicit (no ``init_sigma``).
        """
        exact = getattr(posterior.generator, "gaussian_terms", None)
        if exact is not None and not posterior.semi_implicit:
            # a Gaussian generator with its own exact entropy (``KroneckerGenerator``)
            second_moments, entropy = exact()
            return prior.cross_entropy(second_moments) - entropy
        if not posterior.semi_implicit:
            raise ValueError(
                "kl='jacobian' needs a semi-implicit posterior: give BayesByHypernet an "
                "init_sigma > 0 (a purely implicit q has no density in R^D)"
            )
        sigma = draw.sigma if draw.sigma is not None else posterior.sigma()
        gen = posterior.generator
        offsets = getattr(gen, "noise_offsets", None)
        if getattr(gen, "affine", False) and offsets is not None:
            # G(z) = A z + b: E_z |G(z)|^2 = |b|^2 + |A|_F^2, so the whole KL is exact
            loadings = gen.noise_loadings()  # type: ignore[attr-defined]
            cross = cross_entropy_affine(offsets(), loadings, sigma, prior)
        else:
            cross = cross_entropy_semi_implicit(draw.mean, sigma, prior)
        z = draw.noise[: self.jacobian_samples]
        entropy = entropy_linearised(
            posterior, z, chunks=self.jacobian_chunks, log_sigma=draw.log_sigma
        )
        return cross - entropy


def cross_entropy_semi_implicit(mean: Tensor, sigma: Tensor, prior: GaussianPrior) -> Tensor:
    """``E_q[-log p(w)]`` for ``w = mean_s + sigma * eps``, exact over eps, averaged over s."""
    if not prior.isotropic:  # per tensor: sums of squares, no [D] temporary per scale
        quad_t = prior.square_sums(mean) / mean.shape[0] + prior.square_sums(sigma)
        return prior.cross_entropy_of_tensors(quad_t)
    quad = (mean * mean).sum() / mean.shape[0] + (sigma * sigma).sum()  # mul: 2x pow's speed
    return _gaussian_cross_entropy(quad, sigma.numel(), prior)


def cross_entropy_affine(
    offsets: list[Tensor], loadings: list[Tensor], sigma: Tensor, prior: GaussianPrior
) -> Tensor:
    """``E_q[-log p(w)]`` for ``w = A z + b + sigma * eps``, exact over z and eps."""
    if not prior.isotropic:
        moments = [b * b + (a * a).sum(-1) for b, a in zip(offsets, loadings, strict=True)]
        return prior.cross_entropy(torch.cat(moments) + sigma * sigma)
    quad = sum((b * b).sum() + (a * a).sum() for b, a in zip(offsets, loadings, strict=True))
    return _gaussian_cross_entropy(quad + (sigma * sigma).sum(), sigma.numel(), prior)


def _gaussian_cross_entropy(quad: Tensor, dim: int, prior: GaussianPrior) -> Tensor:
    """``E_q[-log N(w; 0, s^2 I)]`` from ``quad = E_q |w|^2`` in ``dim`` dimensions."""
    return 0.5 * quad / prior.scale**2 + dim * (math.log(prior.scale) + 0.5 * math.log(2 * math.pi))


def entropy_linearised(
    posterior: ImplicitPosterior,
    z: Tensor,
    *,
    chunks: int | None = None,
    log_sigma: Tensor | None = None,
) -> Tensor:
    """``1/2 log det(2 pi e Sigma) + mean_z 1/2 log det(I + J^T Sigma^-1 J)`` (scalar).

    ``z [J, n_blocks, k]``: the noise draws at which the generator is linearised. ``chunks``:
    the Gram from that many random chunks of a chunked generator (``JacobianKL``).
    ``log_sigma``: the posterior's ``log_sigma`` where the caller has it (a draw's), so that
    it is not formed again; None: ``posterior.log_sigma``.
    """
    if log_sigma is None:
        log_sigma = posterior.log_sigma
    gen = posterior.generator
    k = z.shape[-1]
    d = log_sigma.numel()
    gaussian = log_sigma.sum() + 0.5 * d * math.log(2 * math.pi * math.e)
    loadings = getattr(gen, "noise_loadings", None)
    if getattr(gen, "affine", False) and loadings is not None:  # J = A for every z
        a = loadings()
        if len(gen.noise_segments) == 1 and d <= k:
            # q = N(b, A A^T + Sigma): its log-determinant directly (the smaller matrix), in
            # float64. Here A A^T carries the covariance and sigma is free to shrink by orders
            # of magnitude (a direction the ELBO does not see): the lemma's float32 Gram of
            # Sigma^-1 then lost positive definiteness, and log det Sigma cancelled against
            # log det(I + A^T Sigma^-1 A)
            whole = torch.cat(a).double()  # [D, k]
            cov = torch.addmm(torch.diag(torch.exp(2 * log_sigma.double())), whole, whole.t())
            chol, info = torch.linalg.cholesky_ex(cov)
            logdet = 2 * chol.diagonal().log().sum()
            logdet = torch.where(info == 0, logdet, torch.full_like(logdet, math.nan))
            constant = 0.5 * d * math.log(2 * math.pi * math.e)
            return (0.5 * logdet).to(log_sigma.dtype) + constant
        gram = affine_grams(a, gen.noise_segments, torch.exp(-2 * log_sigma))  # [1, n, k, k]
    elif hasattr(gen, "jacobian_grams"):  # the generator's fused form of the branch below
        gram = gen.jacobian_grams(z, log_sigma, chunks=chunks)  # [J, n, k, k]
    elif chunks is not None:
        raise ValueError("jacobian_chunks needs the chunked generator")
    else:
        inv_var = torch.exp(-2 * log_sigma)
        tangents = torch.eye(k, dtype=z.dtype, device=z.device)[:, None, None, :].expand(
            k, *z.shape[:2], k
        )
        _, jac = gen.generate_with_tangents(z, tangents)  # [k, J, D]
        gram = block_grams(jac, gen.noise_segments, inv_var)  # [J, n, k, k]
    eye = torch.eye(gram.shape[-1], dtype=torch.float64, device=z.device)
    # I + gram is positive definite unless the weights went non-finite; then the log-determinant
    # is NaN (no error, no host sync) so that the training guard names the step
    chol, info = torch.linalg.cholesky_ex(eye + gram.double())
    logdet = 2 * chol.diagonal(dim1=-2, dim2=-1).log().sum(-1)  # [J, n]
    logdet = torch.where(info == 0, logdet, torch.full_like(logdet, math.nan)).sum(-1)  # [J]
    return gaussian + 0.5 * logdet.mean().to(log_sigma.dtype)


def affine_grams(loadings: list[Tensor], segments: tuple[int, ...], weight: Tensor) -> Tensor:
    """``A^T diag(weight) A`` per noise block from per-tensor loadings ``[numel, k]``.

    One noise block (aligned noise) sums the tensors' terms; otherwise each tensor is a block.
    Returns ``[1, n_blocks, k, k]``.
    """
    parts = weight.split([a.shape[0] for a in loadings])
    grams = [
        _WeightedGram.apply(a.t().unsqueeze(0), w)[0] for a, w in zip(loadings, parts, strict=True)
    ]
    if len(segments) == 1:
        return torch.stack(grams).sum(0)[None, None]
    return torch.stack(grams)[None]


def block_grams(a: Tensor, segments: tuple[int, ...], weight: Tensor) -> Tensor:
    """Per contiguous segment, ``sum_d weight_d a_d a_d^T``: ``[k, J, D], [D] -> [J, n, k, k]``."""
    if len(segments) == 1:
        return _WeightedGram.apply(a.movedim(1, 0), weight).unsqueeze(1)
    size = segments[0]
    if all(s == size for s in segments[:-1]) and segments[-1] <= size:
        pad = size * len(segments) - a.shape[-1]
        n = len(segments)
        blocks = nn.functional.pad(a, (0, pad)).reshape(*a.shape[:2], n, size)
        w = nn.functional.pad(weight, (0, pad)).reshape(n, size)
        return torch.einsum("ajnd,nd,bjnd->jnab", blocks, w, blocks)
    parts = zip(a.split(list(segments), dim=-1), weight.split(list(segments)), strict=True)
    return torch.stack([torch.einsum("ajd,d,bjd->jab", p, w, p) for p, w in parts], dim=1)


class _WeightedGram(torch.autograd.Function):
    """``a [J, k, D], w [D] -> a diag(w) a^T [J, k, k]`` with a lean backward.

    Autograd through ``einsum`` keeps several ``[J, k, D]`` temporaries; this keeps one and
    needs two matrix products and two element-wise passes over ``[J, k, D]`` in all.
    """

    @staticmethod
    def forward(ctx: Any, a: Tensor, w: Tensor) -> Tensor:
        ctx.save_for_backward(a, w)
        return (a * w) @ a.transpose(-1, -2)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, Tensor]:
        a, w = ctx.saved_tensors
        g_sym = grad + grad.transpose(-1, -2)
        ga = g_sym @ a  # [J, k, D]
        return ga * w, 0.5 * (ga * a).sum((0, 1))


class SemiImplicitBoundKL(KLEstimator):
    """The semi-implicit bound of Yin and Zhou (2018) for ``w = G(z) + sigma * eps``: an upper bound
    on ``KL(q || p)``, compared with ``JacobianKL`` in the posterior checks.

    ``log q(w)`` is bounded above by ``log (1/(K+1)) sum_k N(w; G(z_k), Sigma)`` with ``z_0`` the
    noise that made ``w`` and ``K`` fresh draws (``mixture_samples``). In high dimension every
    ``N(w; G(z_k), Sigma)`` with ``k > 0`` is negligible next to ``k = 0`` unless ``sigma`` is as
    wide as the spread of ``G``, so the entropy it credits is that of the Gaussian noise plus at
    most ``log(K+1)``: it pushes q towards a mean-field Gaussian. Cost: K extra generator passes.

    Args:
        mixture_samples: K, the fresh noise draws of the mixture.

    Raises:
        ValueError: ``mixture_samples`` is not an int >= 1.
    """

    uses_posterior = True

    def __init__(self, mixture_samples: int = 50):
        super().__init__()
        if not isinstance(mixture_samples, int) or mixture_samples < 1:
            raise ValueError(f"mixture_samples must be an int >= 1, got {mixture_samples!r}")
        self.mixture_samples = mixture_samples

    def forward(
        self, draw: ImplicitSample, prior: GaussianPrior, posterior: ImplicitPosterior
    ) -> Tensor:
        """The semi-implicit (SIVI) bound's KL estimate of one posterior draw.

        Args:
            draw: The draw (weights, means and noise) whose KL to the prior is estimated.
            prior: The prior.
            posterior: The semi-implicit posterior that made ``draw``.

        Returns:
            A scalar tensor.

        Raises:
            ValueError: The posterior is purely implicit (no ``weight_noise``).
        """
        if not posterior.semi_implicit:
            raise ValueError("kl='sivi' needs a semi-implicit posterior (weight_noise > 0)")
        gen = posterior.generator
        extra = gen.generate(gen.draw_noise(self.mixture_samples))  # [K, D]
        centres = torch.cat(
            [draw.mean.unsqueeze(1), extra.unsqueeze(0).expand(draw.mean.shape[0], -1, -1)], dim=1
        )  # [S, K + 1, D]
        log_sigma = posterior.log_sigma
        z2 = ((draw.weights.unsqueeze(1) - centres) * torch.exp(-log_sigma)).pow(2).sum(-1)
        log_n = -0.5 * z2 - log_sigma.sum() - 0.5 * log_sigma.numel() * math.log(2 * math.pi)
        log_q = torch.logsumexp(log_n, dim=1) - math.log(centres.shape[1])  # [S]
        return (log_q - prior.log_prob(draw.weights)).mean()
