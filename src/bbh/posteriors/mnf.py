"""Multiplicative normalising flow layers (Louizos and Welling 2017, "MNF").

A layer's weights are ``W | z ~ N(z * M, sigma^2)`` with a multiplicative latent ``z`` per input
unit (``nn.Linear``) or per output channel (``nn.Conv2d``), ``z_0 ~ N(mu_z, sigma_z^2)`` pushed
through a masked RealNVP flow ``q(z_T)``. Training uses the local reparameterisation trick with
one ``z`` per example. The KL bound of one layer, from one sample ``z_T ~ q``, ``W ~ q(W | z_T)``:

    KL(q(W | z_T) || p(W)) + log q(z_T) - log r(z_T | W)

with the auxiliary reverse model ``r(z_T | W) = N(f_r(z_T); mu_r(W), sigma_r^2(W)) |det df_r/dz|``,
``mu_r = b1 * mean(tanh(c^T W))`` and ``log sigma_r^2 = b2 * mean(tanh(c^T W))`` (eq. 10-13),
``c^T W`` sampled by local reparameterisation. Biases are point estimates (no KL), as in the
authors' code. The weight variance is parameterised by its log (``weight_log_var``), and the
standard deviation kept below ``max_std`` (the paper's ``thres_var``) by a soft clamp that still
passes gradients (``weight_var``).

Layers are switched in place (on the method's own copy of the net) to the subclasses below, so
the weight and bias keep their names; the extra parameters sit on the layer.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from bbh.posteriors.flows import MaskedRealNVP

_LOG_2PI = math.log(2 * math.pi)


class _MNFMixin:
    weight: Tensor
    bias: Tensor | None
    z_axis: int  # the weight axis that z scales: 1 (Linear inputs) or 0 (conv outputs)
    shared_noise: bool = False  # one z and one W for the whole batch (inside ``shared_noise``)

    def _init_mnf(
        self,
        *,
        prior_scale: float,
        init_log_var: float,
        init_log_var_std: float,
        max_std: float,
        flow_steps: int,
        flow_hidden: int,
        aux_flow_steps: int,
        aux_flow_hidden: int,
        q0_init_log_var: float,
    ) -> None:
        w = self.weight
        n_z = w.shape[self.z_axis]
        self.prior_scale = prior_scale
        self.max_std = max_std
        jitter = torch.randn_like(w).clamp_(-2, 2)
        self.weight_log_var = nn.Parameter(init_log_var + init_log_var_std * jitter)
        dev, dt = w.device, w.dtype
        self.q0_mean = nn.Parameter(1 + 0.01 * torch.randn(n_z, device=dev, dtype=dt))
        self.q0_log_var = nn.Parameter(
            q0_init_log_var + 0.01 * torch.randn(n_z, device=dev, dtype=dt)
        )
        self.flow_q = MaskedRealNVP(n_z, flow_steps, flow_hidden).to(device=dev, dtype=dt)
        self.flow_r = MaskedRealNVP(n_z, aux_flow_steps, aux_flow_hidden).to(device=dev, dtype=dt)
        self.r_c = nn.Parameter(torch.randn(n_z, device=dev, dtype=dt) / math.sqrt(n_z))
        self.r_b1 = nn.Parameter(torch.randn(n_z, device=dev, dtype=dt) / math.sqrt(n_z))
        self.r_b2 = nn.Parameter(torch.randn(n_z, device=dev, dtype=dt) / math.sqrt(n_z))

    @property
    def weight_var(self) -> Tensor:
        """The weight variance, softly clamped below ``max_std^2``.

        ``log var = m - softplus(m - weight_log_var)`` with ``m = log max_std^2``: close to
        ``exp(weight_log_var)`` well below the bound (relative gap ``exp(weight_log_var - m)``),
        never above it, and with a gradient everywhere, so a log-variance pushed past the bound
        can come back (a hard clamp passes no gradient there and leaves it stuck).
        """
        bound = 2 * math.log(self.max_std)
        return (bound - F.softplus(bound - self.weight_log_var)).exp()

    def sample_z(self, n: int) -> tuple[Tensor, Tensor]:
        """``n`` draws ``z_T [n, n_z]`` from the flow posterior and their ``log q(z_T) [n]``."""
        eps = torch.randn(
            n, self.q0_mean.shape[0], device=self.weight.device, dtype=self.weight.dtype
        )
        z0 = self.q0_mean + (0.5 * self.q0_log_var).exp() * eps
        log_q0 = -0.5 * (_LOG_2PI + self.q0_log_var + eps.pow(2)).sum(-1)
        z, logdet = self.flow_q(z0)
        return z, log_q0 - logdet

    def scaled_mean(self, z: Tensor) -> Tensor:
        """``z * M``: the weight means for one ``z [n_z]``."""
        shape = [1] * self.weight.dim()
        shape[self.z_axis] = -1
        return self.weight * z.reshape(shape)

    def kl(self) -> Tensor:
        """One-sample estimate of this layer's KL bound (scalar; see the module docstring)."""
        z_all, log_q = self.sample_z(1)
        z = z_all[0]
        mean = self.scaled_mean(z)
        var = self.weight_var
        s2 = self.prior_scale**2
        kl_w = 0.5 * (math.log(s2) - var.log() + (var + mean.pow(2)) / s2 - 1).sum()
        # rows indexed by z: [n_z, m]
        mean_rows = mean.movedim(self.z_axis, 0).reshape(z.shape[0], -1)
        var_rows = var.movedim(self.z_axis, 0).reshape(z.shape[0], -1)
        a_mean = self.r_c @ mean_rows
        a_var = self.r_c.pow(2) @ var_rows
        a = torch.tanh(a_mean + a_var.clamp_min(1e-16).sqrt() * torch.randn_like(a_mean)).mean()
        mu_r = self.r_b1 * a
        log_var_r = self.r_b2 * a
        z_b, logdet_r = self.flow_r(z)
        log_r = (
            -0.5 * (_LOG_2PI + log_var_r + (z_b - mu_r).pow(2) / log_var_r.exp()).sum() + logdet_r
        )
        return kl_w + log_q[0] - log_r

    def sample_weight_rsample(self) -> Tensor:
        """One weight sample ``W ~ q(W | z) q(z)`` (reparameterised)."""
        z, _ = self.sample_z(1)
        mean = self.scaled_mean(z[0])
        return mean + self.weight_var.sqrt() * torch.randn_like(mean)

    @torch.no_grad()
    def sample_weight(self, num_samples: int) -> Tensor:
        """Weight samples ``[S, *weight.shape]`` (each with its own z)."""
        z, _ = self.sample_z(num_samples)
        means = torch.stack([self.scaled_mean(zi) for zi in z])
        return means + self.weight_var.sqrt() * torch.randn_like(means)


