"""How a Bayes by Hypernet training step grows with the samples S and the weights D, against MAP.

    python benchmarks/bbh_scaling.py                          # CPU, all configurations
    python benchmarks/bbh_scaling.py --configs chunked --samples 2 8 32 --net-for-S lenet

Part 1, S: every generator x KL estimator of the registries (``cases.registry_grid``; a newly
registered estimator appears here without edits) and every configuration of
``cases.BBH_CONFIGS``, at each S of ``--samples`` (default 1, 2, 4, 8, 16, 32; S = 1 only for the
KL estimators of the posterior, ``jacobian`` and ``sivi``: the others compare samples, and their
S = 1 rows record that error), on ``--net-for-S`` (default LeNet-5): step time against a MAP step
of the same net, interleaved, with the hypernet's parameter count.

Part 2, D: the ``BBH_CONFIGS`` (with ``--configs``: those it picks from both lists) at
their own S (or ``--samples-for-D``) on ResNet-18 at widths 8, 16, 32 and 64 (D = 0.18M to
11.2M), LeNet-5 (0.43M) and the paper's CIFAR ResNet (0.46M). Target: the ratio to MAP flat
within 20% from 431k to 11M weights. Configurations whose hypernet would exceed
``--max-hypernet-params`` are recorded as skipped.

Writes JSON and a two-panel plot (ratio to MAP against D; against S).
"""

from __future__ import annotations

import dataclasses
import gc
import inspect
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import harness
from bbh.methods import BayesByHypernet
from cases import (
    BBH_CONFIGS,
    DEFAULT_MAX_HYPERNET_PARAMS,
    MethodCase,
    label_matches,
    nets,
    registry_grid,
    resnet18_width_cases,
)
from step_time import compare, print_row


def with_samples(case: MethodCase, s: int) -> MethodCase:
    return dataclasses.replace(case, options={**case.options, "num_samples": s})


def main(argv: list[str] | None = None) -> int:
    ap = harness.common_parser(__doc__ or "", "benchmarks/results/bbh_scaling_cpu.json")
    ap.add_argument("--configs", nargs="+", help="substrings of BbH labels (default: all)")
    ap.add_argument("--samples", type=int, nargs="+", default=[1, 2, 4, 8, 16, 32])
    ap.add_argument("--net-for-S", default="lenet", help="net of the S sweep (default: lenet)")
    ap.add_argument(
        "--samples-for-D", type=int, default=None, help="S of the D sweep (default: each one's own)"
    )
    ap.add_argument("--skip-S", action="store_true", help="only the D sweep")
    ap.add_argument("--skip-D", action="store_true", help="only the S sweep")
    ap.add_argument("--max-hypernet-params", type=int, default=DEFAULT_MAX_HYPERNET_PARAMS)
    args = ap.parse_args(argv)
    args.compile, args.no_memory = False, True  # what ``compare`` reads
    if min(args.samples) < 1 or (args.samples_for_D is not None and args.samples_for_D < 1):
        raise SystemExit("--samples and --samples-for-D must be >= 1")
    device, load = harness.setup(args)
    grid = _unique([*BBH_CONFIGS, *registry_grid()])
    s_cases = _filter(grid, args.configs)
    d_cases = s_cases if args.configs else list(BBH_CONFIGS)
    paper_nets = nets(args.scale)
    if args.net_for_S not in paper_nets:
        raise SystemExit(f"--net-for-S: unknown net {args.net_for_S!r}; from {sorted(paper_nets)}")

    by_s: dict[str, list[dict[str, Any]]] = {}
    by_d: dict[str, list[dict[str, Any]]] = {}
    if not args.skip_S:
        net_case = paper_nets[args.net_for_S]
        for case in s_cases:
            by_s[case.label] = []
            for s in args.samples:
                row = {"S": s, **compare(net_case, with_samples(case, s), args, device)}
                by_s[case.label].append(row)
                print_row(case.label, row, f"{net_case.name} S={s}")
                gc.collect()
            harness.write_record(  # kept if the run is cut short (gpu.sh's time limits)
                args.out, _record(args, by_s, by_d, complete=False), device=device, load=load
            )

    if not args.skip_D:
        d_nets = [
            paper_nets["lenet"],
            paper_nets["cifar_resnet"],
            *resnet18_width_cases(args.scale),
        ]
        for case in d_cases:
            by_d[case.label] = []
            for net_case in d_nets:
                weights = harness.count_parameters(net_case.make())
                d_case = (
                    case if args.samples_for_D is None else with_samples(case, args.samples_for_D)
                )
                row = compare(net_case, d_case, args, device)
                by_d[case.label].append({"net": net_case.name, "weights_D": weights, **row})
                print_row(case.label, row, f"{net_case.name} D={weights:,}")
                gc.collect()
            harness.write_record(
                args.out, _record(args, by_s, by_d, complete=False), device=device, load=load
            )

    out, full = harness.write_record(
        args.out, _record(args, by_s, by_d, complete=True), device=device, load=load
    )
    if not args.no_plot:
        import plots

        plots.scaling(full, out.with_suffix(".png"))
    return 0


def _record(
    args: Any, by_s: dict[str, Any], by_d: dict[str, Any], *, complete: bool
) -> dict[str, Any]:
    return {
        "benchmark": "bbh_scaling",
        "complete": complete,
        "scale": args.scale,
        "repeats": args.repeats,
        "net_for_S": args.net_for_S,
        "samples_for_D": args.samples_for_D,
        "by_S": by_s,
        "by_D": by_d,
        "flatness_over_D": {label: _flatness(rows) for label, rows in by_d.items()},
    }


def _flatness(rows: list[dict[str, Any]]) -> dict[str, Any] | None:
    """max / min of the ratio to MAP over the D sweep (target: <= 1.2)."""
    ratios = [r["ratio_to_map"] for r in rows if "ratio_to_map" in r]
    if len(ratios) < 2:
        return None
    return {"max_over_min": max(ratios) / min(ratios), "points": len(ratios)}


def _unique(cases: list[MethodCase]) -> list[MethodCase]:
    """Drop configurations equal to an earlier one once BbH's defaults are filled in."""
    defaults = {
        name: p.default
        for name, p in inspect.signature(BayesByHypernet).parameters.items()
        if p.default is not inspect.Parameter.empty
    }
    seen, out = set(), []
    for case in cases:
        options = {**defaults, **case.options}
        key = tuple(sorted((k, str(getattr(v, "value", v))) for k, v in options.items()))
        if key not in seen:
            seen.add(key)
            out.append(case)
    return out


def _filter(cases: list[MethodCase], patterns: list[str] | None) -> list[MethodCase]:
    if patterns is None:
        return cases
    chosen = [c for c in cases if any(label_matches(p, c.label, cases) for p in patterns)]
    if not chosen:
        raise SystemExit(f"--configs {patterns} matches none of {[c.label for c in cases]}")
    return chosen


if __name__ == "__main__":
    raise SystemExit(main())
