"""Training-step time of Bayes by Hypernet variants against a MAP step of the same net.

    python benchmarks/step_time.py --out runs/bench/step_time.json [--net lenet|mlp]

Each step is forward + backward + Adam (fused where available) on a batch of 100 MNIST-sized
inputs; the median over ``--repeats`` steps after one warm-up step. Ratios are taken in the same
run, since the machine is shared; the JSON records the machine.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from typing import Any

import torch

from bbh.methods import build
from bbh.nets import MLP
from bbh.nets.lenet import LeNet5
from bbh.training import make_optimizer

VARIANTS: dict[str, tuple[str, dict[str, Any]]] = {
    "map": ("map", {}),
    "bbh_paper (layerwise, nn_full, nll=first)": ("bbh", {}),
    "bbh layerwise, entropy": ("bbh", {"kl": "entropy"}),
    "bbh layerwise, entropy, nll=split": ("bbh", {"kl": "entropy", "nll": "split"}),
    "bbh chunked, entropy": ("bbh", {"generator": "chunked", "kl": "entropy"}),
    "bbh chunked, entropy, nll=split": (
        "bbh",
        {"generator": "chunked", "kl": "entropy", "nll": "split"},
    ),
}


def step_seconds(method: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, repeats: int) -> float:
    opt = make_optimizer([p for p in method.parameters() if p.requires_grad], "adam", 1e-4)
    times = []
    for i in range(repeats + 1):
        t = time.perf_counter()
        loss, _ = method.loss(x, y, num_data=55_000)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if i:
            times.append(time.perf_counter() - t)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="runs/bench/step_time.json")
    ap.add_argument("--net", default="lenet", choices=["lenet", "mlp"])
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    torch.manual_seed(0)
    net = LeNet5() if args.net == "lenet" else MLP(784, [400, 400], 10)
    x, y = torch.rand(100, 1, 28, 28), torch.randint(0, 10, (100,))
    rows: dict[str, Any] = {}
    for label, (name, options) in VARIANTS.items():
        method = build(name, net, **options)
        n_params = sum(p.numel() for p in method.parameters() if p.requires_grad)
        rows[label] = {
            "seconds": step_seconds(method, x, y, args.repeats),
            "trainable_parameters": n_params,
        }
        del method
    base = rows["map"]["seconds"]
    for row in rows.values():
        row["ratio_to_map"] = row["seconds"] / base
    result = {
        "machine": {
            "platform": platform.platform(),
            "cpus": torch.get_num_threads(),
            "torch": torch.__version__,
        },
        "net": args.net,
        "primary_parameters": sum(p.numel() for p in net.parameters()),
        "batch_size": 100,
        "variants": rows,
    }
    from bbh.io import write_json

    write_json(args.out, result)
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
