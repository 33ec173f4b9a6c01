"""A learned log-scale per parameter tensor on top of per-weight log-scales.

``ImplicitPosterior`` (BbH's sigma) and ``MeanFieldGaussian`` (Bayes by Backprop's variance)
both write a weight's scale as its own times its tensor's: the same family, whose tensor-level
scale Adam moves at the whole tensor's signal-to-noise ratio (docs/methods.md, "Where sigma
goes").
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor


def checked_tensor_sizes(sizes: Sequence[int], dim: int) -> tuple[int, ...]:
    """``sizes`` as a tuple, after checking they are >= 1 and cover the ``dim`` weights."""
    out = tuple(int(n) for n in sizes)
    if not out or min(out) < 1 or sum(out) != dim:
        raise ValueError(
            f"tensor_sizes must be sizes >= 1 summing to D = {dim}; got {len(out)} sizes "
            f"summing to {sum(out)}"
        )
    return out


def add_per_tensor(values: Tensor, shifts: Tensor, sizes: tuple[int, ...]) -> Tensor:
    """``values [D]`` with ``shifts[t]`` added to the t-th run of ``sizes`` entries."""
    return torch.cat(
        [part + shift for part, shift in zip(values.split(sizes), shifts, strict=True)]
    )
