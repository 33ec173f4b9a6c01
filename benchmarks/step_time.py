"""Training-step time and peak memory of every method relative to MAP, on the same net and batch.

    python benchmarks/step_time.py                          # every net and method, CPU
    python benchmarks/step_time.py --nets lenet --methods "bbh chunked" mc_dropout
    python benchmarks/step_time.py --device cuda            # adds ResNet-50
    python benchmarks/step_time.py --list                   # the nets and method labels

A step is ``method.loss`` + ``backward`` + fused Adam on one fixed batch. For each method a MAP
training of the same net runs beside it and the two alternate step by step (MAP, method, MAP,
method, ...) for ``--repeats`` rounds after ``--warmup``; the record keeps MAP's absolute step
time, both medians and the median of the per-round ratios. Memory: the peak of one step,
parameters and optimizer state included (``harness.peak_step_memory``: profiler memory events on
a CPU, ``max_memory_allocated`` on CUDA), against MAP's. ``--compile`` also times each method with
``torch.compile`` on its loss (compile time recorded apart). Hypernets larger than
``--max-hypernet-params`` (the paper's layer-wise generator on ResNet-18: 5.7 billion) are
recorded as skipped. Nets, methods and BbH configurations are listed in ``benchmarks/cases.py``.

Refuses to run when the load average is above the core count (exit status 3) unless
``--allow-busy``, which marks the record busy. Writes JSON and a bar chart (``--no-plot``: JSON
only).
"""

from __future__ import annotations

import gc
import sys
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

import harness
from cases import (
    DEFAULT_MAX_HYPERNET_PARAMS,
    MAP_CASE,
    MethodCase,
    NetCase,
    Training,
    all_methods,
    hypernet_parameters,
    make_training,
    nets,
    planned_parameters,
    select_methods,
    select_nets,
)


def compare(
    net_case: NetCase,
    case: MethodCase,
    args: Any,
    device: torch.device,
) -> dict[str, Any]:
    """One method against MAP on one net: step times, ratio, memory, parameter counts.

    A configuration that cannot run here (e.g. ``nll="split"`` with fewer examples than
    samples, or out of memory) is recorded as ``{"error": message}`` and the run goes on.
    """
    try:
        return _compare(net_case, case, args, device)
    except (ValueError, RuntimeError) as err:  # torch.OutOfMemoryError is a RuntimeError
        return {"error": f"{type(err).__name__}: {err}"[:500]}


def _compare(
    net_case: NetCase, case: MethodCase, args: Any, device: torch.device
) -> dict[str, Any]:
    skip = case.skip_reason(net_case)
    if skip is not None:
        return {"skipped": skip}
    planned = planned_parameters(case, net_case.make(), args.scale)
    limit = args.max_hypernet_params
    if case.name == "bbh" and planned > limit:
        return {"skipped": f"{planned:,} trainable parameters > --max-hypernet-params {limit:,}"}
    net = net_case.make()
    baseline = make_training(MAP_CASE, net_case, device, args.scale, net=net)
    training = make_training(case, net_case, device, args.scale, net=net)
    hypernet = hypernet_parameters(training.method)
    row: dict[str, Any] = {
        "trainable_parameters": harness.count_parameters(training.method),
        "hypernet_parameters": hypernet,
        "hypernet_to_net": None if hypernet is None else hypernet / harness.count_parameters(net),
    }
    timed = harness.interleaved(
        {"map": baseline.step, "method": training.step},
        repeats=args.repeats,
        warmup=args.warmup,
        device=device,
        baseline="map",
    )
    row.update(
        map_step_s=timed["map"]["median_s"],
        step_s=timed["method"]["median_s"],
        ratio_to_map=timed["method"]["ratio"],
    )
    if args.compile:
        row["compiled"] = _compiled(baseline, training, args, device)
    if not args.no_memory:
        map_mem = harness.peak_step_memory(
            baseline.step, baseline.method, baseline.optimizer, device
        )
        mem = harness.peak_step_memory(training.step, training.method, training.optimizer, device)
        row.update(
            map_peak_bytes=map_mem["peak_bytes"],
            peak_bytes=mem["peak_bytes"],
            memory_ratio_to_map=mem["peak_bytes"] / map_mem["peak_bytes"],
            memory_how=mem["how"],
        )
    return row


