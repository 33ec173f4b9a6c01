"""How close can each BbH family get to the exact posterior of the linear-regression cases?

For ``linear-150`` and ``linear-500`` of the posterior check, the best factor-analysis Gaussian
``N(mu, A A^T + diag(s^2))`` of each rank k (the affine generator with k noise dimensions plus the
semi-implicit noise; k = 0 is mean-field, BbB's family) under the variational objective, and its
predictive std ratio on the case's held-out inputs. Writes JSON and prints a table.

    python benchmarks/posterior/family_gap.py --out benchmarks/results/posterior_family_gap.json
"""

from __future__ import annotations

import argparse
import time

import torch

from bbh.experiments.posterior_check.cases import linear_regression_case
from bbh.experiments.posterior_check.family import best_factor_gaussian, predictive_std_ratio
from bbh.io import write_json


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dims", type=int, nargs="+", default=[150, 500])
    parser.add_argument("--ranks", type=int, nargs="+", default=[0, 8, 16, 32, 64, 150, 300, 500])
    parser.add_argument("--steps", type=int, default=4000)
    parser.add_argument("--out", default="benchmarks/results/posterior_family_gap.json")
    args = parser.parse_args()
    torch.set_num_threads(1)
    rows = []
    for dim in args.dims:
        case = linear_regression_case(dim, num_draws=10)
        cov = case.reference.weight_cov
        assert cov is not None
        for rank in (r for r in args.ranks if r <= dim):
            start = time.perf_counter()
            best = best_factor_gaussian(cov, rank, steps=args.steps)
            median, worst = predictive_std_ratio(best.cov, cov, case.x_test)
            rows.append(
                {
                    "case": case.name,
                    "rank": rank,
                    "kl": round(best.kl, 3),
                    "std_ratio_median": round(median, 4),
                    "std_ratio_worst": round(worst, 4),
                    "seconds": round(time.perf_counter() - start, 1),
                }
            )
            print(
                f"{case.name} k={rank}: KL {best.kl:.2f}, std ratio median {median:.3f}, "
                f"worst {worst:.3f}",
                flush=True,
            )
    write_json(args.out, {"command": "python benchmarks/posterior/family_gap.py", "rows": rows})


if __name__ == "__main__":
    main()
