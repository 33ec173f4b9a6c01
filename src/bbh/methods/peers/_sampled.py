"""A method whose posterior draws are whole weight vectors (IVON's Gaussian, SWAG's low rank plus
diagonal Gaussian): drawn once by ``draw_predictive`` and applied to any batch."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from bbh.inputs import Inputs, index
from bbh.inputs import batch_size as rows
from bbh.likelihoods import Likelihood, make_likelihood
from bbh.methods.base import Method, check_num_samples
from bbh.methods.peers._common import call_with, unflatten

_BN = (nn.modules.batchnorm._BatchNorm,)


def batch_norms(net: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    """The net's batch-norm layers that track running statistics.

    Args:
        net: The network.

    Returns:
        The layers, in module order.
    """
    return [m for m in net.modules() if isinstance(m, _BN) and m.track_running_stats]


class SampledWeights(Method):
    """Base of the peers that draw weight vectors ``[S, P]`` (``sample_weights``).

    Where the net has batch norm and ``bn_inputs`` is set, each draw's running statistics are
    recomputed on those inputs (Maddox et al. 2019's ``bn_update``) and travel with the draw.
    """

    net: nn.Module
    likelihood: Likelihood
    #: Training inputs for the batch-norm update of each draw (None: keep the net's statistics).
    bn_inputs: Inputs | None = None
    #: Examples per forward pass of the batch-norm update.
    bn_batch_size: int = 256

    def _init_net(self, net: nn.Module) -> None:
        import copy

        self.net = copy.deepcopy(net)
        self.likelihood = make_likelihood("categorical")

    def sample_weights(self, num_samples: int) -> Tensor:
        """``num_samples`` weight vectors from the posterior.

        Args:
            num_samples: S.

        Returns:
            A tensor ``[S, P]`` laid out as ``flat_parameters``.
        """
        raise NotImplementedError

    def loss(
        self, x: Inputs, y: Tensor, *, num_data: int, kl_weight: float | Tensor = 1.0
    ) -> tuple[Tensor, dict[str, Tensor]]:
        from bbh.inputs import call

        x, y = self.check_batch(x, y, num_data=num_data, kl_weight=kl_weight)
        nll = -self.likelihood.log_prob(call(self.net, x), y).mean()
        return nll, {"nll": nll.detach(), "loss": nll.detach()}

    @torch.no_grad()
    def draw_predictive(self, num_samples: int) -> Tensor:
        """``num_samples`` weight draws (with their batch-norm statistics where updated).

        Args:
            num_samples: S, an int ``>= 1``.

        Returns:
            A tensor ``[S, P]`` (``[S, P + Q]`` with Q batch-norm statistics).
        """
        check_num_samples(num_samples)
        weights = self.sample_weights(num_samples)
        norms = batch_norms(self.net)
        if self.bn_inputs is None or not norms:
            return weights
        return torch.stack([torch.cat([w, self._bn_statistics(w, norms)]) for w in weights])

    def predict_logits_with(self, draws: Tensor, x: Inputs) -> Tensor:
        """Outputs ``[S, B, C]`` of the draws of ``draw_predictive`` on the batch ``x``.

        Args:
            draws: Draws from ``draw_predictive``.
            x: Inputs ``[B, ...]``.

        Returns:
            The outputs ``[S, B, C]``; gradients flow to ``x``.
        """
        x = self.check_input(x)
        was_training = self.net.training
        self.net.eval()
        try:
            return torch.stack([call_with(self.net, self._tensors(d), x) for d in draws])
        finally:
            self.net.train(was_training)

    def predict_logits(self, x: Inputs, num_samples: int = 100) -> Tensor:
        """Outputs ``[S, B, C]`` under S fresh posterior draws.

        Args:
            x: Inputs ``[B, ...]``, as for ``loss``.
            num_samples: S, an int ``>= 1``.

        Returns:
            The outputs ``[S, B, C]``; gradients flow to ``x``.

        Raises:
            ValueError: ``num_samples`` is not an int ``>= 1`` or ``x`` fails the input checks.
        """
        check_num_samples(num_samples)
        x = self.check_input(x)
        return self.predict_logits_with(self.draw_predictive(num_samples), x)

    def _num_weights(self) -> int:
        return sum(p.numel() for p in self.net.parameters() if p.requires_grad)

    def _tensors(self, draw: Tensor) -> dict[str, Tensor]:
        """A draw as the parameters (and batch-norm statistics) for ``call_with``."""
        n = self._num_weights()
        tensors = unflatten(self.net, draw[:n])
        if draw.numel() > n:
            offset = n
            for name, module in self.net.named_modules():
                if module in batch_norms(self.net):
                    for buf in ("running_mean", "running_var"):
                        ref = getattr(module, buf)
                        key = f"{name}.{buf}" if name else buf
                        tensors[key] = draw[offset : offset + ref.numel()].view_as(ref)
                        offset += ref.numel()
        return tensors

    def _bn_statistics(
        self, weights: Tensor, norms: list[nn.modules.batchnorm._BatchNorm]
    ) -> Tensor:
        """The running means and variances of ``norms`` recomputed under ``weights`` on
        ``bn_inputs`` (a cumulative average over its batches); the net's own are restored."""
        assert self.bn_inputs is not None
        saved = [
            (m, m.running_mean.clone(), m.running_var.clone(), m.momentum)  # type: ignore[union-attr]
            for m in norms
        ]
        params = unflatten(self.net, weights)
        was_training = self.net.training
        try:
            for m in norms:
                m.reset_running_stats()
                m.momentum = None  # a cumulative average
            self.net.train()
            n = rows(self.bn_inputs)
            for start in range(0, n, self.bn_batch_size):
                xb = index(self.bn_inputs, slice(start, min(start + self.bn_batch_size, n)))
                call_with(self.net, params, xb)
            stats = torch.cat(
                [torch.cat([m.running_mean, m.running_var]) for m in norms]  # type: ignore[list-item]
            )
        finally:
            for m, mean, var, momentum in saved:
                m.running_mean.copy_(mean)  # type: ignore[union-attr,operator]
                m.running_var.copy_(var)  # type: ignore[union-attr,operator]
                m.momentum = momentum
            self.net.train(was_training)
        return stats
