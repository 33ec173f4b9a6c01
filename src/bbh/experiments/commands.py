"""The experiment subcommands of ``bbh`` (demo, configs, train, finetune, evaluate, reproduce,
compare).

Each returns 0 when done; bad input raises (``bbh.cli.main`` prints one line and exits 2); an
interrupted training run exits 130 (a checkpoint was saved).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

from bbh.experiments.config import ConfigError, ToyConfig, config_to_dict, list_configs, load_config


def run(args: argparse.Namespace) -> int:
    """Run an experiment subcommand; errors propagate to ``bbh.cli.main`` (one line, status 2)
    except an interrupted training run (status 130, with where its checkpoint is)."""
    from bbh.experiments.train import RunInterrupted

    handlers: dict[str, Callable[[argparse.Namespace], int]] = {
        "demo": _demo,
        "configs": _configs,
        "train": _train,
        "evaluate": _evaluate,
        "finetune": _finetune,
        "reproduce": _reproduce,
        "compare": _compare,
    }
    try:
        return handlers[args.command](args)
    except RunInterrupted as stop:
        print(f"bbh {args.command}: {stop}", file=sys.stderr)
        return 130


def _threads(args: argparse.Namespace) -> list[str]:
    return [] if args.threads is None else [f"train.threads={args.threads}"]


def _demo(args: argparse.Namespace) -> int:
    from bbh.experiments.demo import demo_table, run_demo

    start = time.monotonic()
    result = run_demo(args.out, overrides=_threads(args), progress=not args.quiet)
    print(demo_table(result.rows))
    print(f"report: {result.report_html} (and report.md); {time.monotonic() - start:.0f} s")
    return 0


def _configs(args: argparse.Namespace) -> int:
    if args.name is None:
        for name in list_configs():
            print(name)
        return 0
    cfg = load_config(args.name, scale=args.scale, overrides=args.set)
    print(json.dumps(config_to_dict(cfg), indent=2))
    return 0


def _train(args: argparse.Namespace) -> int:
    from bbh.experiments.train import RunInterrupted, resolve_device, train_run, with_data_root
    from bbh.training.distributed import (
        env_world_size,
        is_reported_by_main,
        process_group_from_env,
    )

    cfg = load_config(args.config, scale=args.scale, overrides=[*args.set, *_threads(args)])
    out = args.out or f"runs/{cfg.name.replace('/', '-')}-{args.scale}"
    if isinstance(cfg, ToyConfig):
        if args.resume:
            raise ConfigError(f"{args.config}: the toy has no checkpoints to resume")
        if env_world_size() > 1:
            raise ConfigError(f"{args.config}: the toy trains in one process, not under torchrun")
        from bbh.experiments.reproduce import _toy

        _toy(cfg, Path(out), lambda text: print(text, file=sys.stderr))
        print(f"wrote {out}/metrics.json and {out}/toy.png")
        return 0
    cfg = with_data_root(cfg, args.data_dir)
    device = resolve_device(args.device or cfg.train.device)
    dist = cfg.distributed
    try:  # under torchrun: join the process group, train, leave it
        with process_group_from_env(dist.backend, device, dist.timeout_s):
            outcome = train_run(
                cfg, out, device=args.device, resume=args.resume, progress=not args.quiet
            )
    except Exception as exc:
        if is_reported_by_main(exc):  # rank 0 raises the same error and says it
            return 130 if isinstance(exc, RunInterrupted) else 2
        raise
    if outcome.rank != 0:
        return 0
    if outcome.status == "already finished":
        print(f"{out} already holds this finished run (nothing to do); evaluate it with "
              f"bbh evaluate {out}")  # fmt: skip
        return 0
    print(f"{outcome.status} {cfg.name}: {outcome.steps} steps in {outcome.seconds:.1f} s; "
          f"model in {out}/model.pt")  # fmt: skip
    return 0


def _finetune(args: argparse.Namespace) -> int:
    from bbh.experiments.finetune import default_out, finetune_run

    out = args.out or default_out(args.source, args.method)
    outcome = finetune_run(
        args.source,
        args.method,
        out,
        epochs=args.epochs,
        steps=args.steps,
        overrides=[*args.set, *_threads(args)],
        config=args.config,
        scale=args.scale,
        data_dir=args.data_dir,
        device=args.device,
        progress=not args.quiet,
    )
    if outcome.status == "already finished":
        print(f"{out} already holds this finished fine-tune (nothing to do); evaluate it with "
              f"bbh evaluate {out}")  # fmt: skip
        return 0
    print(f"{outcome.status} {args.method} from {args.source}: {outcome.steps} steps in "
          f"{outcome.seconds:.1f} s; model in {out}/model.pt")  # fmt: skip
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from bbh.experiments.evaluate import evaluate_run, parse_attacks
    from bbh.experiments.report import RunRow, main_table, read_row, text_table
    from bbh.experiments.runs import RunFolder

    attacks = parse_attacks(args.attacks)
    evaluate_run(
        args.run,
        ood=args.ood,
        attacks=attacks,
        data_dir=args.data_dir,
        device=args.device,
        threads=args.threads,
        progress=not args.quiet,
    )
    folder = RunFolder.at(args.run)
    row: RunRow = read_row(folder.path.name, folder)
    print(text_table(*main_table([row])))
    print(f"wrote {folder.evaluation_file} and {len(row.figures)} figures in {folder.figures}")
    return 0


def _reproduce(args: argparse.Namespace) -> int:
    from bbh.experiments.report import main_table, text_table
    from bbh.experiments.reproduce import reproduce

    out = args.out or f"runs/{args.experiment}-{args.scale}"
    only = [s.strip() for s in args.only.split(",") if s.strip()] if args.only else None
    start = time.monotonic()
    result = reproduce(
        args.experiment,
        scale=args.scale,
        out=out,
        data_dir=args.data_dir,
        device=args.device,
        only=only,
        overrides=[*args.set, *_threads(args)],
        keep_checkpoints=args.keep_checkpoints,
        report_only=args.report_only,
        progress=not args.quiet,
    )
    if result.rows:
        print(text_table(*main_table(result.rows)))
    print(f"report: {result.report_html} (and report.md); {time.monotonic() - start:.0f} s")
    return 0


def _compare(args: argparse.Namespace) -> int:
    from bbh.experiments.compare import compare
    from bbh.experiments.compare_report import terminal_tables

    out = args.out or f"runs/compare-{args.experiment}-{args.scale}"
    start = time.monotonic()
    result = compare(
        args.experiment,
        scale=args.scale,
        out=out,
        data_dir=args.data_dir,
        rows=args.rows,
        seeds=args.seeds,
        threads=args.threads,
        quick=args.quick,
        overrides=args.set,
        progress=not args.quiet,
    )
    print(terminal_tables(result.files["compare.json"]))
    print(
        f"wrote {out}/compare.json, compare.md, report.html and figures/; "
        f"{time.monotonic() - start:.0f} s"
    )
    return 0
