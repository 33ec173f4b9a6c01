"""The ``bbh`` command line (also ``python -m bbh``): one subcommand per experiment.

Every option is checked before any work starts; an error is one line on stderr,
``bbh <command>: error: <what>``, with exit status 2.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NoReturn

#: What a command reports as a one-line error (exit 2) instead of a traceback.
USER_ERRORS: tuple[type[BaseException], ...] = (
    ValueError,
    TypeError,
    RuntimeError,
    OSError,
    FloatingPointError,
)


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors: ``prog: error: message (see prog --help)``, exit 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def int_at_least(low: int) -> Callable[[str], int]:
    """An argparse ``type``: an integer >= ``low``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"must be >= {low}, got {value}")
        return value

    parse.__name__ = f"integer >= {low}"
    return parse


def folder(text: str) -> str:
    """An argparse ``type``: a non-empty folder path."""
    if not text.strip():
        raise argparse.ArgumentTypeError("expected a folder path, got an empty string")
    return text


def main(argv: Sequence[str] | None = None) -> int:
    from bbh import __version__

    parser = _Parser(prog="bbh", description="Bayes by Hypernet experiments")
    parser.add_argument("--version", action="version", version=f"bbh {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    toy = sub.add_parser("toy", help="the paper's 1-D toy regression (embedded data)")
    toy.add_argument(
        "--out",
        required=True,
        type=folder,
        help="output folder (metrics.json, toy.png); a finished earlier run there is replaced",
    )
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
    toy.add_argument("--seed", type=int_at_least(0), default=0, help="training seed")
    toy.add_argument(
        "--data-seed", type=int_at_least(0), default=1, help="data seed (the paper's: 1)"
    )
    toy.add_argument(
        "--steps", type=int_at_least(1), default=None, help="override the training steps"
    )
    toy.add_argument("--no-figure", action="store_true", help="write metrics.json only")

    data = sub.add_parser(
        "data", help="load (and, unless offline, download) a data set; print its splits"
    )
    data.add_argument("name", choices=["mnist", "notmnist", "cifar5", "cifar10", "embedded"])
    data.add_argument(
        "--data-dir",
        default=None,
        type=folder,
        help="data root (default: $BBH_DATA, else the user cache folder)",
    )
    data.add_argument(
        "--offline", action="store_true", help="never download; report what is missing"
    )
    data.add_argument(
        "--cache-dir",
        default=None,
        type=folder,
        help="decoded-array cache (CIFAR; default: $BBH_CACHE)",
    )

    check = sub.add_parser(
        "check-posterior",
        help="train methods on cases with exact/NUTS references and score their posteriors",
    )
    check.add_argument(
        "--out",
        required=True,
        type=folder,
        help="output folder (results.json/.md, CASE.png); a finished earlier run there is replaced",
    )
    check.add_argument("--cases", default="all", help="comma-separated case names, or 'all'")
    check.add_argument(
        "--methods", default="all", help="comma-separated spec labels or registry names, or 'all'"
    )
    check.add_argument("--quick", action="store_true", help="steps / 20: a smoke run")
    check.add_argument("--seed", type=int_at_least(0), default=0, help="training seed")
    check.add_argument("--no-figure", action="store_true", help="write the tables only")

    args = parser.parse_args(argv)
    commands = {"toy": _toy, "data": _data, "check-posterior": _check_posterior}
    command = commands[args.command]
    try:
        return command(args)
    except USER_ERRORS as err:
        return _fail(args.command, err)
    except KeyboardInterrupt:
        print(f"bbh {args.command}: interrupted", file=sys.stderr)
        return 130


def _fail(command: str, err: BaseException) -> int:
    message = " ".join(str(err).split()) or type(err).__name__
    print(f"bbh {command}: error: {message}", file=sys.stderr)
    return 2


def _toy(args: argparse.Namespace) -> int:
    from bbh.experiments.toy import run_toy
    from bbh.io import check_output_folder

    out = check_output_folder(args.out, name="--out")  # before the reference and training
    result = run_toy(
        out,
        [m.strip() for m in args.methods.split(",") if m.strip()],
        setting=args.setting,
        reference=args.reference,
        data_seed=args.data_seed,
        seed=args.seed,
        steps=args.steps,
        figure=not args.no_figure,
    )
    summary = {
        name: {
            k: m[k]
            for k in (
                "rmse_mean_vs_truth",
                "coverage_f_2std",
                "coverage_y_2std",
                "std_f_at",
                "vs_reference",
                "train_seconds",
            )
            if k in m
        }
        for name, m in result["methods"].items()
    }
    print(json.dumps(summary, indent=1))
    print(f"wrote {out / 'metrics.json'}" + ("" if args.no_figure else f" and {out / 'toy.png'}"))
    return 0


def _check_posterior(args: argparse.Namespace) -> int:
    from bbh.experiments.posterior_check import run_posterior_check

    names = lambda text: [t.strip() for t in text.split(",") if t.strip()]  # noqa: E731
    out = run_posterior_check(
        args.out,
        names(args.cases),
        names(args.methods),
        quick=args.quick,
        seed=args.seed,
        figures=not args.no_figure,
        log=lambda line: print(line, file=sys.stderr, flush=True),
    )["out"]
    print((Path(out) / "results.md").read_text())
    return 0


def _data(args: argparse.Namespace) -> int:
    import time

    from bbh import data as bdata

    offline = True if args.offline else None
    start = time.perf_counter()
    if args.name == "embedded":
        splits = {
            "train": (m := bdata.load_embedded_mnist(with_ood=True)).train,
            "test": m.test,
            "ood (notMNIST)": m.ood,
        }
    elif args.name == "notmnist":
        splits = {"test": bdata.load_notmnist(args.data_dir, offline=offline)}
    elif args.name == "mnist":
        m = bdata.load_mnist(args.data_dir, offline=offline)
        splits = {"train": m.train, "val": m.val, "test": m.test}
    else:
        loader = bdata.load_cifar5 if args.name == "cifar5" else bdata.load_cifar10
        m = loader(args.data_dir, offline=offline, cache_dir=args.cache_dir)
        splits = {"train": m.train, "test": m.test, "ood": m.ood}
    for split, d in splits.items():
        if d is not None:
            print(
                f"{split}: {len(d)} images {list(d.images.shape[1:])}, per class "
                f"{dict(zip(d.class_names, d.class_counts(), strict=True))}"
            )
    print(f"loaded in {time.perf_counter() - start:.2f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
