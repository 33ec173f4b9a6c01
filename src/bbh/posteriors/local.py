"""Per-example weight noise for linear and conv layers under a mean-field Gaussian.

- Local reparameterisation (Kingma, Salimans and Welling 2015): sample the pre-activations,
  ``N(x W_mu^T + b_mu, x^2 sigma_W^2 + sigma_b^2)``, with independent noise per example and unit.
- Flipout (Wen et al. 2018): one shared perturbation ``dW = sigma_W * E``, decorrelated between
  examples by random signs: ``x W_mu^T + ((x * s_in) dW^T) * s_out``.

The internal copy of the net has its ``nn.Linear``/``nn.Conv2d`` layers switched to the subclasses
below (same parameter names, so ``state_dict`` keys do not change). Their ``weight``/``bias`` are
the posterior means and ``weight_log_var``/``bias_log_var`` (non-persistent buffers) the
log-variances; both are supplied per call through ``torch.func.functional_call``.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call

from bbh.enums import WeightNoise
from bbh.inputs import Inputs, call_args
from bbh.posteriors.layers import select_layers


class _LocalMixin:
    estimator: str
    _channel_axis: int
    weight: Tensor
    bias: Tensor | None
    weight_log_var: Tensor
    bias_log_var: Tensor

    def _init_local(self, estimator: WeightNoise) -> None:
        self.estimator = estimator.value
        w = self.weight
        self.register_buffer("weight_log_var", torch.zeros_like(w), persistent=False)  # type: ignore[attr-defined]
        if self.bias is not None:
            self.register_buffer(  # type: ignore[attr-defined]
                "bias_log_var", torch.zeros_like(self.bias), persistent=False
            )

    def _noisy(self, x: Tensor, op: Callable[..., Tensor]) -> Tensor:
        """``op(x, weight, bias)`` is the layer's linear map; returns sampled outputs."""
        mean = op(x, self.weight, self.bias)
        if self.estimator == WeightNoise.SAMPLE.value:  # inside ``plain_weights``
            return mean
        w_var = self.weight_log_var.exp()
        axis = self._channel_axis
        if self.estimator == WeightNoise.LOCAL.value:
            var = op(x.pow(2), w_var, None)
            if self.bias is not None:
                var = var + _per_channel(self.bias_log_var.exp(), var, axis)
            return mean + var.clamp_min(1e-16).sqrt() * torch.randn_like(mean)
        # flipout: one shared weight perturbation, random signs per example
        delta_w = w_var.sqrt() * torch.randn_like(w_var)
        delta = op(x * _signs(x, axis), delta_w, None)
        if self.bias is not None:
            sd_b = (0.5 * self.bias_log_var).exp()
            delta = delta + _per_channel(sd_b * torch.randn_like(sd_b), delta, axis)
        return mean + delta * _signs(mean, axis)


class LocalLinear(_LocalMixin, nn.Linear):  # type: ignore[misc]
    """``nn.Linear`` with per-example Gaussian weight noise (see the module docstring)."""

    _channel_axis = -1

    def forward(self, x: Tensor) -> Tensor:
        """``nn.Linear`` with per-example weight noise.

        Args:
            x: Inputs ``[B, ..., in_features]``.

        Returns:
            Outputs ``[B, ..., out_features]``.
        """
        return self._noisy(x, F.linear)


class LocalConv2d(_LocalMixin, nn.Conv2d):
    """``nn.Conv2d`` with per-example Gaussian weight noise (see the module docstring)."""

    _channel_axis = 1

    def forward(self, x: Tensor) -> Tensor:
        """``nn.Conv2d`` with per-example weight noise.

        Args:
            x: Images ``[B, C_in, H, W]``.

        Returns:
            Feature maps ``[B, C_out, H', W']``.
        """
        return self._noisy(x, self._conv_forward)


def make_local(module: nn.Module, estimator: WeightNoise) -> None:
    """Switch an ``nn.Linear``/``nn.Conv2d`` (exact type) in place to its local-noise version."""
    kinds = {nn.Linear: LocalLinear, nn.Conv2d: LocalConv2d}
    if type(module) not in kinds:
        raise TypeError(f"no local-noise version of {type(module).__name__}")
    module.__class__ = kinds[type(module)]
    cast(_LocalMixin, module)._init_local(estimator)


@contextmanager
def plain_weights(net: nn.Module) -> Iterator[None]:
    """Run the local-noise layers of ``net`` as plain layers while inside (weights per call)."""
    layers = [m for m in net.modules() if isinstance(m, _LocalMixin)]
    saved = [m.estimator for m in layers]
    try:
        for m in layers:
            m.estimator = WeightNoise.SAMPLE.value
        yield
    finally:
        for m, estimator in zip(layers, saved, strict=True):
            m.estimator = estimator


