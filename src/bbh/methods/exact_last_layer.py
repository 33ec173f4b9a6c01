"""BbH's exact output layer (``last_layer="exact"``): for regression, the net's last ``nn.Linear``
is integrated out, its conjugate Gaussian posterior given the generated weights
(``bbh.posteriors.last_layer``), and the hypernet generates only the other weights.

``ExactReadout`` holds where the layer is and does its part of each step: the layer's inputs
under weight samples, the collapsed likelihood, and the layer's draws for predictions.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from bbh.enums import NLLMode
from bbh.functional import ForwardMode, ParamPredicate, ParamSpec, sampled_forward
from bbh.inputs import Inputs
from bbh.methods.bbh_options import AUTO
from bbh.options import parse_enum
from bbh.posteriors.last_layer import log_marginal, sample_readout


def output_layer(net: nn.Module) -> tuple[str, nn.Linear]:
    """The last ``nn.Linear`` registered in ``net``: its name and the layer.

    Args:
        net: The primary net.

    Returns:
        ``(name, layer)``.

    Raises:
        ValueError: ``net`` has no ``nn.Linear``.
    """
    linears = [(name, m) for name, m in net.named_modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise ValueError(
            f"last_layer='exact' needs an nn.Linear output layer; {type(net).__name__} has none"
        )
    return linears[-1]


@dataclass
class ExactReadout:
    """The output layer that ``last_layer="exact"`` integrates: where it is and its sizes."""

    name: str  # the module's name in the net
    weight: str  # its parameters' names
    bias: str | None
    in_features: int
    out_features: int
    noise_scale: float  # the Gaussian likelihood's
    #: whether the net's output was checked to be the layer's (once, at the first step)
    checked: bool = False

    @classmethod
    def of(
        cls,
        net: nn.Module,
        likelihood: str,
        noise_scale: float | None,
        nll: NLLMode | str,
        include: ParamPredicate | None,
    ) -> ExactReadout:
        """The output layer of ``net``, after checking that it can be integrated.

        Args:
            net: The primary net.
            likelihood: The method's likelihood (must be ``gaussian``).
            noise_scale: The Gaussian likelihood's noise (required).
            nll: The method's ``nll`` option (``"auto"`` or ``mean`` only).
            include: The predicate of generated parameters (must keep the layer's).

        Returns:
            The readout.

        Raises:
            ValueError: The likelihood, ``nll``, the net or the layer's parameters do not allow
                it.
        """
        if likelihood != "gaussian" or noise_scale is None:
            raise ValueError(
                "last_layer='exact' needs likelihood='gaussian' with a noise_scale (the output "
                f"layer's posterior is conjugate only there); got likelihood={likelihood!r}"
            )
        if nll != AUTO and parse_enum(NLLMode, nll, "nll") is not NLLMode.MEAN:
            raise ValueError(
                "nll does not apply with last_layer='exact' (the collapsed likelihood sees every "
                f"example with every sample); got nll={nll!r}"
            )
        name, layer = output_layer(net)
        if not name:
            raise ValueError(
                "last_layer='exact' on a bare nn.Linear leaves nothing for the hypernet: that is "
                "Bayesian linear regression, whose posterior is exact without one"
            )
        for pname, param in layer.named_parameters():
            kept = include is None or include(f"{name}.{pname}", param)
            if not param.requires_grad or not kept:
                raise ValueError(
                    f"last_layer='exact': the output layer {name!r}'s {pname} must be a "
                    "trainable parameter that include and deterministic keep (it is integrated, "
                    "not point-estimated)"
                )
        bias = f"{name}.bias" if layer.bias is not None else None
        return cls(
            name, f"{name}.weight", bias, layer.in_features, layer.out_features, float(noise_scale)
        )

    @property
    def features(self) -> int:
        """F: the layer's inputs, plus one for the bias."""
        return self.in_features + (self.bias is not None)

    def without(self, net: nn.Module, spec: ParamSpec) -> ParamSpec:
        """``spec`` (every generated parameter) less the output layer's: what the hypernet makes.

        Args:
            net: The primary net.
            spec: Its generated parameters, the layer's included.

        Returns:
            The layout without the layer.
        """
        prefix, generated = f"{self.name}.", set(spec.names)
        return ParamSpec.from_module(
            net, lambda name, _: name in generated and not name.startswith(prefix)
        )

    def inputs(
        self, net: nn.Module, params: Mapping[str, Tensor], x: Inputs, mode: ForwardMode
    ) -> Tensor:
        """The layer's inputs ``[S, B, F]`` under weight samples, with a column of ones for the
        bias.

        Args:
            net: The net copy the method runs.
            params: Batched generated tensors ``[S, ...]`` by name.
            x: Inputs ``[B, ...]``.
            mode: How the samples run (``sampled_forward``).

        Returns:
            Features ``[S, B, F]``.

        Raises:
            ValueError: The net does not end with the layer.
        """
        parent_name, _, child = self.name.rpartition(".")
        parent = net.get_submodule(parent_name)
        layer = getattr(parent, child)
        setattr(parent, child, nn.Identity())  # the net now returns the layer's input
        try:
            phi = sampled_forward(net, params, x, mode=mode)
        finally:
            setattr(parent, child, layer)
        if phi.dim() != 3 or phi.shape[-1] != self.in_features:
            raise ValueError(
                f"last_layer='exact': the net must end with its output layer {self.name!r} on "
                f"[B, {self.in_features}] features; without it the net returned "
                f"{list(phi.shape[1:])}"
            )
        if self.bias is not None:
            phi = torch.cat([phi, torch.ones_like(phi[..., :1])], dim=-1)
        return phi

    def collapsed_nll(
        self,
        phi_of: Callable[[Tensor], Tensor],
        x: Inputs,
        y: Tensor,
        num_data: int,
        prior_scale: float,
    ) -> Tensor:
        """Minus the log-likelihood per example with the layer integrated (full batch).

        Args:
            phi_of: The layer's inputs ``[S, B, F]`` for a batch of inputs.
            x: Every training input, one tensor.
            y: Their targets.
            num_data: N (must be the batch's size).
            prior_scale: The layer's prior scale.

        Returns:
            The mean over the samples of ``-log p(y | theta_s) / N``, a scalar.

        Raises:
            TypeError: ``x`` is not one tensor.
            ValueError: The batch is not the whole data, or the targets do not fit the layer.
        """
        if not isinstance(x, Tensor):
            raise TypeError(
                "last_layer='exact' keeps the training inputs in a buffer and takes x as one "
                f"tensor, got a {type(x).__name__} of tensors; use last_layer='sampled'"
            )
        if x.shape[0] != num_data:
            raise ValueError(
                "last_layer='exact' trains full batch (the output layer is integrated over "
                f"every example): got a batch of {x.shape[0]} of num_data={num_data}"
            )
        phi = phi_of(x)
        targets = y.reshape(x.shape[0], -1)
        if targets.shape[1] != self.out_features:
            raise ValueError(
                f"targets {list(y.shape)} do not match the output layer's {self.out_features} "
                "outputs"
            )
        log_lik = log_marginal(phi, targets, self.noise_scale, prior_scale)  # [S]
        return -(log_lik.mean() / num_data)

    def draw(
        self, params: dict[str, Tensor], phi: Tensor, y: Tensor, prior_scale: float
    ) -> dict[str, Tensor]:
        """``params`` with the layer's weights drawn from its posterior given ``phi`` and ``y``
        (its prior where they are empty).

        Args:
            params: The generated tensors ``[S, ...]`` by name.
            phi: The layer's inputs on the conditioning data ``[S, N, F]``.
            y: The conditioning targets ``[N, O]``.
            prior_scale: The layer's prior scale.

        Returns:
            ``params`` and the layer's weight (and bias) ``[S, ...]``.
        """
        v = sample_readout(phi, y, self.noise_scale, prior_scale).to(phi.dtype)  # [S, F, O]
        params[self.weight] = v[:, : self.in_features].transpose(1, 2)  # [S, O, in]
        if self.bias is not None:
            params[self.bias] = v[:, self.in_features]
        return params

    def own_values(self, net: nn.Module, params: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """``params`` (one sample, ``[1, ...]`` each) and the layer's own values as one sample.

        Args:
            net: The net copy, whose layer holds its initial values.
            params: The generated tensors of one sample.

        Returns:
            Every tensor of a predictive sample.
        """
        layer = net.get_submodule(self.name)
        own = {k: v.unsqueeze(0) for k, v in layer.named_parameters(prefix=self.name)}
        return {**params, **own}

    def check_output(self, direct: Tensor, layer: nn.Module, phi: Tensor) -> None:
        """The net's output ``direct [B, O]`` must be the layer's on its inputs ``phi``.

        Args:
            direct: The net's output for one weight sample.
            layer: The layer, with its own (initial) weights.
            phi: Its inputs ``[B, F]`` under the same sample.

        Raises:
            ValueError: Something runs after the layer.
        """
        via = layer(phi[:, : self.in_features])
        if direct.shape != via.shape or not torch.allclose(direct, via, atol=1e-5, rtol=1e-4):
            raise ValueError(
                "last_layer='exact': the net's output must be its last nn.Linear's output "
                f"({self.name!r}); something runs after it"
            )
        self.checked = True
