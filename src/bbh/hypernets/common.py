"""Pieces shared by the generators: noise modes and the paper's MLP block."""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence

import torch
from torch import Tensor, nn

from bbh.enums import NoiseMode
from bbh.options import parse_enum


def parse_noise_mode(noise: NoiseMode | str) -> NoiseMode:
    """``noise`` as a ``NoiseMode``.

    Args:
        noise: A ``NoiseMode`` or its value.

    Returns:
        The ``NoiseMode``.

    Raises:
        ValueError: ``noise`` is not a noise mode.
    """
    return parse_enum(NoiseMode, noise, "noise mode")


def check_generator_args(noise_dim: int, hidden: Sequence[int]) -> tuple[int, ...]:
    """Check a generator's noise size and hidden widths.

    Args:
        noise_dim: The noise dimension, an int ``>= 1``.
        hidden: The hidden widths, positive ints (empty: an affine generator).

    Returns:
        ``hidden`` as a tuple.

    Raises:
        ValueError: ``noise_dim`` or a width is not a positive int.
    """
    if not isinstance(noise_dim, int) or noise_dim < 1:
        raise ValueError(f"noise_dim must be an int >= 1, got {noise_dim!r}")
    hidden = tuple(hidden)
    if any(not isinstance(h, int) or h < 1 for h in hidden):
        raise ValueError(
            "hidden must be a sequence of positive ints (empty: an affine generator), "
            f"got {hidden!r}"
        )
    return hidden


def mlp(in_features: int, hidden: Sequence[int], out_features: int, slope: float) -> nn.Sequential:
    """``Linear -> LeakyReLU(slope)`` per hidden size, then a linear output layer.

    Weights Xavier-uniform and biases zero, as TF1's defaults in the paper's code.
    """
    layers: list[nn.Module] = []
    sizes = [in_features, *hidden]
    for a, b in itertools.pairwise(sizes):
        layers += [nn.Linear(a, b), nn.LeakyReLU(slope)]
    layers.append(nn.Linear(sizes[-1], out_features))
    for m in layers:
        if isinstance(m, nn.Linear):
            nn.init.xavier_uniform_(m.weight)
            nn.init.zeros_(m.bias)
    return nn.Sequential(*layers)


def mlp_with_tangents(layers: Iterable[nn.Module], x: Tensor, dx: Tensor) -> tuple[Tensor, Tensor]:
    """Run ``layers`` (``Linear`` / ``LeakyReLU`` only) on ``x [..., in]`` and push tangents along.

    ``dx [T, ..., in]`` holds T tangent directions of the input; returns the output ``[..., out]``
    and its directional derivatives ``[T, ..., out]`` (forward-mode differentiation written out,
    so both stay ordinary autograd tensors: a loss on the tangents back-propagates to the weights).
    """
    for layer in layers:
        if isinstance(layer, nn.Linear):
            x = layer(x)
            dx = dx @ layer.weight.t()
        elif isinstance(layer, nn.LeakyReLU):
            slope = torch.where(x > 0, 1.0, layer.negative_slope).to(x.dtype)
            x = layer(x)
            dx = dx * slope
        else:
            raise TypeError(f"mlp_with_tangents supports Linear and LeakyReLU, got {layer}")
    return x, dx
