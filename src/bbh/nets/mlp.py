"""Plain multilayer perceptrons (primary networks know nothing about Bayes)."""

from __future__ import annotations

import itertools
from collections.abc import Sequence

from torch import Tensor, nn


class MLP(nn.Module):
    """``in -> hidden... -> out`` with ReLU between layers; inputs are flattened from dim 1.

    Args:
        in_features: The inputs' size (after flattening).
        hidden: The hidden layers' widths (empty: one linear layer).
        out_features: The outputs' size.
    """

    def __init__(self, in_features: int, hidden: Sequence[int], out_features: int):
        super().__init__()
        sizes = [in_features, *hidden, out_features]
        layers: list[nn.Module] = []
        for i, (a, b) in enumerate(itertools.pairwise(sizes)):
            layers.append(nn.Linear(a, b))
            if i < len(sizes) - 2:
                layers.append(nn.ReLU())
        self.layers = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        """Outputs ``[B, out]`` of inputs flattened to ``[B, in]``.

        Args:
            x: Inputs ``[B, ...]``.

        Returns:
            Outputs ``[B, out]``.
        """
        return self.layers(x.flatten(1))


def toy_regression_net(hidden: int = 100) -> MLP:
    """The paper's toy-regression network 1 -> 100 (ReLU) -> 1.

    As in the paper's code (pawni/BayesByHypernet, ``toy_data.ipynb``).

    Args:
        hidden: The hidden layer's width.

    Returns:
        The net.
    """
    return MLP(1, [hidden], 1)
