"""Bayes by Hypernet against MAP on a net with three inputs, passed as a dict of tensors.

Data: scikit-learn's bundled breast cancer set (``sklearn.datasets.load_breast_cancer``; Wolberg,
Street and Mangasarian, UCI "Breast Cancer Wisconsin (Diagnostic)"), 569 tumours, benign or
malignant. Each of ten measurements of the cell nuclei in an image (radius, texture, ...) comes
three times: its mean over the nuclei, its standard error and its worst value. Those are the
net's three inputs, ``{"mean": [B, 10], "error": [B, 10], "worst": [B, 10]}``; ``bbh`` calls
the net as ``net(**x)``, so ``forward`` takes them by name. Each group goes through a tower of
its own before a shared read-out. Rows are split at random (seeded) into 60% training, 20%
validation (BbH's KL temperature) and 20% test, features standardised with training statistics.

Printed for each method: test accuracy, NLL and ECE, beside the trivial predictor (the training
split's class frequencies).

Bayes by Hypernet: Pawlowski et al. 2017, "Implicit Weight Uncertainty in Neural Networks",
arXiv 1711.01297.

Run: ``python examples/multi_input.py [--seed 0] [--quick]`` (needs scikit-learn:
``pip install -e ".[examples]"``).
"""

from __future__ import annotations

import argparse

import torch
from sklearn.datasets import load_breast_cancer
from torch import Tensor, nn

from _common import compare_classifiers

Inputs = dict[str, Tensor]
GROUPS = {"mean": "mean ", "error": " error", "worst": "worst "}  # group -> feature-name part


def load_splits(seed: int) -> dict[str, tuple[Inputs, Tensor]]:
    """Train / validation / test ``({group: [N, 10]}, labels [N])``, standardised with training
    statistics."""
    data = load_breast_cancer()
    x = torch.as_tensor(data.data, dtype=torch.float32)
    y = torch.as_tensor(data.target, dtype=torch.int64)
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))
    n_train, n_val = int(0.6 * len(x)), int(0.2 * len(x))
    parts = {"train": order[:n_train], "val": order[n_train : n_train + n_val]}
    parts["test"] = order[n_train + n_val :]
    mean, std = x[parts["train"]].mean(0), x[parts["train"]].std(0)
    x = (x - mean) / std
    columns = {
        g: [i for i, n in enumerate(data.feature_names) if part in n] for g, part in GROUPS.items()
    }
    return {k: ({g: x[i][:, c] for g, c in columns.items()}, y[i]) for k, i in parts.items()}


class ThreeTowers(nn.Module):
    """``mean, error, worst [B, 10]`` -> logits ``[B, 2]``: a small tower per input, their
    features concatenated, a linear read-out."""

    def __init__(self, features: int = 10, width: int = 4, num_classes: int = 2):
        super().__init__()
        self.towers = nn.ModuleDict(
            {g: nn.Sequential(nn.Linear(features, width), nn.ReLU()) for g in GROUPS}
        )
        self.out = nn.Linear(width * len(GROUPS), num_classes)

    def forward(self, mean: Tensor, error: Tensor, worst: Tensor) -> Tensor:
        inputs = {"mean": mean, "error": error, "worst": worst}
        return self.out(torch.cat([self.towers[g](inputs[g]) for g in GROUPS], dim=-1))


def main(argv: list[str] | None = None) -> dict[str, dict[str, float]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0, help="split, initialisation and noise")
    parser.add_argument("--steps", type=int, default=500, help="training steps per method")
    parser.add_argument(
        "--quick", action="store_true", help="200 steps, BbH at a fixed KL temperature: a smoke run"
    )
    args = parser.parse_args(argv)
    steps = 200 if args.quick else args.steps
    torch.set_num_threads(1)
    torch.manual_seed(args.seed)
    splits = load_splits(args.seed)
    (x, y), val, (test_x, test_y) = splits["train"], splits["val"], splits["test"]
    print(f"breast cancer: {len(y)} train, {len(val[1])} validation, {len(test_y)} test")

    return compare_classifiers(
        lambda: ThreeTowers(),
        (x, y),
        val,
        (test_x, test_y),
        num_classes=2,
        steps=steps,
        seed=args.seed,
        quick=args.quick,
        num_samples=100,
    )


if __name__ == "__main__":
    main()
