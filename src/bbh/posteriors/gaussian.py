"""A mean-field Gaussian over a flat weight vector ``[D]`` (Bayes by Backprop, Blundell 2015).

``q(w) = N(mean, diag(exp(log_var)))``; samples ``[S, D]`` by the reparameterisation
``w = mean + exp(log_var / 2) * eps``. Parameterised by the log-variance (the paper's ``rho``).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from bbh.divergences.gaussian import gaussian_kl_to_isotropic


class MeanFieldGaussian(nn.Module):
    """Factorised Gaussian over D scalars.

    Args:
        init_mean: ``[D]`` initial means (e.g. the primary net's initial weights).
        init_log_var: initial log-variance (the paper: -9 on MNIST, -30 on CIFAR, -3 on the toy).
        init_log_var_std: std of the truncated-normal (+-2 std) jitter of the initial log-variance
            (the paper: 0.05).
        generator: optional ``torch.Generator`` for the initial jitter.
    """

    def __init__(
        self,
        init_mean: Tensor,
        init_log_var: float = -9.0,
        init_log_var_std: float = 0.05,
        generator: torch.Generator | None = None,
    ):
        super().__init__()
        if init_mean.dim() != 1:
            raise ValueError(f"init_mean must have shape [D], got {list(init_mean.shape)}")
        if init_log_var_std < 0:
            raise ValueError(f"init_log_var_std must be >= 0, got {init_log_var_std!r}")
        jitter = torch.randn(init_mean.shape, generator=generator).clamp_(-2, 2)
        self.mean = nn.Parameter(init_mean.detach().clone())
        self.log_var = nn.Parameter((init_log_var + init_log_var_std * jitter).to(init_mean.dtype))

    @property
    def dim(self) -> int:
        return self.mean.shape[0]

    @property
    def std(self) -> Tensor:
        return (0.5 * self.log_var).exp()

    def rsample(self, num_samples: int) -> Tensor:
        """Reparameterised samples ``[S, D]`` (differentiable in mean and log_var)."""
        eps = torch.randn(num_samples, self.dim, device=self.mean.device, dtype=self.mean.dtype)
        return self.mean + self.std * eps

    @torch.no_grad()
    def sample_weights(self, num_samples: int) -> Tensor:
        """Weight samples ``[S, D]`` without gradients (for weight statistics)."""
        return self.rsample(num_samples)

    def kl(self, prior_scale: float | Tensor) -> Tensor:
        """Closed-form ``KL(q || N(0, prior_scale^2 I))`` (scalar); ``prior_scale`` a number or
        one per weight ``[D]``."""
        return gaussian_kl_to_isotropic(self.mean, self.log_var, prior_scale)
