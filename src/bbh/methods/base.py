"""The one interface every method speaks (MAP, MC dropout, ensemble, BbB, MNF, BbH).

A method is an ``nn.Module`` that wraps an ordinary primary network and offers

- ``loss(x, y, *, num_data, kl_weight) -> (loss, logs)``: the per-example objective
  ``mean NLL + kl_weight * KL / num_data`` (``num_data`` = training-set size, summed over ranks);
  ``logs`` maps names to detached scalar tensors (no host sync per step);
- ``predict_logits(x, num_samples) -> [S, B, C]``: outputs for S draws of the weights (for a
  regression likelihood, C is the output dimension);
- ``predict(x, num_samples) -> [B, C]``: the predictive probabilities, the mean of the softmaxes.

Training, evaluation, attacks and the CLI use only this interface.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class Method(nn.Module):
    """Base class: subclasses implement ``loss`` and ``predict_logits``."""

    #: True when predictions vary between weight draws (used for defaults, e.g. 1 pass for MAP).
    stochastic: bool = True
    #: The Adam learning rate ``bbh.training.fit`` uses when none is given.
    default_lr: float = 1e-3

    def loss(
        self, x: Tensor, y: Tensor, *, num_data: int, kl_weight: float = 1.0
    ) -> tuple[Tensor, dict[str, Tensor]]:
        raise NotImplementedError

    def predict_logits(self, x: Tensor, num_samples: int = 100) -> Tensor:
        raise NotImplementedError

    @torch.no_grad()
    def predict(self, x: Tensor, num_samples: int = 100) -> Tensor:
        """Predictive probabilities ``[B, C]``: the mean over S draws of ``softmax(logits)``."""
        return self.predict_logits(x, num_samples).softmax(dim=-1).mean(dim=0)


def check_num_data(num_data: int) -> None:
    if not isinstance(num_data, int) or num_data < 1:
        raise ValueError(
            f"num_data must be a positive int (the training-set size), got {num_data!r}"
        )


def check_num_samples(num_samples: int, *, minimum: int = 1, name: str = "num_samples") -> None:
    if not isinstance(num_samples, int) or num_samples < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {num_samples!r}")