def _per_channel(v: Tensor, out: Tensor, axis: int) -> Tensor:
    """A per-channel vector ``[C]`` shaped to broadcast over ``out`` along ``axis``."""
    if axis == -1 or out.dim() == 2:
        return v
    return v.reshape(1, -1, *([1] * (out.dim() - 2)))


def _signs(like: Tensor, axis: int) -> Tensor:
    """Random +-1 per example and channel (``axis``), shared over every other dimension.

    For an input ``[B, ..., C]`` with ``axis=-1`` the signs are per example and feature and
    broadcast over the middle dims; for ``[B, C, H, W]`` with ``axis=1`` over H and W.
    """
    shape = [1] * like.dim()
    shape[0] = like.shape[0]
    shape[axis] = like.shape[axis]
    return torch.randint(0, 2, shape, device=like.device, dtype=like.dtype) * 2 - 1


def _zeros_like_shape(t: Tensor) -> Tensor:
    """A tensor of ``t``'s shape on one shared zero (no memory of its size)."""
    return torch.zeros((), dtype=t.dtype, device=t.device).expand(t.shape)


def local_noise_copy(
    user_net: nn.Module,
    net: nn.Module,
    generated: Sequence[str],
    estimator: WeightNoise,
    init_sigma: float | None,
    exact_last_layer: bool,
) -> nn.Module:
    """A copy of ``net`` whose layers that own the ``generated`` tensors are local-noise layers
    holding no tensors of their own: every weight, bias and variance is supplied per call
    (``local_noise_forward``).

    Args:
        user_net: The user's net, where the layers are checked (``select_layers``).
        net: The net to copy (BbH's copy, its generated tensors released).
        generated: The generated tensors' names.
        estimator: ``local`` or ``flipout``.
        init_sigma: BbH's ``init_sigma`` (needed: a semi-implicit q).
        exact_last_layer: Whether BbH integrates its output layer (then refused).

    Returns:
        The copy.

    Raises:
        ValueError: No ``init_sigma``, an exact last layer, a generated tensor not in an
            ``nn.Linear`` or ``nn.Conv2d``, or a layer with only some of its tensors generated.
    """
    option = f"sigma_noise={estimator.value!r}"
    if init_sigma is None:
        raise ValueError(
            f"{option} needs init_sigma (a semi-implicit q with a sigma); with none, or with "
            "generator='kronecker' (no semi-implicit noise), keep the default"
        )
    if exact_last_layer:
        raise ValueError(
            f"{option} does not apply with last_layer='exact' (the output layer is "
            "integrated and the other weights' likelihood is collapsed over the batch)"
        )
    layers = [name for name, _ in select_layers(user_net, generated, method="bbh", option=option)]
    local = copy.deepcopy(net)
    for name in layers:
        layer = local.get_submodule(name)
        make_local(layer, estimator)
        # every generated tensor and variance is supplied per call: no D numbers held here
        for key, buffer in layer._buffers.items():
            if key.endswith("_log_var") and buffer is not None:
                layer._buffers[key] = _zeros_like_shape(buffer)
        for attr in ("weight", "bias"):
            t = getattr(layer, attr, None)
            if isinstance(t, Tensor) and not isinstance(t, nn.Parameter):
                setattr(layer, attr, _zeros_like_shape(t))
    return local


def local_noise_forward(
    local: nn.Module,
    shared: Mapping[str, Tensor],
    log_var: Mapping[str, Tensor],
    means: Mapping[str, Tensor],
    x: Inputs,
) -> Tensor:
    """Outputs ``[S, B, C]`` of ``local_noise_copy``'s net with per-example weight noise: sample
    s's layers have mean weights ``means[name][s]`` and log-variances ``log_var`` (Kingma et
    al. 2015), the S samples in a loop.

    Args:
        local: The copy.
        shared: Its other parameters and buffers by name.
        log_var: ``log sigma^2`` per generated tensor, by the tensor's name.
        means: The generated tensors ``[S, ...]`` by name.
        x: Inputs ``[B, ...]``.

    Returns:
        Outputs ``[S, B, C]``.
    """
    fixed = {**shared, **{k + "_log_var": v for k, v in log_var.items()}}
    args, kwargs = call_args(local, x)
    samples = next(iter(means.values())).shape[0]
    outs = [
        functional_call(local, {**fixed, **{k: v[i] for k, v in means.items()}}, args, kwargs)
        for i in range(samples)
    ]
    return torch.stack(outs)
