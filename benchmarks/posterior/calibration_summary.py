"""Are two methods' calibration numbers really different? Seed means with test-set bootstrap CIs.

Reads the probabilities that ``mnist_calibration.py --save-probs DIR`` saved
(``{label}_seed{s}_S{samples}.pt``) and, for every method against ``--reference`` over the seeds
both have, prints the mean over seeds of the test metric and of the paired difference (method
minus reference), the standard error of that mean over seeds (training noise), and a 95% CI of
the mean difference from a bootstrap over the split's images (test-set noise: the images are
resampled once per replicate, the same for every seed and both methods). ECE is biased upward on
a finite set and moves by about 0.001 between equally good models on MNIST's ~100 errors.
``confidence_gap`` (mean top probability minus accuracy) says from which side: > 0 is
over-confident; "better" counts the seeds where its size is the smaller. ``--examples 0:5000``
scores part of the split::

    python benchmarks/posterior/calibration_summary.py --probs runs/probs --reference map \\
        --data-dir DATA --split test
"""

from __future__ import annotations

import argparse
import json
import re
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from bbh import data as bdata
from bbh import metrics

NAME = re.compile(r"(?P<label>.+)_seed(?P<seed>\d+)_S(?P<samples>\d+)\.pt")


def load(directory: Path, split: str) -> dict[str, dict[int, torch.Tensor]]:
    """``{label: {seed: probs}}`` (the largest sample count where a run saved several)."""
    found: dict[str, dict[int, tuple[int, torch.Tensor]]] = defaultdict(dict)
    for path in sorted(directory.glob("*.pt")):
        m = NAME.fullmatch(path.name)
        if m is None:
            continue
        seed, samples = int(m["seed"]), int(m["samples"])
        previous = found[m["label"]].get(seed)
        if previous is None or samples > previous[0]:
            found[m["label"]][seed] = (samples, torch.load(path)[split].double())
    if not found:
        raise SystemExit(f"--probs {directory}: no files named <label>_seed<S>_S<n>.pt")
    return {label: {s: p for s, (_, p) in runs.items()} for label, runs in found.items()}


def confidence_gap(probs: torch.Tensor, labels: torch.Tensor) -> float:
    """Mean confidence (top probability) minus accuracy: > 0 over-confident, < 0 under."""
    return float(metrics.max_probability(probs).mean()) - metrics.accuracy(probs, labels)


METRICS = {
    "ece": metrics.expected_calibration_error,
    "nll": metrics.nll,
    "accuracy": metrics.accuracy,
    "confidence_gap": confidence_gap,
}

#: when a method's value beats the reference's (default: lower is better)
BETTER: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    "accuracy": lambda value, ref: value > ref,
    "confidence_gap": lambda value, ref: np.abs(value) < np.abs(ref),
}


def summarise(
    runs: dict[str, dict[int, torch.Tensor]],
    labels: torch.Tensor,
    reference: str,
    replicates: int,
    seed: int,
) -> dict[str, object]:
    if reference not in runs:
        raise SystemExit(f"--reference {reference!r} not among the saved methods {sorted(runs)}")
    rng = np.random.default_rng(seed)
    n = labels.shape[0]
    draws = [torch.from_numpy(rng.integers(0, n, n)) for _ in range(replicates)]
    table: dict[str, object] = {}
    for label, by_seed in runs.items():
        seeds = sorted(set(by_seed) & set(runs[reference]))
        if not seeds:
            print(f"{label}: no seed in common with {reference!r}, left out")
            continue
        row: dict[str, object] = {"seeds": seeds}
        for name, fn in METRICS.items():
            values = np.array([fn(by_seed[s], labels) for s in seeds])
            ref = np.array([fn(runs[reference][s], labels) for s in seeds])
            diff = values - ref
            boot = [
                np.mean(
                    [
                        fn(by_seed[s][i], labels[i]) - fn(runs[reference][s][i], labels[i])
                        for s in seeds
                    ]
                )
                for i in draws
            ]
            row[name] = {
                "mean": float(values.mean()),
                "diff_mean": float(diff.mean()),
                "diff_se_seeds": float(diff.std(ddof=1) / np.sqrt(len(seeds)))
                if len(seeds) > 1
                else None,
                "diff_ci95_test_bootstrap": [float(np.quantile(boot, q)) for q in (0.025, 0.975)],
                "better_than_reference": int(
                    BETTER.get(name, lambda value, ref: value < ref)(values, ref).sum()
                ),
            }
        table[label] = row
    return table


def parse_slice(text: str) -> slice:
    """``START:STOP`` (either may be empty) as a slice."""
    start, sep, stop = text.partition(":")
    try:
        if not sep:
            raise ValueError
        return slice(int(start) if start else None, int(stop) if stop else None)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected START:STOP, got {text!r}") from None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--probs", required=True, type=Path)
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--reference", default="map")
    parser.add_argument("--split", choices=["test", "val"], default="test")
    parser.add_argument(
        "--examples",
        type=parse_slice,
        default=slice(None),
        help="START:STOP, only these images of the split (e.g. 0:5000, 5000:)",
    )
    parser.add_argument("--replicates", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, help="also write the table as JSON here")
    args = parser.parse_args()
    mnist = bdata.load_mnist(args.data_dir, offline=True)
    split = mnist.test if args.split == "test" else mnist.val
    assert split is not None
    runs = {
        label: {s: p[args.examples] for s, p in by_seed.items()}
        for label, by_seed in load(args.probs, args.split).items()
    }
    labels = split.labels[args.examples]
    if labels.numel() == 0:
        raise SystemExit(f"--examples {args.examples}: no images of the {args.split} split")
    table = summarise(runs, labels, args.reference, args.replicates, args.seed)
    for label, row in table.items():
        print(label, json.dumps(row))
    if args.out:
        tmp = args.out.with_suffix(".tmp")
        tmp.write_text(
            json.dumps(
                {"command": vars(args) | {"probs": str(args.probs)}, "table": table},
                indent=1,
                default=str,
            )
        )
        tmp.replace(args.out)


if __name__ == "__main__":
    main()
