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
from typing import Any, NoReturn

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


def positive_float(text: str) -> float:
    """An argparse ``type``: a number > 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text}")
    return value


def folder(text: str) -> str:
    """An argparse ``type``: a non-empty folder path."""
    if not text.strip():
        raise argparse.ArgumentTypeError("expected a folder path, got an empty string")
    return text


def main(argv: Sequence[str] | None = None) -> int:
    """The ``bbh`` command line: parse ``argv`` and run its subcommand.

    Args:
        argv: The arguments after the program name; None reads ``sys.argv[1:]``.

    Returns:
        The exit status, 0 on success; non-zero when the command failed (130 when interrupted).
    """
    from bbh._version import __version__

    parser = _Parser(
        prog="bbh",
        description="Bayes by Hypernet: the paper's experiments, training, evaluation, reports.",
    )
    parser.add_argument("--version", action="version", version=f"bbh {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    _add_experiment_commands(sub)

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
    command = commands.get(args.command, _experiment)
    try:
        _one_process_unless_train(args.command)
        return command(args)
    except USER_ERRORS as err:
        return _fail(args.command, err)
    except KeyboardInterrupt:
        print(f"bbh {args.command}: interrupted", file=sys.stderr)
        return 130


def _one_process_unless_train(command: str) -> None:
    """Under torchrun (``WORLD_SIZE`` > 1) only ``bbh train`` runs: every other command would run
    once per process on the same files."""
    from bbh.training.distributed import env_world_size

    if command != "train" and env_world_size() > 1:
        raise RuntimeError(
            f"bbh {command} runs in one process; under torchrun only bbh train runs "
            "(start this command without torchrun)"
        )


def _fail(command: str, err: BaseException) -> int:
    message = " ".join(str(err).split()) or type(err).__name__
    print(f"bbh {command}: error: {message}", file=sys.stderr)
    return 2


def _experiment(args: argparse.Namespace) -> int:
    from bbh.experiments import commands

    return commands.run(args)


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


def _add_experiment_commands(sub: Any) -> None:
    scale_help = (
        "paper: the paper's budget (a GPU); cpu: sized for a 2-core CPU (default: %(default)s)"
    )
    set_help = "override a config value, e.g. --set method.options.noise_dim=64 (repeatable)"
    quiet_help = "no progress bars"
    threads_help = (
        "CPU threads (default: the config's train.threads, else torch's); 1 is fastest for "
        "small nets and on a machine shared with other jobs"
    )

    demo = sub.add_parser(
        "demo",
        help="five methods on the embedded MNIST subset, compared (a few minutes, no download)",
        description="Train MAP, MC dropout, a deep ensemble, Bayes by Backprop and Bayes by "
        "Hypernet on the embedded MNIST subset, evaluate them (accuracy, NLL, ECE, OOD AUROC "
        "against embedded notMNIST, accuracy under FGSM and PGD at eps 0.1), print the table "
        "and write report.md and report.html. A second run reuses the trained runs.",
    )
    demo.add_argument(
        "--out", default="runs/demo", type=folder, help="output folder (default: %(default)s)"
    )
    demo.add_argument("--threads", type=int_at_least(1), default=None, help=threads_help)
    demo.add_argument("--quiet", action="store_true", help=quiet_help)

    configs = sub.add_parser(
        "configs",
        help="list the shipped configs, or show one resolved",
        description="Without NAME: list the shipped configs. With NAME: print it resolved "
        "(base, scale and --set merged) as JSON.",
    )
    configs.add_argument("name", nargs="?", help="a config name (mnist/map) or a TOML file")
    configs.add_argument("--scale", default="paper", choices=["paper", "cpu"], help=scale_help)
    configs.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help=set_help)

    train = sub.add_parser(
        "train",
        help="train one config into a run folder (checkpoints, log, --resume)",
        description="Train CONFIG (a shipped name such as mnist/map, or a TOML file) into a "
        "run folder: config.json, log.jsonl, checkpoints/, model.pt, train.json. A finished run "
        "of the same config is not retrained. Ctrl-C stops at the next step with a checkpoint.",
    )
    train.add_argument("config", help="config name (see bbh configs) or path to a TOML file")
    train.add_argument("--scale", default="paper", choices=["paper", "cpu"], help=scale_help)
    train.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help=set_help)
    train.add_argument(
        "--out", default=None, type=folder, help="run folder (default: runs/<config>-<scale>)"
    )
    train.add_argument(
        "--device", default=None, choices=["cpu", "cuda", "auto"],
        help="where to train (default: the config's train.device, cpu)",
    )  # fmt: skip
    train.add_argument(
        "--resume", action="store_true",
        help="continue the unfinished run in --out from its last checkpoint",
    )  # fmt: skip
    train.add_argument(
        "--data-dir",
        default=None,
        type=folder,
        help="data root (default: $BBH_DATA or the user cache)",
    )
    train.add_argument("--threads", type=int_at_least(1), default=None, help=threads_help)
    train.add_argument("--quiet", action="store_true", help=quiet_help)

    finetune = sub.add_parser(
        "finetune",
        help="Bayesian fine-tuning of a trained net (a run folder or a state_dict file)",
        description="Start METHOD's posterior at the trained net of SOURCE (a finished run "
        "folder of a map or mc_dropout run, or a file of a plain state_dict with --config "
        "naming its net and data) and train it for a short budget (default: one epoch) on the "
        "same data, splits and seed, into a run folder that bbh evaluate and bbh.load read.",
    )
    finetune.add_argument("source", help="a finished run folder, its model.pt, or a state_dict")
    finetune.add_argument("--method", default="bbh", help="bbh (default), bbb, mc_dropout or map")
    budget = finetune.add_mutually_exclusive_group()
    budget.add_argument(
        "--epochs", type=positive_float, default=None, help="the budget in epochs (default: 1)"
    )
    budget.add_argument("--steps", type=int_at_least(1), default=None, help="the budget in steps")
    finetune.add_argument(
        "--out", default=None, type=folder,
        help="run folder (default: <source>-finetune-<method>); an interrupted one continues",
    )  # fmt: skip
    finetune.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                          help="override a value of the fine-tune's config, e.g. "
                          "--set method.options.temperature=1 (repeatable)")  # fmt: skip
    finetune.add_argument(
        "--config", default=None,
        help="for a state_dict file: the config naming its net and data (e.g. mnist/map)",
    )  # fmt: skip
    finetune.add_argument("--scale", default="paper", choices=["paper", "cpu"], help=scale_help)
    finetune.add_argument(
        "--data-dir", default=None, type=folder, help="data root (default: the source's)"
    )
    finetune.add_argument(
        "--device", default=None, choices=["cpu", "cuda", "auto"], help="default: cpu"
    )
    finetune.add_argument("--threads", type=int_at_least(1), default=None, help=threads_help)
    finetune.add_argument("--quiet", action="store_true", help=quiet_help)

    evaluate = sub.add_parser(
        "evaluate",
        help="evaluate a trained run (paper protocol, extended suite, studies, figures)",
        description="Evaluate the trained method of RUN with its config's settings and write "
        "evaluation.json and figures/ into RUN.",
    )
    evaluate.add_argument("run", help="a run folder written by bbh train")
    evaluate.add_argument(
        "--ood", default=None,
        choices=["notmnist", "cifar5-ood", "embedded-notmnist", "none"],
        help="the out-of-distribution set (default: the config's)",
    )  # fmt: skip
    evaluate.add_argument(
        "--attacks", default=None, metavar="LIST",
        help="comma-separated from paper-fgsm, eot-fgsm, eot-pgd; or all (default: the "
        "config's) or none",
    )  # fmt: skip
    evaluate.add_argument(
        "--data-dir", default=None, type=folder, help="data root (default: the run's)"
    )
    evaluate.add_argument(
        "--device", default=None, choices=["cpu", "cuda", "auto"], help="default: cpu"
    )
    evaluate.add_argument("--threads", type=int_at_least(1), default=None, help=threads_help)
    evaluate.add_argument("--quiet", action="store_true", help=quiet_help)

    reproduce = sub.add_parser(
        "reproduce",
        help="train (or reuse), evaluate and report every run of an experiment",
        description="Train or reuse every run of the experiment, evaluate each, and write "
        "report.md and a self-contained report.html into --out. Finished runs of an unchanged "
        "config are reused; changed ones are set aside and retrained.",
    )
    reproduce.add_argument("experiment", choices=["mnist", "cifar5", "toy"])
    reproduce.add_argument("--scale", required=True, choices=["paper", "cpu"], help="paper or cpu")
    reproduce.add_argument(
        "--data-dir",
        default=None,
        type=folder,
        help="data root (default: $BBH_DATA or the user cache)",
    )
    reproduce.add_argument(
        "--out",
        default=None,
        type=folder,
        help="output folder (default: runs/<experiment>-<scale>)",
    )
    reproduce.add_argument("--device", default=None, choices=["cpu", "cuda", "auto"],
                           help="where to train and evaluate (default: cpu)")  # fmt: skip
    reproduce.add_argument(
        "--only", default=None, metavar="RUNS",
        help="comma-separated run names (e.g. map,bbh) instead of all",
    )  # fmt: skip
    reproduce.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                           help="override a value in every run's config (repeatable)")  # fmt: skip
    reproduce.add_argument(
        "--report-only", action="store_true",
        help="train and evaluate nothing: report the runs that are done, list the others",
    )  # fmt: skip
    reproduce.add_argument("--keep-checkpoints", action="store_true",
                           help="keep finished runs' checkpoints (default: deleted)")  # fmt: skip
    reproduce.add_argument("--threads", type=int_at_least(1), default=None, help=threads_help)
    reproduce.add_argument("--quiet", action="store_true", help=quiet_help)

    compare = sub.add_parser(
        "compare",
        help="every method, ours and the peers' (Laplace, IVON, SWAG), on the same work",
        description="Train (or reuse) every row (map, mc_dropout, ensemble, bbb, bbh, laplace, "
        "laplace_all, ivon, swag) on the same net, batches and steps for each seed, score each "
        "by one protocol (accuracy, NLL, Brier, ECE, OOD AUROC, entropy areas, EOT attacks, "
        "dataset shift, accuracy-rejection, time against MAP) and write compare.json, "
        "compare.md, figures and report.html into --out. Finished row-seeds are reused.",
    )
    compare.add_argument("experiment", choices=["mnist", "cifar5", "demo"])
    compare.add_argument(
        "--scale",
        default="cpu",
        choices=["paper", "cpu"],
        help="the configs' scale (default: %(default)s)",
    )
    compare.add_argument(
        "--data-dir",
        default=None,
        type=folder,
        help="data root (default: $BBH_DATA or the user cache)",
    )
    compare.add_argument(
        "--out",
        default=None,
        type=folder,
        help="output folder (default: runs/compare-<experiment>-<scale>)",
    )
    compare.add_argument(
        "--rows",
        nargs="+",
        default=None,
        metavar="ROW",
        help="rows to run (default: all that fit; map is always in)",
    )
    compare.add_argument(
        "--seeds",
        nargs="+",
        type=int,
        default=[0, 1, 2],
        metavar="SEED",
        help="seeds (default: 0 1 2)",
    )
    compare.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a value in every row's config, e.g. train.steps=20",
    )
    compare.add_argument(
        "--quick", action="store_true", help="no attacks and fewer shifts (a smoke run)"
    )
    compare.add_argument("--threads", type=int_at_least(1), default=None, help=threads_help)
    compare.add_argument("--quiet", action="store_true", help=quiet_help)


if __name__ == "__main__":
    raise SystemExit(main())
