"""Ours: a Kronecker-factored (matrix-normal) affine generator, with its exact entropy.

Each weight matrix ``W [r, c]`` (a linear or convolutional layer's weight reshaped to
``[out, in * kh * kw]``, its bias appended as one more column, as KFAC does) is generated as

    W = M + L_r E L_c^T,   E ~ N(0, I) [r, c],

with ``L_r [r, r]`` and ``L_c [c, c]`` lower triangular with a positive diagonal: a linear
hypernetwork whose noise is a matrix, so ``q(vec W) = N(vec M, (L_c L_c^T) (x) (L_r L_r^T))``,
the matrix-variate Gaussian of Louizos and Welling ("Structured and Efficient Variational Deep
Learning with Matrix Gaussian Posteriors", ICML 2016) with full row and column covariances,
the family of a Kronecker-factored Laplace approximation (Ritter et al., ICLR 2018). Its
entropy and its second moments are exact and cheap:

    H[q] = D/2 log(2 pi e) + c log det L_r + r log det L_c,
    E[W_ij^2] = M_ij^2 + (L_r L_r^T)_ii (L_c L_c^T)_jj,

so with a Gaussian prior the KL is exact (``bbh.divergences.JacobianKL`` uses
``gaussian_terms``) with no noise of its own and none of the affine generator's ``D x k``
loadings. A factor larger than ``max_factor`` is diagonal (``r`` or ``c`` parameters instead
of ``r^2 / 2``). Tensors of no layer (a lone bias, a norm's scale) are one column ``[n, 1]``.
Cost of a draw: ``r c (r + c)`` multiply-adds per matrix and sample.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import cast

import torch
from torch import Tensor, nn

from bbh.functional import ParamEntry, ParamSpec

#: factors of more rows than this are diagonal (their dense form costs ``n^2`` parameters)
MAX_FACTOR = 1_024
#: how far an Adam step of lr = 1 moves the direction of a factor's row (``TriangularFactor``):
#: 1e-2 a step at the default lr of 1e-3. Measured on the exact matrix-normal posterior
#: (tests/methods/test_kronecker_posterior.py, KL to it after 400 steps): 0.156 at 1, 0.0105 at
#: 3, 0.0052 at 10; LeNet-5's last layer fine-tuned for an epoch at T = 1: notMNIST AUROC
#: 0.960, 0.963, 0.966
CORRELATION_RATE = 10.0


@dataclass(frozen=True)
class MatrixGroup:
    """One generated matrix: a weight (flattened to ``[rows, cols]``), and its bias as the last
    column where it has one."""

    weight: ParamEntry
    bias: ParamEntry | None

    @property
    def rows(self) -> int:
        """r: the layer's outputs (a tensor's first axis)."""
        return self.weight.shape[0] if self.weight.shape else 1

    @property
    def cols(self) -> int:
        """c: the inputs per output, plus one for a bias."""
        return self.weight.numel // self.rows + (self.bias is not None)


def matrix_groups(spec: ParamSpec) -> list[MatrixGroup]:
    """The matrices of ``spec``: each tensor of two or more axes with the 1-D tensor of the same
    module named ``bias`` (of as many entries as the weight has rows) as its last column; every
    other tensor a matrix of its own (1-D: one column).

    Args:
        spec: The generated tensors.

    Returns:
        One ``MatrixGroup`` per matrix, in the order of their weights in ``spec``.
    """
    by_name = {e.name: e for e in spec}
    used: set[str] = set()
    groups: list[MatrixGroup] = []
    for entry in spec:
        if entry.name in used:
            continue
        bias = None
        prefix, _, leaf = entry.name.rpartition(".")
        if len(entry.shape) >= 2 and leaf == "weight":
            candidate = by_name.get(f"{prefix}.bias" if prefix else "bias")
            if candidate is not None and candidate.shape == (entry.shape[0],):
                bias = candidate
                used.add(candidate.name)
        used.add(entry.name)
        groups.append(MatrixGroup(entry, bias))
    return groups


class TriangularFactor(nn.Module):
    """A lower-triangular ``L = diag(exp(d)) (I + c U)`` (``U`` strictly lower, ``c`` its
    storage scale), or ``diag(exp(d))`` alone: the scales apart from the correlations.

    ``d`` is stored divided by ``log_scale`` so that an Adam step of lr moves it by about
    ``lr * log_scale`` (as ``ImplicitPosterior``'s ``log sigma``). ``U`` is relative to the
    scales and stored times ``sqrt(n) / CORRELATION_RATE``, so that an Adam step of lr on every
    entry of a row moves the row's direction by about ``CORRELATION_RATE * lr``, whatever n. In
    absolute units a factor of a few hundred rows random-walked its off-diagonal mass past its
    diagonal within tens of steps (fine-tuning all of LeNet-5: NLL from 0.02 to 1.9 in 30 steps;
    0.048 with this form).
    """

    def __init__(self, n: int, init: float, *, dense: bool, log_scale: float = 1.0):
        super().__init__()
        self.n, self.dense, self.log_scale = n, dense, float(log_scale)
        self.log_diag = nn.Parameter(torch.full((n,), math.log(init) / self.log_scale))
        self.lower = nn.Parameter(torch.zeros(n, n)) if dense and n > 1 else None
        self.lower_scale = CORRELATION_RATE / math.sqrt(n)

    def diag(self) -> Tensor:
        """The diagonal of L.

        Returns:
            ``exp(d) [n]``.
        """
        return torch.exp(self.log_diag * self.log_scale)

    def log_det(self) -> Tensor:
        """``log det L``.

        Returns:
            The sum of ``d`` (a scalar tensor).
        """
        return (self.log_diag * self.log_scale).sum()

    def matrix(self) -> Tensor | None:
        """L as a matrix.

        Returns:
            ``L [n, n]``; None where it is diagonal (use ``diag``).
        """
        if self.lower is None:
            return None
        unit = torch.tril(self.lower * self.lower_scale, -1)
        unit.diagonal().add_(1.0)
        return self.diag()[:, None] * unit

    def variances(self) -> Tensor:
        """The diagonal of ``L L^T``.

        Returns:
            Each row's sum of squares, ``[n]``.
        """
        full = self.matrix()
        return self.diag().square() if full is None else full.square().sum(1)


class KroneckerGenerator(nn.Module):
    """Matrix noise ``E`` -> flat weights ``[S, D]``: ``W = M + L_r E L_c^T`` per matrix.

    Args:
        spec: The layout of the flat weights ``[D]``.
        init: The means' initial values ``[D]`` (BbH: the net's own weights); None: zero.
        init_noise_scale: The initial standard deviation of every weight (both factors start at
            ``sqrt(init_noise_scale) I``).
        max_factor: Factors with more rows than this are diagonal.
        log_scale: The rate multiplier of the factors' log-diagonals (``TriangularFactor``).

    Raises:
        ValueError: ``init`` is not ``[D]``, or ``init_noise_scale`` or ``max_factor`` is not
            positive.
    """

    _spec_order: Tensor  # each spec value's position in the matrices' concatenated layout

    def __init__(
        self,
        spec: ParamSpec,
        init: Tensor | None = None,
        *,
        init_noise_scale: float = 0.01,
        max_factor: int = MAX_FACTOR,
        log_scale: float = 1.0,
    ):
        super().__init__()
        if init is not None and tuple(init.shape) != (spec.dim,):
            raise ValueError(f"init must have shape [{spec.dim}], got {list(init.shape)}")
        if not init_noise_scale > 0:
            raise ValueError(f"init_noise_scale must be positive, got {init_noise_scale!r}")
        if isinstance(max_factor, bool) or not isinstance(max_factor, int) or max_factor < 1:
            raise ValueError(f"max_factor must be an int >= 1, got {max_factor!r}")
        self.spec = spec
        self.noise_dim = spec.dim
        self.groups = matrix_groups(spec)
        root = math.sqrt(init_noise_scale)
        self.means = nn.ParameterList()
        self.row_factors = nn.ModuleList()
        self.col_factors = nn.ModuleList()
        flat_init = torch.zeros(spec.dim) if init is None else init.detach().float()
        for g in self.groups:
            self.means.append(nn.Parameter(_as_matrix(g, flat_init[None])[0].clone()))
            for factors, n in ((self.row_factors, g.rows), (self.col_factors, g.cols)):
                factors.append(
                    TriangularFactor(n, root, dense=n <= max_factor, log_scale=log_scale)
                )
        # where each spec tensor's values lie in the concatenated matrices' flat layout
        pieces: dict[str, tuple[int, int, int, bool]] = {}
        start = 0
        for g in self.groups:
            pieces[g.weight.name] = (start, g.rows, g.cols, False)
            if g.bias is not None:
                pieces[g.bias.name] = (start, g.rows, g.cols, True)
            start += g.rows * g.cols
        self.register_buffer(
            "_spec_order", torch.cat([self._indices(e, pieces) for e in spec]), persistent=False
        )

    @staticmethod
    def _indices(entry: ParamEntry, pieces: dict[str, tuple[int, int, int, bool]]) -> Tensor:
        """Positions of ``entry``'s values (row-major) in the matrices' concatenated layout."""
        start, rows, cols, is_bias = pieces[entry.name]
        if is_bias:
            return start + torch.arange(rows) * cols + (cols - 1)
        width = entry.numel // rows  # the weight's own columns (without its bias column)
        return (start + torch.arange(rows)[:, None] * cols + torch.arange(width)[None]).reshape(-1)

    @property
    def noise_segments(self) -> tuple[int, ...]:
        """One noise block of D entries."""
        return (self.spec.dim,)

    def draw_noise(self, num_samples: int, *, generator: torch.Generator | None = None) -> Tensor:
        """Fresh noise: one standard normal per weight.

        Args:
            num_samples: S, the number of draws.
            generator: The random generator to draw from; None: the global one.

        Returns:
            ``[S, 1, D]`` in the parameters' dtype and device.
        """
        ref = self.means[0]
        z = torch.randn(num_samples, 1, self.noise_dim, generator=generator, device=ref.device)
        return z.to(ref.dtype)

    def generate(self, z: Tensor) -> Tensor:
        """The weights for given noise.

        Args:
            z: Noise ``[S, 1, D]`` (``draw_noise``).

        Returns:
            The flat weights ``[S, D]``, differentiable in the generator's parameters.
        """
        return self._assemble(z[:, 0], with_mean=True)

    def generate_with_tangents(self, z: Tensor, dz: Tensor) -> tuple[Tensor, Tensor]:
        """The weights and their derivatives along tangent directions of the noise.

        Args:
            z: Noise ``[S, 1, D]``.
            dz: T tangent directions ``[T, S, 1, D]``.

        Returns:
            ``(G(z) [S, D], dG/dz . dz [T, S, D])``; G is affine, so the derivative is the noise
            term applied to ``dz``.
        """
        t, s = dz.shape[:2]
        tangents = self._assemble(dz[:, :, 0].reshape(t * s, -1), with_mean=False)
        return self.generate(z), tangents.reshape(t, s, -1)

    def forward(self, num_samples: int, *, generator: torch.Generator | None = None) -> Tensor:
        """Weight draws with fresh noise.

        Args:
            num_samples: S, the number of draws.
            generator: The random generator for the noise; None: the global one.

        Returns:
            The weights ``[S, D]``.
        """
        return self.generate(self.draw_noise(num_samples, generator=generator))

    def gaussian_terms(self) -> tuple[Tensor, Tensor]:
        """The Gaussian's terms of the KL to a Gaussian prior, both exact.

        Returns:
            The pair ``(E[w^2] [D], H[q])``, each weight's second moment (in ``spec``'s
            layout) and q's entropy (a scalar).
        """
        moments, entropy = [], torch.zeros((), dtype=self.means[0].dtype)
        for m, rf, cf in self._matrices():
            r, c = m.shape
            variances = rf.variances()[:, None] * cf.variances()[None]
            moments.append((m.square() + variances).reshape(-1))
            entropy = entropy + c * rf.log_det() + r * cf.log_det()
        entropy = entropy + 0.5 * self.spec.dim * math.log(2 * math.pi * math.e)
        return torch.cat(moments)[self._spec_order], entropy

    def _matrices(self) -> list[tuple[Tensor, TriangularFactor, TriangularFactor]]:
        """Per matrix, its mean and its row and column factors."""
        rows = cast(list[TriangularFactor], list(self.row_factors))
        cols = cast(list[TriangularFactor], list(self.col_factors))
        return list(zip(self.means, rows, cols, strict=True))

    def _assemble(self, noise: Tensor, *, with_mean: bool) -> Tensor:
        """``[N, D]`` noise -> ``[N, D]`` weights (``M + L_r E L_c^T``, or without ``M``)."""
        outs, start = [], 0
        for m, rf, cf in self._matrices():
            r, c = m.shape
            e = noise[:, start : start + r * c].reshape(-1, r, c)
            start += r * c
            e = _left(rf, e)
            e = _left(cf, e.transpose(1, 2)).transpose(1, 2)  # E L_c^T = (L_c E^T)^T
            outs.append((e + m if with_mean else e).reshape(e.shape[0], -1))
        return torch.cat(outs, 1)[:, self._spec_order]


def _left(factor: TriangularFactor, x: Tensor) -> Tensor:
    """``L x`` for ``x [N, n, m]``."""
    full = factor.matrix()
    if full is None:
        return factor.diag()[:, None] * x
    return full @ x


def _as_matrix(group: MatrixGroup, flat: Tensor) -> Tensor:
    """``flat [N, D]`` -> the group's matrix ``[N, r, c]`` (weight, then bias as last column)."""
    w = group.weight
    weight = flat[:, w.offset : w.offset + w.numel].reshape(-1, group.rows, w.numel // group.rows)
    if group.bias is None:
        return weight
    b = group.bias
    return torch.cat([weight, flat[:, b.offset : b.offset + b.numel, None]], 2)
