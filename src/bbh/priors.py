"""Gaussian priors over the generated weights, shared by Bayes by Hypernet and Bayes by Backprop.

- ``GaussianPrior(s)``: ``N(0, s^2 I)``, the paper's (arXiv 1711.01297, section 3: ``s = 1``).
- ``GaussianPrior(empirical_bayes=True)``: ``N(0, s_t^2 I)`` per tensor with ``s_t`` set by the
  ELBO itself: at the optimum over ``s_t``, ``s_t^2 = E_q |w_t|^2 / d_t`` (the marginal-likelihood
  choice of a prior variance, as laplace-torch tunes its prior precision; MacKay 1992), which
  the cross term uses in closed form. Measured beside the others, not recommended
  (docs/methods.md).
- ``GaussianPrior(g, fan_in=True)``: ``N(0, g^2 / fan_in_t)`` for each parameter tensor ``t``, its
  scale that of the tensor's own initialisation (He et al. 2015) widened by the gain ``g``; a
  bias takes its layer's fan-in, a vector without one (a norm layer's) ``g``. Ours, the
  recommended one (docs/methods.md, "The model at its optimum"): under ``N(0, I)`` the weights
  the data do not constrain drift to a spread of 1, hundreds of times their typical size, which
  makes the posterior at the ELBO's optimum under-confident and takes ``log sigma`` many steps to
  reach; under the fan-in prior they settle at their layer's scale.
- ``gaussian_kl_to_isotropic``, ``gaussian_kl_diag``: closed-form KLs between diagonal Gaussians
  (Bayes by Backprop's and MNF's), also named in ``bbh.divergences.gaussian``.

A prior whose scales differ between tensors must be bound to the weights' layout before use
(``GaussianPrior.bind``: the methods do it); it is an ``nn.Module`` only so that its scales
follow ``.to()`` (they are not saved in a state dict).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

if TYPE_CHECKING:
    from bbh.functional import ParamSpec

#: the fan-in prior's default gain: measured best of 1, 3 and 10 on the demo (docs/methods.md)
FAN_IN_GAIN = 3.0


class GaussianPrior(nn.Module):
    """``N(0, s^2 I)`` over the D generated scalars, or one scale per tensor (``fan_in``).

    Args:
        scale: s; with ``fan_in``, the gain g of ``s_t = g / sqrt(fan_in_t)``.
        fan_in: one scale per parameter tensor from its fan-in (needs ``bind``).
        empirical_bayes: one scale per tensor set by the ELBO (see the module docstring;
            needs ``bind``).

    Raises:
        ValueError: ``scale`` is not a positive finite number, or both ``fan_in`` and
            ``empirical_bayes`` are set.
    """

    scales: Tensor | None

    def __init__(self, scale: float = 1.0, *, fan_in: bool = False, empirical_bayes: bool = False):
        super().__init__()
        if fan_in and empirical_bayes:
            raise ValueError("a prior is fan_in or empirical_bayes, not both")
        if not (isinstance(scale, (int, float)) and scale > 0 and math.isfinite(scale)):
            raise ValueError(f"prior_scale must be a positive finite number, got {scale!r}")
        self.scale = float(scale)
        self.fan_in = bool(fan_in)
        self.empirical_bayes = bool(empirical_bayes)
        #: per-weight scales ``[D]`` of a bound fan-in prior; None: ``scale`` for every weight
        self.register_buffer("scales", None, persistent=False)
        #: per-tensor scales ``[T]`` of a bound fan-in prior (what its cross term takes)
        self.register_buffer("tensor_scales", None, persistent=False)
        #: the bound tensors' sizes, as a list and as ``[T]``
        self.sizes: list[int] = []
        self.register_buffer("tensor_sizes", None, persistent=False)

    @property
    def isotropic(self) -> bool:
        """True when every weight has the prior scale ``scale`` (neither fan-in nor empirical
        Bayes)."""
        return not (self.fan_in or self.empirical_bayes)

    def bind(self, spec: ParamSpec, net: nn.Module) -> GaussianPrior:
        """Fix the per-weight scales for the tensors of ``spec`` (parameters of ``net``).

        Args:
            spec: The layout of the generated parameters.
            net: The module whose parameters ``spec`` lists (for their fan-in and device).

        Returns:
            The prior itself, bound.
        """
        self.sizes = [e.numel for e in spec]
        ref = next(net.parameters(), None)
        device = None if ref is None else ref.device
        self.tensor_sizes = torch.tensor(self.sizes, dtype=torch.float32, device=device)
        if self.fan_in:
            self.tensor_scales = torch.tensor(
                fan_in_tensor_scales(spec, net, self.scale), device=device
            )
            self.scales = self.tensor_scales.repeat_interleave(
                torch.tensor(self.sizes, device=device), output_size=sum(self.sizes)
            )
        return self

    def _scales(self) -> Tensor:
        if self.empirical_bayes:
            raise ValueError(
                "an empirical-Bayes prior has no fixed scales: it takes kl='jacobian' (whose "
                "cross term it sets in closed form), not samples or a closed-form Gaussian KL"
            )
        if self.scales is None:
            raise RuntimeError("a fan-in prior must be bound to the weights first (bind)")
        return self.scales

    def sample(
        self,
        num_samples: int,
        dim: int,
        *,
        generator: torch.Generator | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> Tensor:
        """Draw ``[num_samples, dim]`` prior samples.

        Args:
            num_samples: M, the number of samples.
            dim: D; for a bound prior, its number of weights.
            generator: The random number generator (default: torch's global one).
            device: Where the samples go.
            dtype: Their dtype.

        Returns:
            Samples ``[M, D]``.

        Raises:
            ValueError: The prior is empirical Bayes (it has no fixed scales).
            RuntimeError: A fan-in prior is not bound yet.
        """
        eps = torch.randn(num_samples, dim, generator=generator, device=device, dtype=dtype)
        if self.isotropic:
            return self.scale * eps
        return eps * self._scales().to(eps.dtype)

    def log_prob(self, w: Tensor) -> Tensor:
        """``log p(w)`` summed over the last axis: ``[..., D] -> [...]`` (exact, closed form).

        Args:
            w: Weights ``[..., D]``.

        Returns:
            ``[...]``.
        """
        d = w.shape[-1]
        if self.isotropic:
            return -0.5 * w.pow(2).sum(-1) / self.scale**2 - d * (
                math.log(self.scale) + 0.5 * math.log(2 * math.pi)
            )
        s = self._scales().to(w.dtype)
        return -0.5 * (w / s).pow(2).sum(-1) - s.log().sum() - 0.5 * d * math.log(2 * math.pi)

    def cross_entropy(self, second_moment: Tensor) -> Tensor:
        """``E_q[-log p(w)]`` from the per-weight second moments ``E_q[w_i^2]`` ``[D]``.

        Args:
            second_moment: ``E_q[w_i^2]`` per weight, ``[D]``.

        Returns:
            A scalar tensor.
        """
        if self.isotropic:
            d = second_moment.shape[-1]
            const = d * (math.log(self.scale) + 0.5 * math.log(2 * math.pi))
            return 0.5 * second_moment.sum() / self.scale**2 + const
        self._check_bound(second_moment.shape[-1])
        return self.cross_entropy_of_tensors(
            torch.stack([m.sum() for m in second_moment.split(self.sizes)])
        )

    def square_sums(self, x: Tensor) -> Tensor:
        """``[T]``: the sum of squares of each tensor's part of ``x [..., D]`` (all leading axes
        summed too): the per-tensor sums a bound prior's cross term takes, without a ``[D]``
        temporary per weight scale (the fan-in prior's step costs what the isotropic one does).

        Args:
            x: Weights ``[..., D]``.

        Returns:
            ``[T]``, one sum per bound tensor.

        Raises:
            RuntimeError: The prior is not bound to D weights.
        """
        self._check_bound(x.shape[-1])
        return _SquareSums.apply(x, self.sizes)

    def cross_entropy_of_tensors(self, quad: Tensor) -> Tensor:
        """``E_q[-log p(w)]`` from ``quad [T]``, each tensor's ``E_q |w_t|^2`` (bound priors).

        Args:
            quad: ``E_q |w_t|^2`` per bound tensor, ``[T]``.

        Returns:
            A scalar tensor.

        Raises:
            RuntimeError: The prior is not bound yet.
        """
        if self.tensor_sizes is None:
            raise RuntimeError("the prior must be bound to the weights first (bind)")
        sizes = self.tensor_sizes.to(quad.dtype)
        d = sum(self.sizes)
        const = 0.5 * d * math.log(2 * math.pi)
        if self.empirical_bayes:  # s_t^2 = E|w_t|^2 / d_t: each tensor's term is d_t / 2
            return 0.5 * (sizes * (quad / sizes).log()).sum() + 0.5 * d + const
        if self.isotropic:
            return 0.5 * quad.sum() / self.scale**2 + d * math.log(self.scale) + const
        self._scales()  # bound, and not empirical Bayes
        assert self.tensor_scales is not None
        s = self.tensor_scales.to(quad.dtype)
        return 0.5 * (quad / (s * s)).sum() + (sizes * s.log()).sum() + const

    def _check_bound(self, dim: int) -> None:
        if sum(self.sizes) != dim:
            raise RuntimeError(
                f"the prior must be bound to the weights first (bound to {sum(self.sizes)} "
                f"weights, given {dim})"
            )

    def weight_scales(self) -> float | Tensor:
        """The prior's std for every weight: ``scale`` (isotropic) or the bound ``[D]``.

        Returns:
            A float, or a tensor ``[D]`` for a bound fan-in prior.

        Raises:
            ValueError: The prior is empirical Bayes (it has no fixed scales).
            RuntimeError: A fan-in prior is not bound yet.
        """
        return self.scale if self.isotropic else self._scales()

    def readout_scale(self, in_features: int) -> float:
        """The scale of an output layer of ``in_features`` inputs that is integrated exactly
        (``BayesByHypernet(last_layer="exact")``).

        Args:
            in_features: The output layer's number of inputs.

        Returns:
            ``scale / sqrt(in_features)`` for a fan-in prior, else ``scale``.
        """
        return self.scale / math.sqrt(in_features) if self.fan_in else self.scale

    def extra_repr(self) -> str:
        """The scale and kind shown by ``repr``.

        Returns:
            The text inside ``GaussianPrior(...)``.
        """
        kind = ", fan_in=True" if self.fan_in else ""
        return (
            f"scale={self.scale}"
            + kind
            + (", empirical_bayes=True" if self.empirical_bayes else "")
        )


#: the priors a method's ``prior=`` names
PRIOR_KINDS = ("fan_in", "isotropic", "empirical_bayes")


#: Up to this many rows (weight samples) ``_SquareSums`` takes one dot product per row and run;
#: more (the small-net bundle's 64 samples of a few hundred weights), one product per run
_DOT_ROWS = 4


class _SquareSums(torch.autograd.Function):
    """``[T]``: the sum of squares of each run of ``sizes`` along the last axis of ``x [..., D]``.

    One dot product per row and run (no ``x * x`` temporary), and a backward that writes
    ``2 g_t x`` into a single gradient tensor (where ``(p * p).sum()`` per run multiplies twice,
    adds, then concatenates the runs' gradients): the fan-in prior's cross term is a pass over
    the weights each way.
    """

    @staticmethod
    def forward(ctx: Any, x: Tensor, sizes: tuple[int, ...]) -> Tensor:
        rows = x.reshape(-1, x.shape[-1])
        parts = rows.split(sizes, dim=1)
        sums: list[Tensor] = []
        for part in parts:
            if rows.shape[0] > _DOT_ROWS:
                sums.append((part * part).sum())
                continue
            total = torch.dot(part[0], part[0])
            for row in part[1:]:
                total = total + torch.dot(row, row)
            sums.append(total)
        ctx.save_for_backward(x)
        ctx.sizes = sizes
        return torch.stack(sums)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None]:
        (x,) = ctx.saved_tensors
        out = torch.empty_like(x, memory_format=torch.contiguous_format)
        twice = grad * 2
        for t, (part, target) in enumerate(
            zip(x.split(ctx.sizes, dim=-1), out.split(ctx.sizes, dim=-1), strict=True)
        ):
            torch.mul(part, twice[t], out=target)
        return out, None


def make_prior(prior: str | GaussianPrior, scale: float | None = None) -> GaussianPrior:
    """A method's ``prior=`` and ``prior_scale=`` as a (fresh, unbound) ``GaussianPrior``:
    a name of ``PRIOR_KINDS`` with its scale (default 3 for ``fan_in``, else 1), or a prior,
    copied.

    Args:
        prior: A name of ``PRIOR_KINDS``, or a ``GaussianPrior`` to copy.
        scale: The prior's scale (or the fan-in prior's gain); None for the default. Ignored
            when ``prior`` is a ``GaussianPrior``.

    Returns:
        A fresh, unbound ``GaussianPrior``.

    Raises:
        ValueError: ``prior`` is not one of ``PRIOR_KINDS``, or the scale is not positive.
    """
    if isinstance(prior, GaussianPrior):
        return GaussianPrior(
            prior.scale, fan_in=prior.fan_in, empirical_bayes=prior.empirical_bayes
        )
    if prior not in PRIOR_KINDS:
        raise ValueError(f"unknown prior {prior!r}; allowed: {list(PRIOR_KINDS)}")
    if scale is None:
        scale = FAN_IN_GAIN if prior == "fan_in" else 1.0
    return GaussianPrior(
        float(scale), fan_in=prior == "fan_in", empirical_bayes=prior == "empirical_bayes"
    )


def fan_in_scales(spec: ParamSpec, net: nn.Module, gain: float) -> Tensor:
    """``[D]``: ``gain / sqrt(fan_in)`` for every weight of ``spec``, in its order
    (``fan_in_tensor_scales`` repeated over each tensor's weights).

    Args:
        spec: The layout of the generated parameters.
        net: The module whose parameters ``spec`` lists.
        gain: g.

    Returns:
        ``[D]``.
    """
    scales = torch.tensor(fan_in_tensor_scales(spec, net, gain))
    sizes = [e.numel for e in spec]
    out = scales.repeat_interleave(torch.tensor(sizes), output_size=sum(sizes))
    ref = next(net.parameters(), None)
    return out if ref is None else out.to(ref.device)


def fan_in_tensor_scales(spec: ParamSpec, net: nn.Module, gain: float) -> list[float]:
    """``gain / sqrt(fan_in)`` for each tensor of ``spec``.

    A tensor of two or more dimensions has fan-in ``prod(shape[1:])`` (a linear layer's inputs,
    a convolution's ``in / groups x kh x kw``); a bias or other vector takes that of its
    module's ``weight`` where the module has one of two or more dimensions, else 1.

    Args:
        spec: The layout of the generated parameters.
        net: The module whose parameters ``spec`` lists.
        gain: g.

    Returns:
        One scale per tensor, in ``spec``'s order.
    """
    params = dict(net.named_parameters())
    scales = []
    for entry in spec:
        shape = tuple(entry.shape)
        if len(shape) < 2:
            owner = entry.name.rpartition(".")[0]
            sibling = params.get(f"{owner}.weight" if owner else "weight")
            shape = tuple(sibling.shape) if sibling is not None and sibling.dim() >= 2 else ()
        fan = math.prod(shape[1:]) if len(shape) >= 2 else 1
        scales.append(gain / math.sqrt(max(fan, 1)))
    return scales


# Closed-form KL divergences between diagonal Gaussians (Bayes by Backprop, MNF):
# KL(N(mu, sigma^2) || N(0, s^2)) = sum[log(s / sigma) + (sigma^2 + mu^2) / (2 s^2) - 1/2]
# (Blundell et al. 2015; Kingma and Welling 2014, appendix B). Here, below the posteriors that
# use them, so that bbh.posteriors need not import bbh.divergences (docs/architecture.md).


def gaussian_kl_to_isotropic(mean: Tensor, log_var: Tensor, prior_scale: float | Tensor) -> Tensor:
    """``KL(N(mean, exp(log_var)) || N(0, prior_scale^2 I))``, summed over every element;
    ``prior_scale`` a number or one scale per element (a fan-in prior's ``[D]``).

    Args:
        mean: The posterior's means.
        log_var: Its log-variances, of ``mean``'s shape.
        prior_scale: The prior's standard deviation, a number or one per element.

    Returns:
        A scalar tensor.

    Raises:
        ValueError: ``mean`` and ``log_var`` differ in shape.
    """
    if mean.shape != log_var.shape:
        raise ValueError(f"mean {list(mean.shape)} and log_var {list(log_var.shape)} differ")
    if isinstance(prior_scale, Tensor):
        if prior_scale.shape != mean.shape or not bool((prior_scale > 0).all()):
            raise ValueError(
                f"prior_scale must be positive, a number or of the mean's shape {list(mean.shape)}"
            )
        log_s2 = 2 * prior_scale.log()
        s2: float | Tensor = prior_scale * prior_scale
        return 0.5 * (log_s2 - log_var + (log_var.exp() + mean.pow(2)) / s2 - 1.0).sum()
    if not prior_scale > 0:
        raise ValueError(f"prior_scale must be positive, got {prior_scale!r}")
    s2 = prior_scale**2
    return 0.5 * (math.log(s2) - log_var + (log_var.exp() + mean.pow(2)) / s2 - 1.0).sum()


def gaussian_kl_diag(
    mean_q: Tensor, log_var_q: Tensor, mean_p: Tensor, log_var_p: Tensor
) -> Tensor:
    """``KL(N(mean_q, exp(log_var_q)) || N(mean_p, exp(log_var_p)))`` summed over elements.

    Args:
        mean_q: q's means.
        log_var_q: q's log-variances.
        mean_p: p's means.
        log_var_p: p's log-variances (all four broadcast together).

    Returns:
        A scalar tensor.
    """
    mean_q, log_var_q, mean_p, log_var_p = torch.broadcast_tensors(
        mean_q, log_var_q, mean_p, log_var_p
    )
    return (
        0.5
        * (
            log_var_p
            - log_var_q
            + (log_var_q.exp() + (mean_q - mean_p).pow(2)) / log_var_p.exp()
            - 1
        ).sum()
    )
