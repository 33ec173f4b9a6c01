"""MAP estimation: a point estimate under a Gaussian prior, i.e. weight decay.

``loss = mean NLL + kl_weight * R(w) / num_data`` with the regulariser ``R`` chosen by
``weight_decay``:

- ``gaussian`` (default): the negative log of the prior ``N(0, s^2 I)`` over every trainable
  parameter, up to a constant: ``R = sum ||w||^2 / (2 s^2)``. This is the proper MAP estimate.
- ``paper``: the paper's code (pawni/BayesByHypernet, ``networks.get_vanilla_*``,
  ``l2_regularizer(1/prior_scale)``): ``R = sum_kernels ||w||^2 / (2 s)``; only kernels
  (parameters with two or more dimensions: linear and conv weights) are regularised, not biases
  or normalisation parameters, and the scale enters as ``1/s`` instead of ``1/s^2`` (the same
  for the paper's ``s = 1``).
- ``none``: maximum likelihood.
"""

from __future__ import annotations

import copy

from torch import Tensor, nn

from bbh.enums import WeightDecay
from bbh.inputs import Inputs, call
from bbh.likelihoods import Likelihood, make_likelihood
from bbh.methods.base import Method, check_num_samples
from bbh.options import parse_enum
from bbh.priors import GaussianPrior
from bbh.validation import checked_args, positive


def parse_weight_decay(value: WeightDecay | str) -> WeightDecay:
    """``value`` as a ``WeightDecay``.

    Args:
        value: A ``WeightDecay`` or its value.

    Returns:
        The ``WeightDecay``.

    Raises:
        ValueError: ``value`` is not a weight decay.
    """
    return parse_enum(WeightDecay, value, "weight_decay")


def l2_penalty(net: nn.Module, weight_decay: WeightDecay, prior_scale: float) -> Tensor | float:
    """The regulariser ``R(w)`` of the module docstring (a scalar tensor, or 0.0 for ``none``)."""
    if weight_decay is WeightDecay.NONE:
        return 0.0
    params = [p for p in net.parameters() if p.requires_grad]
    if weight_decay is WeightDecay.PAPER:
        kernels = [p for p in params if p.dim() >= 2]
        return sum(p.pow(2).sum() for p in kernels) / (2 * prior_scale)  # type: ignore[return-value]
    return sum(p.pow(2).sum() for p in params) / (2 * prior_scale**2)  # type: ignore[return-value]


class PenalisedNLL(Method):
    """One deterministic pass with a weight penalty: ``mean NLL + kl_weight * penalty / N``.

    Shared by MAP and MC dropout; subclasses set ``net``, ``likelihood``, ``weight_decay`` and
    ``prior_scale``.
    """

    net: nn.Module
    likelihood: Likelihood
    weight_decay: WeightDecay
    prior_scale: float

    def loss(  # noqa: D102 (Method.loss's docstring is inherited)
        self, x: Inputs, y: Tensor, *, num_data: int, kl_weight: float | Tensor = 1.0
    ) -> tuple[Tensor, dict[str, Tensor]]:
        x, y = self.check_batch(x, y, num_data=num_data, kl_weight=kl_weight)
        nll = -self.likelihood.log_prob(call(self.net, x), y).mean()
        reg = l2_penalty(self.net, self.weight_decay, self.prior_scale)
        loss = nll + kl_weight * reg / num_data
        logs = {"nll": nll.detach(), "loss": loss.detach()}
        if isinstance(reg, Tensor):
            logs["kl"] = reg.detach()
        return loss, logs


class MAP(PenalisedNLL):
    """Point estimate of ``net``'s parameters (a copy; the user's net is not changed).

    Args:
        net: any ``nn.Module``.
        prior_scale: s of the Gaussian prior.
        weight_decay: ``gaussian``, ``paper`` or ``none`` (see the module docstring).
        likelihood: ``categorical`` or ``gaussian`` (with ``noise_scale``).
        noise_scale: the Gaussian likelihood's observation noise (its standard deviation),
            required with ``likelihood="gaussian"`` and refused with ``categorical``.
    """

    stochastic = False

    @checked_args(prior_scale=positive())
    def __init__(
        self,
        net: nn.Module,
        *,
        prior_scale: float = 1.0,
        weight_decay: WeightDecay | str = WeightDecay.GAUSSIAN,
        likelihood: str = "categorical",
        noise_scale: float | None = None,
    ):
        super().__init__()
        self.prior_scale = GaussianPrior(prior_scale).scale
        self.weight_decay = parse_weight_decay(weight_decay)
        self.likelihood = make_likelihood(likelihood, noise_scale)
        self.net = copy.deepcopy(net)

    def predict_logits(self, x: Inputs, num_samples: int = 1) -> Tensor:
        """The deterministic outputs, ``[num_samples, B, C]`` (a broadcast view, one pass).

        Args:
            x: Inputs ``[B, ...]``, as for ``loss``.
            num_samples: S, an int ``>= 1``: how many times the one output is repeated.

        Returns:
            Outputs ``[S, B, C]``.

        Raises:
            ValueError: ``num_samples`` is not an int ``>= 1`` or ``x`` fails the input checks.
        """
        check_num_samples(num_samples)
        x = self.check_input(x)
        out = call(self.net, x)
        return out.unsqueeze(0).expand(num_samples, *out.shape)
