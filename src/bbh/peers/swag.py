"""SWAG, SWA-Gaussian (Maddox et al., "A Simple Baseline for Bayesian Uncertainty in Deep
Learning", NeurIPS 2019): a small implementation of ours (the ``swa-gaussian`` package on the
index is the paper's research code, pulls torchvision and gpytorch and is not maintained).

Training is MAP training (``bbh.methods.MAP``, the same loss and batch order as the MAP row,
through ``bbh.training.fit``) at a constant learning rate; after a burn-in, the weights are
collected every few steps into their running mean ``m`` (the SWA solution), the running mean of
their squares, and the last K deviations from the running mean (the columns of ``D``). A draw is

    w = m + sqrt(scale) * (diag(sigma) z1 / 1 + D z2 / sqrt(K - 1)),   z1, z2 ~ N(0, I)

with ``sigma^2 = max(mean of squares - m^2, var_clamp)``: the low-rank plus diagonal Gaussian
``N(m, (Sigma_diag + D D^T / (K - 1)) / 2)`` at the paper's ``scale = 0.5``. Where the net has
batch norm, each draw's running statistics are recomputed on training inputs (the paper's
``bn_update``), on at most ``bn_examples`` of them.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import torch
from torch import Tensor, nn

from bbh.inputs import Inputs, index
from bbh.methods.map import MAP
from bbh.peers._common import flat_parameters
from bbh.peers._sampled import SampledWeights, batch_norms
from bbh.training.loop import FitHooks, fit


class SWAG(SampledWeights):
    """SWA-Gaussian over ``net``'s weights (see the module docstring).

    Build it with ``train_swag``, or call ``collect`` on weight snapshots yourself.

    Args:
        net: Any ``nn.Module`` (copied); its weights become the SWA mean after collection.
        rank: K, the number of deviation columns kept.
        scale: The covariance's scale at sampling (the paper's 0.5).
        var_clamp: The smallest diagonal variance.
    """

    mean: Tensor
    sq_mean: Tensor
    deviations: Tensor
    num_collected: Tensor

    def __init__(
        self, net: nn.Module, *, rank: int = 20, scale: float = 0.5, var_clamp: float = 1e-30
    ):
        super().__init__()
        if rank < 2:
            raise ValueError(f"rank must be >= 2, got {rank}")
        self._init_net(net)
        self.rank, self.scale, self.var_clamp = rank, scale, var_clamp
        flat = flat_parameters(self.net)
        self.register_buffer("mean", torch.zeros_like(flat))
        self.register_buffer("sq_mean", torch.zeros_like(flat))
        self.register_buffer("deviations", torch.zeros(rank, flat.numel(), dtype=flat.dtype))
        self.register_buffer("num_collected", torch.zeros((), dtype=torch.long))
        self.train_seconds = 0.0

    @torch.no_grad()
    def collect(self, net: nn.Module) -> None:
        """Add the weights of ``net`` (the net being trained) to the moments.

        Args:
            net: A net with the same parameters as this method's.
        """
        w = flat_parameters(net).to(self.mean)
        n = int(self.num_collected)
        self.mean.mul_(n / (n + 1)).add_(w / (n + 1))
        self.sq_mean.mul_(n / (n + 1)).add_(w.square() / (n + 1))
        self.deviations[n % self.rank] = w - self.mean
        self.num_collected += 1

    @torch.no_grad()
    def load_mean(self) -> None:
        """Put the SWA mean into the net's parameters (after the last ``collect``)."""
        offset = 0
        for p in self.net.parameters():
            if p.requires_grad:
                p.copy_(self.mean[offset : offset + p.numel()].view_as(p))
                offset += p.numel()

    def sample_weights(self, num_samples: int) -> Tensor:
        """``num_samples`` draws from the low-rank plus diagonal Gaussian.

        Args:
            num_samples: S.

        Returns:
            A tensor ``[S, P]``.

        Raises:
            RuntimeError: Fewer than 2 snapshots were collected.
        """
        k = min(int(self.num_collected), self.rank)
        if k < 2:
            raise RuntimeError(f"SWAG needs >= 2 collected snapshots, has {k}")
        var = (self.sq_mean - self.mean.square()).clamp_min(self.var_clamp)
        p = self.mean.numel()
        z1 = torch.randn(num_samples, p, device=self.mean.device, dtype=self.mean.dtype)
        z2 = torch.randn(num_samples, k, device=self.mean.device, dtype=self.mean.dtype)
        low_rank = z2 @ self.deviations[:k] / math.sqrt(k - 1)
        return self.mean + math.sqrt(self.scale) * (var.sqrt() * z1 + low_rank)


