"""Paper-scale MNIST training: a BbH configuration and MAP for the same epochs, time and accuracy.

    python benchmarks/mnist_training.py --data-dir DATA --epochs 5 --device cuda
    python benchmarks/mnist_training.py --config "chunked, entropy" --epochs 10
    python benchmarks/mnist_training.py --scale tiny        # embedded subset, a few steps

LeNet-5 on the 55,000 MNIST training images (the paper's split), batch 100, Adam at each
method's default learning rate, the KL weight annealed linearly from 0 to 1 over the first
quarter of the steps (``--kl-anneal-fraction``). After training, test accuracy on the 10,000
test images (BbH: the predictive of ``--eval-samples`` weight samples; MAP: one pass). Records
seconds per epoch of each and the accuracy gap. Target: the BbH configuration within 0.3 points of
MAP. ``--config`` is a substring of a label in ``cases.BBH_CONFIGS`` (default: the first, where
the recommended configuration goes). ``--scale tiny`` trains on the embedded 2,000-image subset
for ``--tiny-steps`` steps: a smoke test only.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

import harness
from bbh.data import load_embedded_mnist, load_mnist
from bbh.methods.base import Method
from bbh.metrics import accuracy
from bbh.nets import LeNet5
from bbh.training import annealing, fit
from cases import BBH_CONFIGS, MAP_CASE, MethodCase


def train_and_test(
    case: MethodCase, data: Any, args: Any, device: torch.device, steps: int
) -> dict[str, Any]:
    torch.manual_seed(args.seed)
    method = case.build(LeNet5(), args.scale).to(device)
    x, y = data.train.images.to(device), data.train.labels.to(device)
    anneal = max(1, int(steps * args.kl_anneal_fraction))
    harness.synchronize(device)
    start = time.perf_counter()
    result = fit(
        method,
        x,
        y,
        steps=steps,
        batch_size=args.batch_size,
        kl_schedule=annealing(0, anneal),
        seed=args.seed,
        log_every=max(1, steps // 10),
    )
    harness.synchronize(device)
    seconds = time.perf_counter() - start
    samples = 1 if not method.stochastic else args.eval_samples
    acc = test_accuracy(method, data.test.images, data.test.labels, samples, device)
    return {
        "label": case.label,
        "options": {k: str(v) for k, v in case.options.items()},
        "steps": steps,
        "train_seconds": seconds,
        "seconds_per_epoch": seconds / (steps * args.batch_size / len(x)),
        "test_accuracy": acc,
        "eval_samples": samples,
        "last_log": result.logs[-1] if result.logs else {},
    }


@torch.no_grad()
def test_accuracy(
    method: Method, images: torch.Tensor, labels: torch.Tensor, samples: int, device: torch.device
) -> float:
    method.eval()
    probs = [
        method.predict(images[i : i + 1000].to(device), samples).cpu()
        for i in range(0, len(images), 1000)
    ]
    return accuracy(torch.cat(probs), labels)


def main(argv: list[str] | None = None) -> int:
    ap = harness.common_parser(__doc__ or "", "benchmarks/results/mnist_training_cpu.json")
    ap.add_argument("--data-dir", default=None, help="data root with mnist/ (default: $BBH_DATA)")
    ap.add_argument("--epochs", type=float, default=5.0, help="epochs of 55,000 images")
    ap.add_argument("--batch-size", type=int, default=100)
    ap.add_argument("--config", default=None, help="substring of a BBH_CONFIGS label")
    ap.add_argument("--eval-samples", type=int, default=10, help="BbH weight samples at test")
    ap.add_argument("--kl-anneal-fraction", type=float, default=0.25)
    ap.add_argument("--tiny-steps", type=int, default=3, help="steps at --scale tiny")
    ap.add_argument("--skip-map", action="store_true", help="train the BbH configuration only")
    args = ap.parse_args(argv)
    if args.epochs <= 0 or args.batch_size < 1 or args.eval_samples < 1:
        raise SystemExit("--epochs must be > 0, --batch-size and --eval-samples >= 1")
    device, load = harness.setup(args)
    if args.scale == "tiny":
        data = load_embedded_mnist()
        steps = args.tiny_steps
    else:
        data = load_mnist(args.data_dir)
        steps = max(1, round(args.epochs * len(data.train.images) / args.batch_size))
    labels = [c.label for c in BBH_CONFIGS]
    chosen = [c for c in BBH_CONFIGS if args.config is None or args.config in c.label]
    if not chosen:
        raise SystemExit(f"--config {args.config!r} matches none of {labels}")
    runs = [chosen[0]] if args.skip_map else [chosen[0], MAP_CASE]
    rows = {}
    for case in runs:
        print(f"training {case.label} for {steps} steps ...", file=sys.stderr, flush=True)
        rows[case.label] = train_and_test(case, data, args, device, steps)
        row = rows[case.label]
        print(
            f"  {row['train_seconds']:.1f} s ({row['seconds_per_epoch']:.1f} s/epoch), "
            f"test accuracy {row['test_accuracy']:.4f}",
            file=sys.stderr,
            flush=True,
        )
    record: dict[str, Any] = {
        "benchmark": "mnist_training",
        "scale": args.scale,
        "data": data.source,
        "train_images": len(data.train.images),
        "epochs": steps * args.batch_size / len(data.train.images),
        "batch_size": args.batch_size,
        "runs": rows,
    }
    if not args.skip_map:
        bbh_row, map_row = rows[chosen[0].label], rows[MAP_CASE.label]
        record["accuracy_gap_points"] = 100 * (map_row["test_accuracy"] - bbh_row["test_accuracy"])
        record["time_ratio_to_map"] = bbh_row["train_seconds"] / map_row["train_seconds"]
    harness.write_record(args.out, record, device=device, load=load)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
