"""Multiplicative normalising flows (Louizos and Welling 2017) for Linear and Conv2d layers.

Every ``nn.Linear`` and ``nn.Conv2d`` whose parameters are not kept deterministic becomes an MNF
layer (``bbh.posteriors.mnf``): multiplicative noise per input unit (dense) or output channel
(conv), a masked RealNVP flow on the noise and the auxiliary reverse model. The loss is
``mean NLL + kl_weight * sum_layers KL_layer / num_data`` with the KL bound of **every** MNF layer,
conv layers included (the paper's code, pawni/BayesByHypernet, adds the conv terms of
``layers.MNFConvLayer`` to a collection the loss never reads; docs/methods.md, "MNF").

Any other layer with trainable parameters must be listed in ``deterministic`` (``"norm"`` for all
normalisation layers), else construction fails. The paper's settings: flows of 2 steps with 50
hidden units (q) and 100 (r), ``init_log_var=-9``, ``max_std=0.5`` (MNIST) or 0.3 (CIFAR), prior
variance ``e`` (``prior_scale=e**0.5``; the default here is 1 like the other methods), KL annealing.
The paper's code reads ``init_log_var`` as a log standard deviation; here it is a log-variance.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import cast

import torch
from torch import Tensor, nn

from bbh.functional import ParamSpec
from bbh.inputs import Inputs, call
from bbh.likelihoods import make_likelihood
from bbh.methods.base import Method, check_num_samples
from bbh.posteriors.layers import deterministic_predicate, select_layers
from bbh.posteriors.mnf import MNFConv2d, MNFLinear, make_mnf, shared_noise
from bbh.priors import GaussianPrior
from bbh.validation import at_least, checked_args, positive


class MNF(Method):
    """MNF posterior over the Linear/Conv2d layers of a copy of ``net``.

    Args:
        net: an ``nn.Module`` (copied; the user's net is not changed).
        prior_scale: s of the weight prior ``N(0, s^2)``.
        init_log_var: initial weight log-variance.
        init_log_var_std: the jitter of the initial weight log-variance.
        max_std: bound on the weight standard deviation (a soft clamp that passes gradients).
        flow_steps: steps of the flow of ``q(z)`` (the paper: 2).
        flow_hidden: hidden units of the flow of ``q(z)`` (the paper: 50).
        aux_flow_steps: steps of the flow of ``r(z | W)`` (the paper: 2).
        aux_flow_hidden: hidden units of the flow of ``r(z | W)`` (the paper: 100).
        q0_init_log_var: initial log-variance of ``q0(z)`` (the paper: log 0.1).
        deterministic: module names (or ``"norm"``) kept as point estimates.
        num_train_samples: stochastic forward passes per training step.
        likelihood: ``categorical`` or ``gaussian`` (with ``noise_scale``).
        noise_scale: the Gaussian likelihood's observation noise (its standard deviation),
            required with ``likelihood="gaussian"`` and refused with ``categorical``.
        predict_noise: ``weights`` (one z and W per pass, shared by the batch) or ``training``.
    """

    @checked_args(
        prior_scale=positive(),
        init_log_var_std=at_least(0),
        max_std=positive(),
        flow_steps=at_least(1),
        flow_hidden=at_least(1),
        aux_flow_steps=at_least(1),
        aux_flow_hidden=at_least(1),
    )
    def __init__(
        self,
        net: nn.Module,
        *,
        prior_scale: float = 1.0,
        init_log_var: float = -9.0,
        init_log_var_std: float = 0.05,
        max_std: float = 0.5,
        flow_steps: int = 2,
        flow_hidden: int = 50,
        aux_flow_steps: int = 2,
        aux_flow_hidden: int = 100,
        q0_init_log_var: float = -2.302585092994046,
        deterministic: Sequence[str] = (),
        num_train_samples: int = 1,
        likelihood: str = "categorical",
        noise_scale: float | None = None,
        predict_noise: str = "weights",
    ):
        super().__init__()
        check_num_samples(num_train_samples, name="num_train_samples")
        if predict_noise not in ("weights", "training"):
            raise ValueError(
                f"unknown predict_noise {predict_noise!r}; allowed: ['training', 'weights']"
            )
        self.predict_noise = predict_noise
        if not max_std > 0:
            raise ValueError(f"max_std must be positive, got {max_std!r}")
        self.prior = GaussianPrior(prior_scale)
        self.likelihood = make_likelihood(likelihood, noise_scale)
        self.num_train_samples = num_train_samples
        self.net = copy.deepcopy(net)
        self.spec = ParamSpec.from_module(
            self.net, deterministic_predicate(self.net, deterministic)
        )
        layers = select_layers(
            self.net, self.spec.names, method="mnf", option="multiplicative noise"
        )
        options = {
            "prior_scale": self.prior.scale,
            "init_log_var": init_log_var,
            "init_log_var_std": init_log_var_std,
            "max_std": max_std,
            "flow_steps": flow_steps,
            "flow_hidden": flow_hidden,
            "aux_flow_steps": aux_flow_steps,
            "aux_flow_hidden": aux_flow_hidden,
            "q0_init_log_var": q0_init_log_var,
        }
        for _, layer in layers:
            make_mnf(layer, **options)
        self.layer_names: tuple[str, ...] = tuple(name for name, _ in layers)

    def mnf_layers(self) -> list[MNFLinear | MNFConv2d]:
        """The net's MNF layers, in ``layer_names`` order.

        Returns:
            The layers (``MNFLinear`` or ``MNFConv2d``).
        """
        return [cast(MNFLinear | MNFConv2d, self.net.get_submodule(n)) for n in self.layer_names]

    def kl(self) -> Tensor:
        """Sum over every MNF layer of its one-sample KL bound (scalar).

        Returns:
            A scalar tensor.
        """
        return torch.stack([layer.kl() for layer in self.mnf_layers()]).sum()

    def loss(  # noqa: D102 (Method.loss's docstring is inherited)
        self, x: Inputs, y: Tensor, *, num_data: int, kl_weight: float | Tensor = 1.0
    ) -> tuple[Tensor, dict[str, Tensor]]:
        x, y = self.check_batch(x, y, num_data=num_data, kl_weight=kl_weight)
        out = torch.stack([call(self.net, x) for _ in range(self.num_train_samples)])
        nll = -self.likelihood.log_prob(out, y).mean()
        kl = self.kl()
        loss = nll + kl_weight * kl / num_data
        return loss, {"nll": nll.detach(), "kl": kl.detach(), "loss": loss.detach()}

    def predict_logits(self, x: Inputs, num_samples: int = 100) -> Tensor:
        """Outputs ``[S, B, C]`` for S passes.

        With ``predict_noise="weights"`` (default) each pass draws one z and one W per layer for
        the whole batch (coherent function draws; the paper's toy); with ``"training"`` each
        example gets its own z and local noise, as in training.

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
        if self.predict_noise == "training":
            return torch.stack([call(self.net, x) for _ in range(num_samples)])
        with shared_noise(self.mnf_layers()):
            return torch.stack([call(self.net, x) for _ in range(num_samples)])

    @torch.no_grad()
    def sample_weights(self, num_samples: int) -> Tensor:
        """Samples ``[S, D]`` of the generated parameters (biases are point estimates).

        Args:
            num_samples: S, an int ``>= 1``.

        Returns:
            Weight samples ``[S, D]``.

        Raises:
            ValueError: ``num_samples`` is not an int ``>= 1``.
        """
        check_num_samples(num_samples)
        params: dict[str, Tensor] = {}
        for name, layer in zip(self.layer_names, self.mnf_layers(), strict=True):
            prefix = f"{name}." if name else ""
            params[prefix + "weight"] = layer.sample_weight(num_samples)
            if layer.bias is not None:
                bias = layer.bias.detach()
                params[prefix + "bias"] = bias.expand(num_samples, *bias.shape)
        return self.spec.flatten(params)
