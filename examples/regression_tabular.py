"""Bayes by Hypernet against MAP on a real tabular regression task: scikit-learn's diabetes set.

Data: ``sklearn.datasets.load_diabetes`` (Efron et al. 2004, "Least angle regression"), 442
patients, 10 baseline features (age, sex, BMI, blood pressure, six blood serum measurements) and
a quantitative measure of disease progression one year later as the target. It ships inside the
scikit-learn wheel (no download). The rows are split at random (seeded) into 60% training, 20%
validation and 20% test; features and target are standardised with the training split's
statistics only.

The observation noise is a fixed ``noise_scale`` of ``likelihood="gaussian"``. It is estimated
honestly, never on the test set: a first MAP fit on the training split, then the RMS of its
residuals on the validation split. Both methods then train on the training split with that noise;
BbH chooses its KL temperature on the validation split (``temperature="validation"``, the
recommended preset). The test split is touched once, to score: RMSE in the target's own units,
Gaussian NLL per example (in standardised units), coverage of ``mean +- 1`` and ``2`` total std,
and the calibration error of the central intervals (Kuleshov et al. 2018).

Bayes by Hypernet: Pawlowski et al. 2017, "Implicit Weight Uncertainty in Neural Networks",
arXiv 1711.01297.

Run: ``python examples/regression_tabular.py [--seed 0] [--quick]`` (needs scikit-learn:
``pip install -e ".[examples]"``).
"""

from __future__ import annotations

import argparse

import torch
from sklearn.datasets import load_diabetes
from torch import Tensor, nn

import bbh
from _common import METHODS, print_table, train
from bbh.evaluation import evaluate_regression
from bbh.training import fit

HIDDEN = 16  # one hidden layer: 10 -> 16 -> 1, 193 weights


def load_splits(seed: int) -> tuple[dict[str, tuple[Tensor, Tensor]], float]:
    """Train / validation / test ``(x [N, 10], y [N])``, standardised with training statistics;
    and the training targets' std (to report the RMSE in the target's units)."""
    x_np, y_np = load_diabetes(return_X_y=True)
    x, y = torch.as_tensor(x_np, dtype=torch.float32), torch.as_tensor(y_np, dtype=torch.float32)
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))
    n_train, n_val = int(0.6 * len(x)), int(0.2 * len(x))
    parts = {
        "train": order[:n_train],
        "val": order[n_train : n_train + n_val],
        "test": order[n_train + n_val :],
    }
    tx, ty = x[parts["train"]], y[parts["train"]]
    x_mean, x_std, y_mean, y_std = tx.mean(0), tx.std(0), ty.mean(), ty.std()
    splits = {k: ((x[i] - x_mean) / x_std, (y[i] - y_mean) / y_std) for k, i in parts.items()}
    return splits, float(y_std)


def make_net() -> nn.Module:
    return nn.Sequential(nn.Linear(10, HIDDEN), nn.ReLU(), nn.Linear(HIDDEN, 1))


def main(argv: list[str] | None = None) -> dict[str, dict[str, float]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0, help="split, initialisation and noise")
    parser.add_argument("--steps", type=int, default=500, help="training steps per method")
    parser.add_argument(
        "--quick", action="store_true", help="100 steps, BbH at a fixed KL temperature: a smoke run"
    )
    args = parser.parse_args(argv)
    steps = 100 if args.quick else args.steps
    torch.set_num_threads(1)
    torch.manual_seed(args.seed)
    splits, y_std = load_splits(args.seed)
    (x, y), val = splits["train"], splits["val"]
    budget = dict(steps=steps, batch_size=64, seed=args.seed)

    # The noise: MAP's residuals on the validation split (the target is standardised, so 1.0 is
    # the std of the target; only the weight decay's relative strength depends on it).
    probe = bbh.build("map", make_net(), likelihood="gaussian", noise_scale=1.0)
    fit(probe, x, y, **budget)
    with torch.no_grad():
        residual = probe.predict(val[0]).mean.squeeze(-1) - val[1]
    noise = float(residual.pow(2).mean().sqrt())
    print(f"diabetes: {len(x)} train, {len(val[0])} validation, {len(splits['test'][0])} test")
    print(f"noise_scale {noise:.3f} (standardised units), from MAP's validation residuals")

    results: dict[str, dict[str, float]] = {}
    for name in METHODS:
        torch.manual_seed(args.seed)  # the same initial net for both
        method, seconds = train(
            name, make_net(), x, y, val, steps=steps, seed=args.seed, quick=args.quick,
            likelihood="gaussian", noise_scale=noise,
        )  # fmt: skip
        scores = evaluate_regression(method, *splits["test"], num_samples=200)
        results[name] = {
            "rmse": scores["rmse"] * y_std,
            "nll": scores["nll"],
            "coverage_1std": scores["coverage_1std"],
            "coverage_2std": scores["coverage_2std"],
            "calibration_error": scores["calibration_error"],
            "train_cpu_s": seconds,
        }

    print(f"\ntest split, RMSE in target units (target std {y_std:.1f}):")
    print_table(results, tuple(next(iter(results.values()))), width=18)
    return results


if __name__ == "__main__":
    main()
