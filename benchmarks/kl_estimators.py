"""Cost and spread of the KL estimators on the paper's MNIST LeNet-5 (D = 431,080), against a MAP
step of the same net, measured in one run. Writes JSON with the machine it ran on.

    python benchmarks/kl_estimators.py --out runs/bench/kl_estimators.json

Cost: forward + backward of each estimator on S = 5 samples ``[5, D]``, as a ratio to one MAP
training step (forward + backward + Adam) of LeNet-5 on a batch of 100.
Spread: the standard deviation of the estimate over repeated calls for one fixed set of samples
(only the nearest-neighbour estimators draw prior samples, so ours has none from that source) and
over fresh q samples, for q a mean-field Gaussian near a trained posterior's scale.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time

import torch

from bbh.divergences import make_kl_estimator
from bbh.io import write_json
from bbh.methods import build
from bbh.nets.lenet import LeNet5
from bbh.priors import GaussianPrior
from bbh.training import make_optimizer

NAMES = ["nn_full", "nn_coordinate", "entropy", "entropy_coordinate"]


def timeit(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="runs/bench/kl_estimators.json")
    ap.add_argument("--repeats", type=int, default=10)
    args = ap.parse_args()
    torch.manual_seed(0)
    net = LeNet5()
    map_method = build("map", net)
    opt = make_optimizer([p for p in map_method.parameters() if p.requires_grad], "adam", 1e-3)
    x, y = torch.rand(100, 1, 28, 28), torch.randint(0, 10, (100,))

    def map_step() -> None:
        loss, _ = map_method.loss(x, y, num_data=55_000)
        opt.zero_grad()
        loss.backward()
        opt.step()

    d = sum(p.numel() for p in net.parameters())
    prior = GaussianPrior(1.0)
    mu = 0.05 * torch.randn(d)
    sigma = 0.01
    fixed = (mu + sigma * torch.randn(5, d)).requires_grad_(True)
    result = {
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor(),
            "threads": torch.get_num_threads(),
            "torch": torch.__version__,
        },
        "dim": d,
        "num_samples": 5,
        "map_step_seconds": timeit(map_step, args.repeats),
        "estimators": {},
    }
    true_kl = (
        d * (torch.log(torch.tensor(1 / sigma)) - 0.5) + 0.5 * (sigma**2 * d + mu.pow(2).sum())
    ).item()
    result["true_kl_of_q"] = true_kl
    for name in NAMES:
        est = make_kl_estimator(name)

        def step(est=est) -> None:
            fixed.grad = None
            est(fixed, prior).backward()

        seconds = timeit(step, args.repeats)
        with torch.no_grad():
            same_q = [est(fixed, prior).item() for _ in range(20)]
            fresh_q = [est(mu + sigma * torch.randn(5, d), prior).item() for _ in range(20)]
        result["estimators"][name] = {
            "seconds": seconds,
            "ratio_to_map_step": seconds / result["map_step_seconds"],
            "std_same_samples": statistics.pstdev(same_q),
            "std_fresh_samples": statistics.pstdev(fresh_q),
            "mean_fresh_samples": statistics.mean(fresh_q),
        }
    write_json(args.out, result)
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
