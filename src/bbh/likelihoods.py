"""Likelihoods ``p(y | x, w)`` evaluated on sampled outputs ``[..., B, C]``.

- ``categorical``: outputs are logits ``[..., B, C]``, ``y`` integer classes ``[B]``.
- ``gaussian``: outputs are means ``[..., B, C]`` (C = output dimension), ``y`` is ``[B]`` (C = 1)
  or ``[B, C]``, with a fixed noise standard deviation ``noise_scale``.
"""

from __future__ import annotations

import math
from enum import Enum

import torch
import torch.nn.functional as F
from torch import Tensor


class LikelihoodName(str, Enum):
    CATEGORICAL = "categorical"
    GAUSSIAN = "gaussian"


class Likelihood:
    """``log_prob(outputs [..., B, C], y) -> [..., B]``, per-example log-likelihoods."""

    name: str

    def log_prob(self, outputs: Tensor, y: Tensor) -> Tensor:
        raise NotImplementedError


class CategoricalLikelihood(Likelihood):
    name = LikelihoodName.CATEGORICAL.value

    def log_prob(self, outputs: Tensor, y: Tensor) -> Tensor:
        if y.dim() != 1 or y.shape[0] != outputs.shape[-2]:
            raise ValueError(
                f"categorical likelihood needs labels [B={outputs.shape[-2]}], got {list(y.shape)}"
            )
        logp = F.log_softmax(outputs, dim=-1)
        index = y.long().expand(*outputs.shape[:-1]).unsqueeze(-1)
        return logp.gather(-1, index).squeeze(-1)


class GaussianLikelihood(Likelihood):
    name = LikelihoodName.GAUSSIAN.value

    def __init__(self, noise_scale: float):
        if not (isinstance(noise_scale, (int, float)) and noise_scale > 0):
            raise ValueError(f"noise_scale must be a positive number, got {noise_scale!r}")
        self.noise_scale = float(noise_scale)

    def log_prob(self, outputs: Tensor, y: Tensor) -> Tensor:
        target = y.reshape(outputs.shape[-2], -1).to(outputs.dtype)
        if target.shape[-1] != outputs.shape[-1]:
            raise ValueError(
                f"gaussian likelihood: targets {list(y.shape)} do not match outputs "
                f"{list(outputs.shape)} (expected [B] or [B, {outputs.shape[-1]}])"
            )
        z = (outputs - target) / self.noise_scale
        const = math.log(self.noise_scale) + 0.5 * math.log(2 * math.pi)
        return (-0.5 * z.pow(2) - const).sum(-1)


def make_likelihood(name: str, noise_scale: float | None = None) -> Likelihood:
    """Build a likelihood by name: ``categorical`` or ``gaussian`` (needs ``noise_scale``)."""
    try:
        kind = LikelihoodName(name)
    except ValueError:
        allowed = [n.value for n in LikelihoodName]
        raise ValueError(f"unknown likelihood {name!r}; allowed: {allowed}") from None
    if kind is LikelihoodName.CATEGORICAL:
        if noise_scale is not None:
            raise ValueError("noise_scale applies only to likelihood='gaussian'")
        return CategoricalLikelihood()
    if noise_scale is None:
        raise ValueError("likelihood='gaussian' needs noise_scale (the fixed noise std)")
    return GaussianLikelihood(noise_scale)


def log_mean_exp(values: Tensor, dim: int = 0) -> Tensor:
    """``log mean_s exp(values_s)`` along ``dim``, computed stably."""
    return torch.logsumexp(values, dim=dim) - math.log(values.shape[dim])