def _compiled(baseline: Training, training: Training, args: Any, device: torch.device) -> Any:
    """Eager and ``torch.compile``d steps of MAP and the method, all four interleaved.

    ``first_call_s`` is the compile time (the first compiled step); ``speedup`` is the eager
    step time over the compiled one for the method, ``map_speedup`` the same for MAP.
    """
    try:
        compiled = {}
        first_call = {}
        for name, t in (("map", baseline), ("method", training)):
            fn = torch.compile(t.method.loss)
            start = time.perf_counter()
            t.step_with(fn)
            harness.synchronize(device)
            first_call[name] = time.perf_counter() - start
            compiled[name] = fn
        timed = harness.interleaved(
            {
                "map": baseline.step,
                "method": training.step,
                "map_compiled": lambda: baseline.step_with(compiled["map"]),
                "method_compiled": lambda: training.step_with(compiled["method"]),
            },
            repeats=args.repeats,
            warmup=args.warmup,
            device=device,
            baseline="map",
        )
    except Exception as err:  # compile support varies by torch version and platform
        return {"error": f"{type(err).__name__}: {err}"[:500]}
    return {
        "step_s": timed["method_compiled"]["median_s"],
        "map_step_s": timed["map_compiled"]["median_s"],
        "ratio_to_eager_map": timed["method_compiled"]["ratio"],
        "ratio_to_compiled_map": timed["method_compiled"]["median_s"]
        / timed["map_compiled"]["median_s"],
        "speedup": timed["method"]["ratio"] / timed["method_compiled"]["ratio"],
        "map_speedup": 1.0 / timed["map_compiled"]["ratio"],
        "first_call_s": first_call,
    }


def main(argv: list[str] | None = None) -> int:
    ap = harness.common_parser(__doc__ or "", "benchmarks/results/step_time_cpu.json")
    ap.add_argument("--nets", nargs="+", help="nets to run (default: all for the device)")
    ap.add_argument("--methods", nargs="+", help="substrings of method labels (default: all)")
    ap.add_argument("--compile", action="store_true", help="also time torch.compile'd losses")
    ap.add_argument("--no-memory", action="store_true", help="skip the peak-memory measurement")
    ap.add_argument(
        "--max-hypernet-params",
        type=int,
        default=DEFAULT_MAX_HYPERNET_PARAMS,
        help="skip BbH configurations with more trainable parameters (default: %(default)s)",
    )
    ap.add_argument("--list", action="store_true", help="print the nets and methods, then exit")
    args = ap.parse_args(argv)
    if args.list:
        for scale in ("paper", "tiny"):
            for c in nets(scale).values():
                print(f"net {c.name:14s} [{scale}] {c.description}")
        for m in all_methods():
            print(f"method {m.label!r}: {m.name} {m.options}")
        return 0
    device, load = harness.setup(args)
    net_cases = select_nets(args.nets, args.scale, device)
    cases = select_methods(args.methods)
    results: dict[str, Any] = {}
    for net_case in net_cases:
        rows: dict[str, Any] = {}
        weights = harness.count_parameters(net_case.make())
        for case in cases:
            print(f"{net_case.name}: {case.label} ...", file=sys.stderr, flush=True)
            rows[case.label] = compare(net_case, case, args, device)
            print_row(case.label, rows[case.label])
            gc.collect()
            if device.type == "cuda":
                torch.cuda.empty_cache()
            results[net_case.name] = {
                "net": net_case.description,
                "batch_size": net_case.batch_size,
                "weights_D": weights,
                "methods": rows,
            }
            # after every method, so a run cut short (gpu.sh's time limits) keeps what it measured
            out, full = harness.write_record(
                args.out, _record(args, results, complete=False), device=device, load=load
            )
    out, full = harness.write_record(
        args.out, _record(args, results, complete=True), device=device, load=load
    )
    if not args.no_plot:
        import plots

        plots.step_time(full, out.with_suffix(".png"))
    return 0


def _record(args: Any, results: dict[str, Any], *, complete: bool) -> dict[str, Any]:
    return {
        "benchmark": "step_time",
        "complete": complete,
        "scale": args.scale,
        "repeats": args.repeats,
        "timing": "medians of interleaved rounds (MAP, method, MAP, method, ...); ratio = median "
        "of per-round ratios",
        "nets": results,
    }


def print_row(label: str, row: dict[str, Any], where: str = "") -> None:
    """One line per comparison on stderr: the ratio to MAP, or why there is none."""
    head = f"{where:28s} {label:50s}" if where else f"  {label:50s}"
    if "skipped" in row or "error" in row:
        why = row.get("skipped") or f"error: {row['error']}"
        print(f"{head} {why}", file=sys.stderr, flush=True)
        return
    extra = []
    if row.get("hypernet_parameters") is not None:
        extra.append(f"hypernet {row['hypernet_parameters']:,}")
    if "memory_ratio_to_map" in row:
        extra.append(f"memory x{row['memory_ratio_to_map']:.2f}")
    print(
        f"{head} x{row['ratio_to_map']:.2f}  ({row['step_s'] * 1e3:.1f} ms vs MAP "
        f"{row['map_step_s'] * 1e3:.1f} ms) " + "  ".join(extra),
        file=sys.stderr,
        flush=True,
    )


if __name__ == "__main__":
    raise SystemExit(main())
