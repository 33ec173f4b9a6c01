"""Closed-form KL divergences between diagonal Gaussians (Bayes by Backprop, MNF).

``KL(N(mu, sigma^2) || N(0, s^2)) = sum[ log(s / sigma) + (sigma^2 + mu^2) / (2 s^2) - 1/2 ]``
(Blundell et al. 2015; Kingma and Welling 2014, appendix B).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


def gaussian_kl_to_isotropic(mean: Tensor, log_var: Tensor, prior_scale: float | Tensor) -> Tensor:
    """``KL(N(mean, exp(log_var)) || N(0, prior_scale^2 I))``, summed over every element;
    ``prior_scale`` a number or one scale per element (a fan-in prior's ``[D]``)."""
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
    """``KL(N(mean_q, exp(log_var_q)) || N(mean_p, exp(log_var_p)))`` summed over elements."""
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
