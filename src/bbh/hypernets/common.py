"""Pieces shared by the generators: noise modes and the paper's MLP block."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from enum import Enum

from torch import nn

from bbh.options import parse_enum


class NoiseMode(str, Enum):
    """How noise is shared between the generators (PAPER.md section 2.1)."""

    ALIGNED = "aligned"  # one z [S, k] shared by every generator (the paper's default)
    INDEPENDENT = "independent"  # one z [S, k] per generator (per tensor, or per chunk)


def parse_noise_mode(noise: NoiseMode | str) -> NoiseMode:
    return parse_enum(NoiseMode, noise, "noise mode")


def check_generator_args(noise_dim: int, hidden: Sequence[int]) -> tuple[int, ...]:
    if not isinstance(noise_dim, int) or noise_dim < 1:
        raise ValueError(f"noise_dim must be an int >= 1, got {noise_dim!r}")
    hidden = tuple(hidden)
    if not hidden or any(not isinstance(h, int) or h < 1 for h in hidden):
        raise ValueError(f"hidden must be a non-empty sequence of positive ints, got {hidden!r}")
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
