"""A mean-field Gaussian over a flat weight vector ``[D]`` (Bayes by Backprop, Blundell 2015).

``q(w) = N(mean, diag(exp(log_var)))``; samples ``[S, D]`` by the reparameterisation
``w = mean + exp(log_var / 2) * eps``. Parameterised by the log-variance (the paper's ``rho``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from bbh.posteriors.tensor_scale import add_per_tensor, checked_tensor_sizes
from bbh.priors import gaussian_kl_to_isotropic


class MeanFieldGaussian(nn.Module):
    """Factorised Gaussian over D scalars.

    Args:
        init_mean: ``[D]`` initial means (e.g. the primary net's initial weights).
        init_log_var: initial log-variance (the paper: -9 on MNIST, -30 on CIFAR, -3 on the toy).
        init_log_var_std: std of the truncated-normal (+-2 std) jitter of the initial log-variance
            (the paper: 0.05).
        generator: optional ``torch.Generator`` for the initial jitter.
        tensor_sizes: sizes of the contiguous runs of ``[D]`` (the net's parameter tensors)
            that each get one more learned log-variance shift (``sigma_i = s_t r_i``): the same
            family, whose tensor-level scale Adam moves at the whole tensor's signal-to-noise
            ratio (as ``bbh.posteriors.ImplicitPosterior``'s ``tensor_sizes``).
    """

    def __init__(
        self,
        init_mean: Tensor,
        init_log_var: float = -9.0,
        init_log_var_std: float = 0.05,
        generator: torch.Generator | None = None,
        tensor_sizes: Sequence[int] | None = None,
    ):
        super().__init__()
        if init_mean.dim() != 1:
            raise ValueError(f"init_mean must have shape [D], got {list(init_mean.shape)}")
        if init_log_var_std < 0:
            raise ValueError(f"init_log_var_std must be >= 0, got {init_log_var_std!r}")
        jitter = torch.randn(init_mean.shape, generator=generator).clamp_(-2, 2)
        self.mean = nn.Parameter(init_mean.detach().clone())
        self.log_var = nn.Parameter((init_log_var + init_log_var_std * jitter).to(init_mean.dtype))
        #: the runs of ``[D]`` sharing a learned shift of the log-variance (or ``()``)
        self.tensor_sizes: tuple[int, ...] = ()
        self.log_var_tensor: nn.Parameter | None = None
        if tensor_sizes is not None:
            self.tensor_sizes = checked_tensor_sizes(tensor_sizes, init_mean.shape[0])
            self.log_var_tensor = nn.Parameter(init_mean.new_zeros(len(self.tensor_sizes)))

    def _load_from_state_dict(self, state_dict: Any, prefix: str, *args: Any) -> None:
        if self.log_var_tensor is not None and prefix + "log_var" in state_dict:
            # a file without the shared shifts: the same variances (shift 0)
            state_dict.setdefault(prefix + "log_var_tensor", torch.zeros_like(self.log_var_tensor))
        super()._load_from_state_dict(state_dict, prefix, *args)

    @property
    def full_log_var(self) -> Tensor:
        """Each weight's log-variance ``[D]``: its own plus its tensor's shift."""
        if self.log_var_tensor is None:
            return self.log_var
        return add_per_tensor(self.log_var, self.log_var_tensor, self.tensor_sizes)

    @property
    def dim(self) -> int:
        """D, the number of weights."""
        return self.mean.shape[0]

    @property
    def std(self) -> Tensor:
        """The standard deviations ``[D]``."""
        return (0.5 * self.full_log_var).exp()

    def rsample(self, num_samples: int) -> Tensor:
        """Reparameterised samples ``[S, D]`` (differentiable in mean and log_var).

        Args:
            num_samples: S.

        Returns:
            ``[S, D]``.
        """
        eps = torch.randn(num_samples, self.dim, device=self.mean.device, dtype=self.mean.dtype)
        return self.mean + self.std * eps

    @torch.no_grad()
    def sample_weights(self, num_samples: int) -> Tensor:
        """Weight samples ``[S, D]`` without gradients (for weight statistics).

        Args:
            num_samples: S.

        Returns:
            ``[S, D]``.
        """
        return self.rsample(num_samples)

    def kl(self, prior_scale: float | Tensor) -> Tensor:
        """Closed-form ``KL(q || N(0, prior_scale^2 I))`` (scalar); ``prior_scale`` a number or
        one per weight ``[D]``.

        Args:
            prior_scale: The prior's standard deviation, a number or ``[D]``.

        Returns:
            A scalar tensor.
        """
        return gaussian_kl_to_isotropic(self.mean, self.full_log_var, prior_scale)
