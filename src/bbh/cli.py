"""The ``bbh`` command line: one subcommand per experiment."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bbh", description="Bayes by Hypernet experiments")
    sub = parser.add_subparsers(dest="command", required=True)

    toy = sub.add_parser("toy", help="the paper's 1-D toy regression (embedded data)")
    toy.add_argument("--out", required=True, help="output folder (metrics.json, toy.png)")
    toy.add_argument(
        "--methods", default="bbh", help="comma-separated method names, or 'all' (default: bbh)"
    )
    toy.add_argument(
        "--setting",
        default="ours",
        choices=["ours", "paper"],
        help="'ours' trains the proper ELBO; 'paper' the notebook's schedule",
    )
    toy.add_argument(
        "--reference",
        default="gp",
        choices=["gp", "hmc", "none"],
        help="trusted posterior to compare with (hmc takes a few minutes)",
    )
    toy.add_argument("--seed", type=int, default=0, help="training seed")
    toy.add_argument("--data-seed", type=int, default=1, help="data seed (the paper's: 1)")
    toy.add_argument("--steps", type=int, default=None, help="override the training steps")
    toy.add_argument("--no-figure", action="store_true", help="write metrics.json only")

    args = parser.parse_args(argv)
    if args.command == "toy":
        return _toy(args)
    return 2  # pragma: no cover - argparse enforces the choices


def _toy(args: argparse.Namespace) -> int:
    from bbh.experiments.toy import run_toy

    try:
        result = run_toy(
            args.out,
            [m.strip() for m in args.methods.split(",") if m.strip()],
            setting=args.setting,
            reference=args.reference,
            data_seed=args.data_seed,
            seed=args.seed,
            steps=args.steps,
            figure=not args.no_figure,
        )
    except (ValueError, RuntimeError) as err:
        print(f"bbh toy: error: {err}", file=sys.stderr)
        return 2
    summary = {
        name: {
            k: m[k]
            for k in (
                "rmse_mean_vs_truth",
                "coverage_2std",
                "std_f_at",
                "vs_reference",
                "train_seconds",
            )
            if k in m
        }
        for name, m in result["methods"].items()
    }
    print(json.dumps(summary, indent=1))
    print(f"wrote {args.out}/metrics.json" + ("" if args.no_figure else f" and {args.out}/toy.png"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
