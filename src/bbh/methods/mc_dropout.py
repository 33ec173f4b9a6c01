"""MC dropout (Gal and Ghahramani 2016): dropout kept on at prediction, averaged over masks.

Dropout is active in training and prediction, while every other layer follows ``train()``/
``eval()`` (e.g. BatchNorm uses running statistics in eval mode). The objective is the MAP one
(``bbh.methods.map``) with dropout noise: ``mean NLL + kl_weight * R(w) / num_data``. Gal's
derivation scales the L2 term of weights fed by dropout by the keep probability; that factor is
not applied here (``weight_decay`` as in MAP, the paper's code uses ``paper``).

Where the dropout goes:

- dropout modules of the net (``nn.Dropout``, ``Dropout1d/2d/3d``) are kept on, with their ``p``
  set to ``p``;
- ``insert_after=[names]`` adds dropout on the outputs of the named modules (a forward hook on the
  internal copy; parameter names are unchanged);
- with neither (``insert_after=None`` and no dropout modules), dropout goes after every activation
  module (ReLU, LeakyReLU, ELU, GELU, SiLU, Tanh). For ``bbh.nets.LeNet5`` that is the paper's
  placement: after the ReLUs of conv1, conv2 and fc1.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from bbh.inputs import Inputs, call
from bbh.likelihoods import make_likelihood
from bbh.methods.base import check_num_samples
from bbh.methods.map import PenalisedNLL, WeightDecay, parse_weight_decay
from bbh.priors import GaussianPrior
from bbh.validation import checked_args, in_range, positive

ACTIVATIONS: tuple[type[nn.Module], ...] = (
    nn.ReLU,
    nn.LeakyReLU,
    nn.ELU,
    nn.GELU,
    nn.SiLU,
    nn.Tanh,
)


class MCDropout(PenalisedNLL):
    """MC dropout around a copy of ``net``.

    Args:
        net: any ``nn.Module``.
        p: dropout probability in [0, 1) (the paper: 0.5).
        insert_after: names of modules whose outputs get dropout (see the module docstring).
        prior_scale: s of the Gaussian prior of the L2 term, as in ``MAP``.
        weight_decay: the L2 term's form, as in ``MAP`` (the paper: ``paper``).
        likelihood: ``categorical`` or ``gaussian`` (with ``noise_scale``).
        noise_scale: the Gaussian likelihood's observation noise (its standard deviation),
            required with ``likelihood="gaussian"`` and refused with ``categorical``.
    """

    @checked_args(p=in_range(0, 1, high_open=True), prior_scale=positive())
    def __init__(
        self,
        net: nn.Module,
        *,
        p: float = 0.5,
        insert_after: Sequence[str] | None = None,
        prior_scale: float = 1.0,
        weight_decay: WeightDecay | str = WeightDecay.GAUSSIAN,
        likelihood: str = "categorical",
        noise_scale: float | None = None,
    ):
        super().__init__()
        if not isinstance(p, (int, float)) or isinstance(p, bool) or not 0 <= p < 1:
            raise ValueError(f"dropout probability p must be in [0, 1), got {p!r}")
        self.p = float(p)
        self.prior_scale = GaussianPrior(prior_scale).scale
        self.weight_decay = parse_weight_decay(weight_decay)
        self.likelihood = make_likelihood(likelihood, noise_scale)
        self.net = copy.deepcopy(net)
        modules = dict(self.net.named_modules())
        existing = [n for n, m in modules.items() if type(m) in _ALWAYS_ON]
        for name in existing:
            module = modules[name]
            module.__class__ = _ALWAYS_ON[type(module)]
            module.p = self.p  # type: ignore[assignment]
        if insert_after is None:
            targets = [] if existing else [n for n, m in modules.items() if type(m) in ACTIVATIONS]
            if not existing and not targets:
                raise ValueError(
                    f"{type(net).__name__} has no dropout or activation modules (functional "
                    f"activations are invisible); pass insert_after=[module names], from "
                    f"{sorted(n for n in modules if n)}"
                )
        else:
            targets = [insert_after] if isinstance(insert_after, str) else list(insert_after)
            unknown = [n for n in targets if n not in modules or n == ""]
            if unknown:
                raise ValueError(
                    f"insert_after: no module(s) named {unknown}; available: "
                    f"{sorted(n for n in modules if n)}"
                )
            if not targets and not existing:
                raise ValueError("insert_after is empty and the net has no dropout modules")
        self.dropout_sites: tuple[str, ...] = tuple(existing) + tuple(targets)
        for name in targets:
            modules[name].register_forward_hook(_DropoutHook(self.p))

    def predict_logits(self, x: Inputs, num_samples: int = 100) -> Tensor:
        """Outputs ``[S, B, C]`` for S independent dropout masks (one pass each).

        Args:
            x: Inputs ``[B, ...]``, as for ``loss``.
            num_samples: S, an int ``>= 1``.

        Returns:
            Outputs ``[S, B, C]``.

        Raises:
            ValueError: ``num_samples`` is not an int ``>= 1`` or ``x`` fails the input checks.
        """
        check_num_samples(num_samples)
        x = self.check_input(x)
        return torch.stack([call(self.net, x) for _ in range(num_samples)])


def always_dropout(x: Tensor, p: float, inplace: bool = False) -> Tensor:
    """``F.dropout(x, p, training=True)`` in distribution (each element kept with probability
    ``1 - p``, to float32's 2^-24, and scaled by ``1 / (1 - p)``), faster on the CPU: the mask
    comes from ``torch.rand``, not ``F.dropout``'s ``bernoulli_`` (LeNet-5's first activation at
    batch 100, 1.15M numbers, one thread, quiet: 16 ms -> 6 ms, forward and backward alike).
    Other devices use ``F.dropout`` (fused there)."""
    if x.device.type != "cpu" or p == 0:
        return F.dropout(x, p, training=True, inplace=inplace)
    keep = torch.rand_like(x).ge_(p).mul_(1.0 / (1.0 - p))
    return x.mul_(keep) if inplace else x * keep


class _DropoutHook:
    """Forward hook: dropout on a module's output, always on (picklable, deep-copyable)."""

    def __init__(self, p: float):
        self.p = p

    def __call__(self, module: nn.Module, inputs: object, output: Tensor) -> Tensor:
        return always_dropout(output, self.p)


class _AlwaysDropout(nn.Dropout):
    def forward(self, x: Tensor) -> Tensor:
        return always_dropout(x, self.p, inplace=self.inplace)


class _AlwaysDropout1d(nn.Dropout1d):
    def forward(self, x: Tensor) -> Tensor:
        return F.dropout1d(x, self.p, training=True, inplace=self.inplace)


class _AlwaysDropout2d(nn.Dropout2d):
    def forward(self, x: Tensor) -> Tensor:
        return F.dropout2d(x, self.p, training=True, inplace=self.inplace)


class _AlwaysDropout3d(nn.Dropout3d):
    def forward(self, x: Tensor) -> Tensor:
        return F.dropout3d(x, self.p, training=True, inplace=self.inplace)


_ALWAYS_ON: dict[type[nn.Module], type[nn.Module]] = {
    nn.Dropout: _AlwaysDropout,
    nn.Dropout1d: _AlwaysDropout1d,
    nn.Dropout2d: _AlwaysDropout2d,
    nn.Dropout3d: _AlwaysDropout3d,
}