class _Collector(FitHooks):
    """Collects the trained net's weights every ``every`` steps after ``start``."""

    def __init__(self, swag: SWAG, trained: nn.Module, start: int, every: int):
        self.swag, self.trained, self.start, self.every = swag, trained, start, every

    def on_step(self, step: int) -> None:
        if step > self.start and (step - self.start) % self.every == 0:
            self.swag.collect(self.trained)


def train_swag(
    net: nn.Module,
    x: Inputs,
    y: Tensor,
    *,
    steps: int,
    batch_size: int,
    seed: int = 0,
    lr: float = 1e-3,
    optimizer: str = "adam",
    burn_in: float = 0.5,
    snapshots: int = 40,
    rank: int = 20,
    scale: float = 0.5,
    prior_scale: float = 1.0,
    bn_examples: int = 2048,
    transform: Callable[[Inputs, torch.Generator], Inputs] | None = None,
) -> SWAG:
    """Train ``net`` by MAP at a constant learning rate and collect SWAG's moments.

    The first ``burn_in`` of the steps only train; the rest collect ``snapshots`` snapshots at
    equal spacing (at least one step apart), keeping the last ``rank`` deviations.

    Args:
        net: The network (copied).
        x: Training inputs ``[N, ...]``.
        y: Class ids ``[N]``.
        steps: Optimiser steps (burn-in included).
        batch_size: Examples per step.
        seed: Seeds the batch order (``fit``'s).
        lr: The constant learning rate.
        optimizer: ``adam`` or ``rmsprop`` (``bbh.training.make_optimizer``).
        burn_in: The fraction of the steps before collection starts, in ``[0, 1)``.
        snapshots: How many snapshots to collect, at least 2.
        rank: K, the deviation columns kept.
        scale: The covariance's scale at sampling.
        prior_scale: The MAP loss's Gaussian prior scale (as the MAP row's).
        bn_examples: Training examples for each draw's batch-norm update (nets with batch norm).
        transform: A batch transform (e.g. augmentation), as ``fit`` takes it.

    Returns:
        The ``SWAG`` (in eval mode, the net at the SWA mean; ``train_seconds`` holds the
        wall time).

    Raises:
        ValueError: ``burn_in`` is outside ``[0, 1)`` or fewer than 2 snapshots fit the steps.
    """
    if not 0 <= burn_in < 1:
        raise ValueError(f"burn_in must be in [0, 1), got {burn_in}")
    start = int(steps * burn_in)
    every = max(1, (steps - start) // snapshots)
    if (steps - start) // every < 2:
        raise ValueError(f"{steps} steps with burn_in={burn_in} leave < 2 snapshots")
    model = MAP(net, prior_scale=prior_scale)
    swag = SWAG(net, rank=rank, scale=scale)
    clock = time.perf_counter()
    fit(model, x, y, steps=steps, batch_size=batch_size, lr=lr, optimizer=optimizer, seed=seed,
        transform=transform, lr_schedule="constant",
        hooks=_Collector(swag, model.net, start, every))  # fmt: skip
    swag.net.load_state_dict(model.net.state_dict())  # buffers (batch-norm statistics) included
    swag.load_mean()
    if batch_norms(swag.net):
        swag.bn_inputs = index(x, slice(0, bn_examples))
    swag.train_seconds = time.perf_counter() - clock
    swag.eval()
    return swag
