"""IVON, the Improved Variational Online Newton optimiser (Shen et al., "Variational Learning
is Effective for Large Deep Networks", ICML 2024), through its own package ``ivon-opt``.

IVON learns a diagonal Gaussian posterior ``N(m, 1 / (ess * (h + wd)))`` over the weights at
about Adam's cost: each step draws a weight sample inside ``optimizer.sampled_params``, and the
optimiser's Hessian estimate ``h`` sets the variances. After training, ``IVONPeer`` keeps the
mean (the net's weights) and the standard deviations as buffers, so that prediction and saving
need no optimiser; a draw is ``m + std * eps``, the optimiser's own ``_sample_params``.

The defaults: ``ess`` = N (the training-set size), as the paper prescribes; the package's
defaults for the Hessian and the prior (``hess_init`` 1, ``beta1`` 0.9, ``beta2`` 0.99999,
weight decay 1e-4, one training sample per step, no clipping); a learning rate of 1 under a
cosine schedule. With the package's ``rescale_lr`` the first steps are then those of an averaged
momentum step of about SGD's size; on LeNet-5 and one epoch of MNIST the rates 0.1, 0.2, 0.5 and
1 ranked in that order, worst first, and a smaller ``hess_init`` (larger weight noise) lost
accuracy. A ``clip_radius`` of 1e-3 stalled the tests' short runs at chance accuracy.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import torch
from torch import Tensor, nn

from bbh.inputs import Inputs, call
from bbh.inputs import batch_size as rows
from bbh.peers._common import batches, flat_parameters, require
from bbh.peers._sampled import SampledWeights
from bbh.training.loop import check_training_data
from bbh.training.schedules import lr_factor


class IVONPeer(SampledWeights):
    """A net with IVON's diagonal Gaussian posterior (see the module docstring).

    Build it with ``train_ivon``; ``predict`` averages the softmaxes of S weight draws.

    Args:
        net: Any ``nn.Module`` (copied).
    """

    posterior_std: Tensor

    def __init__(self, net: nn.Module):
        super().__init__()
        self._init_net(net)
        self.register_buffer("posterior_std", torch.zeros_like(flat_parameters(self.net)))
        self.train_seconds = 0.0

    def sample_weights(self, num_samples: int) -> Tensor:
        """``num_samples`` draws ``m + std * eps`` (the optimiser's ``_sample_params``).

        Args:
            num_samples: S.

        Returns:
            A tensor ``[S, P]``.
        """
        mean = flat_parameters(self.net)
        noise = torch.randn(num_samples, mean.numel(), device=mean.device, dtype=mean.dtype)
        return mean + noise * self.posterior_std


def train_ivon(
    net: nn.Module,
    x: Inputs,
    y: Tensor,
    *,
    steps: int,
    batch_size: int,
    seed: int = 0,
    lr: float = 1.0,
    hess_init: float = 1.0,
    beta1: float = 0.9,
    beta2: float = 0.99999,
    weight_decay: float = 1e-4,
    clip_radius: float = float("inf"),
    train_samples: int = 1,
    lr_schedule: str = "cosine",
    transform: Callable[[Inputs, torch.Generator], Inputs] | None = None,
) -> IVONPeer:
    """Train ``net`` with IVON on ``(x, y)``, in ``bbh.training.fit``'s batch order.

    Args:
        net: The network (copied; its initial weights are IVON's initial mean).
        x: Training inputs ``[N, ...]``.
        y: Class ids ``[N]``.
        steps: Optimiser steps.
        batch_size: Examples per step.
        seed: Seeds the batch order (as ``fit``'s).
        lr: IVON's learning rate.
        hess_init: The Hessian's initial value ``h0``.
        beta1: The gradient momentum.
        beta2: The Hessian's momentum.
        weight_decay: IVON's weight decay (the prior precision per example).
        clip_radius: The element-wise clipping radius of the update.
        train_samples: Weight samples (forward-backward passes) per step.
        lr_schedule: ``constant``, ``cosine`` or ``cooldown`` (``bbh.training.schedules``).
        transform: A batch transform (e.g. augmentation), as ``fit`` takes it.

    Returns:
        The trained ``IVONPeer`` (in eval mode; ``train_seconds`` holds the wall time).

    Raises:
        PeerPackageMissing: ``ivon-opt`` is not installed.
    """
    ivon = require("ivon", "ivon-opt")
    method = IVONPeer(net)
    n = rows(x)
    x, y = check_training_data(method, x, y, transform, seed)  # raw x: checked after transform
    params = [p for p in method.net.parameters() if p.requires_grad]
    opt = ivon.IVON(
        params, lr=lr, ess=float(n), hess_init=hess_init, beta1=beta1, beta2=beta2,
        weight_decay=weight_decay, clip_radius=clip_radius,
    )  # fmt: skip
    start = time.perf_counter()
    method.net.train()
    for step, xb, yb in batches(x, y, steps=steps, batch_size=batch_size, seed=seed,
                                transform=transform):  # fmt: skip
        for group in opt.param_groups:
            group["lr"] = lr * lr_factor(lr_schedule, step, steps)
        for _ in range(train_samples):
            with opt.sampled_params(train=True):
                opt.zero_grad()
                nll = -method.likelihood.log_prob(call(method.net, xb), yb).mean()
                nll.backward()
        opt.step()
    method.net.eval()
    with torch.no_grad():
        group = opt.param_groups[0]
        method.posterior_std.copy_((group["ess"] * (group["hess"] + group["weight_decay"])).rsqrt())
    method.train_seconds = time.perf_counter() - start
    method.eval()
    return method