class MNFLinear(_MNFMixin, nn.Linear):  # type: ignore[misc]
    """``nn.Linear`` with MNF weights: z per input unit, one z per example."""

    z_axis = 1

    def forward(self, x: Tensor) -> Tensor:
        """``nn.Linear`` with MNF weights.

        Args:
            x: Inputs ``[B, ..., in_features]``.

        Returns:
            Outputs ``[B, ..., out_features]``.
        """
        if self.shared_noise:
            return F.linear(x, self.sample_weight_rsample(), self.bias)
        z, _ = self.sample_z(x.shape[0])
        z = z.reshape(x.shape[0], *([1] * (x.dim() - 2)), -1)
        mean = F.linear(x * z, self.weight, self.bias)
        var = F.linear(x.pow(2), self.weight_var)
        return mean + var.clamp_min(1e-16).sqrt() * torch.randn_like(mean)


class MNFConv2d(_MNFMixin, nn.Conv2d):
    """``nn.Conv2d`` with MNF weights: z per output channel, one z per example."""

    z_axis = 0

    def forward(self, x: Tensor) -> Tensor:
        """``nn.Conv2d`` with MNF weights.

        Args:
            x: Images ``[B, C_in, H, W]``.

        Returns:
            Feature maps ``[B, C_out, H', W']``.
        """
        if self.shared_noise:
            return self._conv_forward(x, self.sample_weight_rsample(), self.bias)
        z, _ = self.sample_z(x.shape[0])
        mean = self._conv_forward(x, self.weight, None) * z[:, :, None, None]
        if self.bias is not None:
            mean = mean + self.bias[:, None, None]
        var = self._conv_forward(x.pow(2), self.weight_var, None)
        return mean + var.clamp_min(1e-16).sqrt() * torch.randn_like(mean)


@contextmanager
def shared_noise(layers: Sequence[nn.Module]) -> Iterator[None]:
    """While inside, each forward pass of the MNF ``layers`` draws one z and one W per batch."""
    try:
        for layer in layers:
            layer.shared_noise = True  # type: ignore[assignment]
        yield
    finally:
        for layer in layers:
            layer.shared_noise = False  # type: ignore[assignment]


def make_mnf(module: nn.Module, **options: float | int) -> None:
    """Switch an ``nn.Linear``/``nn.Conv2d`` (exact type) in place to its MNF version."""
    kinds = {nn.Linear: MNFLinear, nn.Conv2d: MNFConv2d}
    if type(module) not in kinds:
        raise TypeError(f"no MNF version of {type(module).__name__}")
    module.__class__ = kinds[type(module)]
    cast(_MNFMixin, module)._init_mnf(**options)  # type: ignore[arg-type]
