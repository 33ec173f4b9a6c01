"""The paper's 1-D toy regression (pawni/BayesByHypernet, ``toy_data.ipynb``; after
Hernandez-Lobato and Adams 2015).

20 points ``x ~ U(-4, 4)``, ``y = x^3 + N(0, 9^2)``, drawn with ``numpy.random.RandomState(seed)``
(the paper's notebook: seed 1); the test grid is ``linspace(-6, 6, 500)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

TOY_NOISE_STD = 9.0


@dataclass(frozen=True)
class ToyData:
    """The 1-D toy regression data: ``x [N, 1]``, ``y [N, 1]``, the evaluation ``grid [G, 1]``
    and the observation noise's standard deviation ``noise_std``.
    """

    x: Tensor  # [N, 1]
    y: Tensor  # [N, 1]
    grid: Tensor  # [G, 1]
    noise_std: float

    @staticmethod
    def truth(x: Tensor) -> Tensor:
        """The noise-free target function ``f(x) = x^3``.

        Args:
            x: Inputs, any shape.

        Returns:
            ``x`` cubed, elementwise.
        """
        return x.pow(3)


def toy_regression(
    num_points: int = 20,
    seed: int = 1,
    *,
    low: float = -4.0,
    high: float = 4.0,
    noise_std: float = TOY_NOISE_STD,
    grid_points: int = 500,
    grid_range: tuple[float, float] = (-6.0, 6.0),
) -> ToyData:
    """The toy data set: ``x [N, 1]``, ``y [N, 1]`` (float32) and the test grid ``[G, 1]``."""
    if num_points < 1 or grid_points < 2:
        raise ValueError(
            f"need num_points >= 1 and grid_points >= 2, got {num_points}, {grid_points}"
        )
    rng = np.random.RandomState(seed)
    x = rng.uniform(low, high, size=(num_points, 1))
    y = x**3 + rng.normal(0.0, noise_std, size=(num_points, 1))
    grid = np.linspace(*grid_range, grid_points)[:, None]
    as_t = lambda a: torch.from_numpy(a.astype(np.float32))  # noqa: E731
    return ToyData(as_t(x), as_t(y), as_t(grid), noise_std)
