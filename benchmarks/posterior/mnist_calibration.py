"""MNIST calibration of each method after full training: LeNet-5, E epochs, batch 100.

Trains each named configuration on the 55,000 training images with ``bbh.training.fit`` (Adam,
the method's default lr unless given), predicts the 10,000 test images and the notMNIST test
split with ``--samples`` weight samples, and prints accuracy, NLL, ECE (15 bins) and the OOD
AUROC of the predictive entropy, with accuracy, NLL and ECE on the 5,000 validation images too
(for choosing options without looking at the test set), one JSON line per method::

    python benchmarks/posterior/mnist_calibration.py --data-dir DATA --epochs 5 \\
        --methods '{"map": {"method": "map"}, "bbh": {}, "bbb": {"method": "bbb"}}'
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

import bbh
from bbh import data as bdata
from bbh import metrics
from bbh.nets import LeNet5
from bbh.training import constant, fit


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--epochs", type=float, default=5)
    parser.add_argument(
        "--methods",
        default='{"map": {"method": "map"}, "bbh": {}}',
        help="JSON {label: {method, lr, ...options}}; method defaults to bbh",
    )
    parser.add_argument(
        "--samples", type=int, nargs="+", default=[30], help="weight samples for prediction"
    )
    parser.add_argument(
        "--save-probs",
        metavar="DIR",
        help="also save each method's predictive probabilities (test, validation, OOD) here",
    )
    parser.add_argument(
        "--kl-weight",
        type=float,
        default=1.0,
        help="weight of the KL term throughout (1: the ELBO; below 1: a tempered posterior)",
    )
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    mnist = bdata.load_mnist(args.data_dir, offline=True, with_ood=True)
    ood = bdata.load_notmnist(args.data_dir, offline=True)
    assert mnist.val is not None  # load_mnist keeps 5,000 validation images
    x, y = mnist.train.images, mnist.train.labels
    steps = int(args.epochs * (len(x) // 100))
    for label, spec in json.loads(args.methods).items():
        options = dict(spec)
        lr = options.pop("lr", None)
        method = options.pop("method", "bbh")
        torch.manual_seed(args.seed)
        model = bbh.build(method, LeNet5(), **options)
        start = time.perf_counter()
        fit(
            model,
            x,
            y,
            steps=steps,
            batch_size=100,
            lr=lr,
            log_every=max(1, steps // 5),
            kl_schedule=constant(args.kl_weight),
        )
        seconds = time.perf_counter() - start
        model.eval()
        for samples in args.samples if model.stochastic else [1]:
            with torch.no_grad():
                p_in = torch.cat([model.predict(b, samples) for b in mnist.test.images.split(1000)])
                p_out = torch.cat([model.predict(b, samples) for b in ood.images.split(1000)])
                p_val = torch.cat([model.predict(b, samples) for b in mnist.val.images.split(1000)])
            yt, yv = mnist.test.labels, mnist.val.labels
            row = {
                "samples": samples,
                "accuracy": metrics.accuracy(p_in, yt),
                "nll": metrics.nll(p_in, yt),
                "ece": metrics.expected_calibration_error(p_in, yt),
                # below the accuracy: underconfident on average; above: overconfident
                "mean_confidence": float(p_in.max(-1).values.mean()),
                "ood_auroc_entropy": metrics.auroc(
                    metrics.predictive_entropy(p_in), metrics.predictive_entropy(p_out)
                ),
                # the 5,000 validation images (not trained on): for choosing options
                "val_accuracy": metrics.accuracy(p_val, yv),
                "val_nll": metrics.nll(p_val, yv),
                "val_ece": metrics.expected_calibration_error(p_val, yv),
                "train_seconds": round(seconds),
                "kl_weight": args.kl_weight,
            }
            if samples == args.samples[0]:
                row.update(sigma_by_tensor(model))
            print(label, json.dumps(row), flush=True)
            if args.save_probs:
                out = Path(args.save_probs) / f"{label}_seed{args.seed}_S{samples}.pt"
                out.parent.mkdir(parents=True, exist_ok=True)
                torch.save({"test": p_in, "val": p_val, "ood": p_out}, out)


def sigma_by_tensor(model: object) -> dict[str, dict[str, list[float]]]:
    """Each generated tensor's learned sigma (median, 90th percentile, max), to see where sigma
    stopped: a semi-implicit BbH's ``sigma * eps``, Bayes by Backprop's std; ``{}`` otherwise."""
    hypernet = getattr(model, "posterior", None)
    mean_field = getattr(model, "posterior", None)
    with torch.no_grad():
        if hypernet is not None and getattr(hypernet, "semi_implicit", False):
            sigma = hypernet.sigma()
        elif mean_field is not None and hasattr(mean_field, "std"):
            sigma = mean_field.std
        else:
            return {}
        spec = model.spec  # type: ignore[attr-defined]
        parts = sigma.split([e.numel for e in spec])
        quantiles = torch.tensor([0.5, 0.9, 1.0])
        return {
            "sigma_median_p90_max": {
                e.name: [round(float(v), 5) for v in part.float().quantile(quantiles)]
                for e, part in zip(spec, parts, strict=True)
            }
        }


if __name__ == "__main__":
    main()
