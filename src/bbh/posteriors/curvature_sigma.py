"""Sigma set from averaged curvature: the fixed point of the ELBO in each weight's sigma.

For a semi-implicit posterior ``w = G(z) + sigma * eps`` (``ImplicitPosterior``) trained on
``nll + c KL`` (``c = kl_weight * temperature / N``), the ELBO's gradient in ``log sigma_i`` is

    sigma_i^2 h_i + c (sigma_i^2 / s_i^2 - 1 + rho_i),

with ``h_i = E_q[d^2 nll / dw_i^2]`` (Stein's lemma: the likelihood's gradient in ``log sigma_i``
is ``sigma_i E[g_i eps_i] = sigma_i^2 h_i``), ``s_i`` the prior's scale and ``rho_i`` in [0, 1]
the share of weight i's variance the generator already explains (the KL's own gradient gives
``1 - rho_i = sigma_i^2 / s_i^2 - dKL/dlog sigma_i``). It vanishes at

    sigma_i^2 = c (1 - rho_i) / (h_i + c / s_i^2).

Walking to that point with Adam moves ``log sigma_i`` at the learning rate times the gradient's
signal-to-noise ratio, which is far below 1 for a weakly constrained weight: sigma ends near its
start. Here ``h`` and ``1 - rho`` are averaged over steps instead (an exponential average with
bias correction, as Adam's moments) and sigma is set to the fixed point each step: the noise of
one step's estimate averages out over ``1 / (1 - beta)`` steps, and the start is forgotten once
the average holds no initial term. This is the precision update of variational online Newton
(Khan et al., "Fast and Scalable Bayesian Deep Learning by Weight-Perturbation in Adam", ICML
2018; Shen et al., "Variational Learning is Effective for Large Deep Networks", ICML 2024: IVON)
carried over to the Gaussian part of BbH's semi-implicit posterior (arXiv 1711.01297, section 3).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

#: the average's decay: about how many steps one estimate of the curvature spans
DEFAULT_BETA = 0.99
#: the smallest ``1 - rho`` the fixed point uses (the generator explaining all of a weight's
#: variance would otherwise set its sigma to 0)
MIN_FREE_SHARE = 1e-3


class CurvatureSigma(nn.Module):
    """Per-weight averages of the likelihood's curvature and of the entropy's free share, and
    the sigma they set (buffers: saved with the model, restored by a resumed run).

    Args:
        dim: the number of weights with a sigma.
        beta: the averages' decay.
        warmup: steps that only average (sigma stays where it started); default ``1 / (1 -
            beta)``, the span of one average.
    """

    def __init__(self, dim: int, beta: float = DEFAULT_BETA, warmup: int | None = None):
        super().__init__()
        if not 0.0 < beta < 1.0:
            raise ValueError(f"beta must be in (0, 1), got {beta!r}")
        self.beta = float(beta)
        self.warmup = round(1.0 / (1.0 - beta)) if warmup is None else int(warmup)
        if self.warmup < 0:
            raise ValueError(f"warmup must be >= 0, got {warmup!r}")
        self.register_buffer("curvature", torch.zeros(dim))
        self.register_buffer("free_share", torch.zeros(dim))
        self.register_buffer("steps", torch.zeros((), dtype=torch.long))

    @torch.no_grad()
    def update(
        self,
        log_sigma: Tensor,
        loss_grad: Tensor,
        kl_grad: Tensor,
        kl_factor: float,
        prior_scale: float | Tensor,
    ) -> Tensor | None:
        """Average one step's estimates; the new ``log sigma`` ``[D]``, or None while warming up
        or where the KL carries no weight (``kl_factor = 0``: the ELBO's optimum is sigma = 0).

        ``loss_grad`` and ``kl_grad`` are the gradients in ``log sigma`` of the step's whole
        loss and of its KL alone; ``kl_factor`` is ``c``, the KL's factor in the loss.
        """
        if kl_factor <= 0.0:
            return None
        var = (2.0 * log_sigma).exp()
        prior_var = torch.as_tensor(prior_scale, dtype=var.dtype, device=var.device) ** 2
        curvature = (loss_grad - kl_factor * kl_grad) / var
        free = var / prior_var - kl_grad
        self.curvature.mul_(self.beta).add_(curvature, alpha=1.0 - self.beta)
        self.free_share.mul_(self.beta).add_(free, alpha=1.0 - self.beta)
        self.steps += 1
        t = int(self.steps)
        if t <= self.warmup:
            return None
        correction = 1.0 - self.beta**t
        h = (self.curvature / correction).clamp_min(0.0)
        share = (self.free_share / correction).clamp(MIN_FREE_SHARE, 1.0)
        target = kl_factor * share / (h + kl_factor / prior_var)
        return 0.5 * target.log()

    def extra_repr(self) -> str:
        return f"dim={self.curvature.numel()}, beta={self.beta}, warmup={self.warmup}"
