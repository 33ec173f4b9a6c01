"""The discriminator KL estimator of BbH: a learned density ratio, as in the paper's code
(pawni/BayesByHypernet, ``base_layers.BBHDiscriminator``, ``experiments.run_disc_experiment``).

A small MLP ``T_psi`` on **scalars** is trained to tell generated weights (label 1) from prior
draws (label 0) with the logistic loss; at its optimum ``T(w) = log q(w) / p(w)`` for the pooled
marginal of all generated scalars, so:

    KL_hat(q || p) = D * mean over the S x D generated scalars of T_psi(w)

It ignores correlations between weights (a marginal ratio), as the paper's version does.

Training alternates inside the one training loop: ``forward`` (the KL term of the generator's
loss) runs the discriminator with its parameters detached, so the discriminator gets no gradient
from the KL; ``auxiliary_loss`` (added by the method to the same loss) sees detached weights, so
the generator gets no gradient from the discriminator loss. One optimiser step then trains both.

Pretraining (the paper: 100 discriminator steps before training): call
``pretrain(sample_fn, prior, steps)`` with fresh generator samples; if it was never called, the
first call in training mode runs ``pretrain_steps`` steps on the weights it is given (the generator
is then at its initialisation, as in the paper, but the same S samples are reused).

Options beyond the paper: ``max_scalars`` feeds a random subset of r scalars per call (the
paper's ``--random_weights`` always took the first r weights, a bug).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call

from bbh.divergences.base import KLEstimator
from bbh.priors import GaussianPrior


class DiscriminatorKL(KLEstimator):
    """Density-ratio KL estimator ``forward(weights [S, D], prior) -> scalar``.

    Args:
        hidden: hidden sizes of the scalar discriminator (the paper: 64, 64, 64; ReLU).
        pretrain_steps: steps run lazily by the first call in training mode if ``pretrain`` was
            never called (the paper: 100).
        pretrain_lr: Adam learning rate of pretraining.
        max_scalars: feed at most this many random scalars per call (None: all S x D).

    Raises:
        ValueError: ``hidden`` is empty or holds a size below 1, ``pretrain_steps`` is
            negative, or ``max_scalars`` is below 1.
    """

    def __init__(
        self,
        hidden: Sequence[int] = (64, 64, 64),
        *,
        pretrain_steps: int = 100,
        pretrain_lr: float = 1e-3,
        max_scalars: int | None = None,
    ):
        super().__init__()
        hidden = tuple(hidden)
        if not hidden or any(h < 1 for h in hidden):
            raise ValueError(f"hidden must be positive sizes, got {hidden!r}")
        if pretrain_steps < 0:
            raise ValueError(f"pretrain_steps must be >= 0, got {pretrain_steps!r}")
        if max_scalars is not None and max_scalars < 1:
            raise ValueError(f"max_scalars must be >= 1 or None, got {max_scalars!r}")
        layers: list[nn.Module] = []
        for a, b in itertools.pairwise((1, *hidden)):
            layers += [nn.Linear(a, b), nn.ReLU()]
        layers.append(nn.Linear(hidden[-1], 1))
        self.net = nn.Sequential(*layers)
        self.pretrain_steps = pretrain_steps
        self.pretrain_lr = pretrain_lr
        self.max_scalars = max_scalars
        self.pretrained: Tensor
        self.register_buffer("pretrained", torch.zeros((), dtype=torch.bool))

    def logits(self, scalars: Tensor, *, detach_params: bool = False) -> Tensor:
        """Discriminator logits ``[n]`` for scalars ``[n]`` (``log q/p`` at the optimum).

        Args:
            scalars: Weight values of any shape, taken as ``n`` scalars.
            detach_params: Run the discriminator with its parameters detached, so that no
                gradient reaches them (the KL term).

        Returns:
            The logits ``[n]``.
        """
        inputs = scalars.reshape(-1, 1)
        if detach_params:
            params = {k: v.detach() for k, v in self.net.named_parameters()}
            return functional_call(self.net, params, (inputs,)).squeeze(-1)
        return self.net(inputs).squeeze(-1)

    def forward(self, weights: Tensor, prior: GaussianPrior) -> Tensor:
        """``KL_hat = D * mean T(w)``; gradients reach the weights, not the discriminator.

        In training mode, the first call pretrains the discriminator on ``weights`` if
        ``pretrain`` was never called.

        Args:
            weights: Generated weight samples ``[S, D]``.
            prior: The prior.

        Returns:
            A scalar tensor, differentiable in ``weights``.

        Raises:
            ValueError: ``weights`` is not ``[S, D]``.
        """
        _check(weights)
        self._maybe_pretrain(weights, prior)
        scalars = self._subsample(weights)
        return weights.shape[1] * self.logits(scalars, detach_params=True).mean()

    def auxiliary_loss(self, weights: Tensor, prior: GaussianPrior) -> Tensor:
        """The discriminator's logistic loss on detached weights vs as many prior scalars.

        Args:
            weights: Generated weight samples ``[S, D]`` (detached here).
            prior: The prior whose scalars are the negatives.

        Returns:
            A scalar tensor, differentiable in the discriminator's parameters only.

        Raises:
            ValueError: ``weights`` is not ``[S, D]``.
        """
        _check(weights)
        self._maybe_pretrain(weights, prior)
        return self._loss(weights.detach(), prior)

    def pretrain(
        self, sample_fn: Callable[[], Tensor], prior: GaussianPrior, steps: int
    ) -> list[float]:
        """``steps`` Adam steps on the discriminator alone, with ``sample_fn() -> [S, D]``.

        Marks the discriminator as pretrained, so that training does not pretrain it again.

        Args:
            sample_fn: Returns fresh generated weights ``[S, D]`` (detached here) at each step.
            prior: The prior whose scalars are the negatives.
            steps: Adam steps at ``pretrain_lr``.

        Returns:
            The loss at each step.
        """
        params = list(self.net.parameters())
        opt = torch.optim.Adam(params, lr=self.pretrain_lr)
        losses = []
        with torch.enable_grad():
            for _ in range(steps):
                loss = self._loss(sample_fn().detach(), prior)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                losses.append(loss.item())
        for p in params:
            p.grad = None
        self.pretrained.fill_(True)
        return losses

    def _maybe_pretrain(self, weights: Tensor, prior: GaussianPrior) -> None:
        """Lazy pretraining on the first call, before any graph uses the parameters."""
        if self.training and not bool(self.pretrained) and self.pretrain_steps > 0:
            fixed = weights.detach()
            self.pretrain(lambda: fixed, prior, self.pretrain_steps)

    def _loss(self, weights: Tensor, prior: GaussianPrior) -> Tensor:
        scalars = self._subsample(weights)
        prior_scalars = prior.scale * torch.randn_like(scalars)
        gen = self.logits(scalars)
        ref = self.logits(prior_scalars)
        return F.binary_cross_entropy_with_logits(
            gen, torch.ones_like(gen)
        ) + F.binary_cross_entropy_with_logits(ref, torch.zeros_like(ref))

    def _subsample(self, weights: Tensor) -> Tensor:
        """All S x D scalars, or ``max_scalars`` of them drawn at random (with replacement).

        ``D * mean`` over a uniform subset is an unbiased estimate of ``D * mean`` over all.
        """
        flat = weights.reshape(-1)
        if self.max_scalars is None or flat.numel() <= self.max_scalars:
            return flat
        idx = torch.randint(0, flat.numel(), (self.max_scalars,), device=flat.device)
        return flat[idx]


def _check(weights: Tensor) -> None:
    if weights.dim() != 2:
        raise ValueError(f"weights must have shape [S, D], got {list(weights.shape)}")
