"""Prediction throughput: S weight samples of each method against S MAP passes and against one.

    python benchmarks/predict.py                      # S = 100, every net and method, CPU
    python benchmarks/predict.py --nets lenet --methods "bbh chunked" mc_dropout --samples 30
    python benchmarks/predict.py --nets lenet --batches 20     # a data set of 20 batches

Each method runs ``predict_logits(x, S)`` in eval mode without gradients on the net's batch;
beside it, interleaved, MAP runs S forward passes of the same batch (a loop, as a user would)
and one pass, and S passes cycling 25 independently initialised MAP nets (weights that change
every pass, as a sampling method's do: the same net's stay in cache). With ``--batches N`` the
input is a data set of N batches: each method predicts it through
``bbh.evaluation.predict_batched`` (what ``bbh evaluate`` uses: BbH and BbB draw their S weight
samples once for all batches) and MAP runs S passes over every batch. The record gives each
method's time per weight sample (time / the number of draws it returned: an ensemble returns
its M members whatever S is) and its ratios to the S MAP passes (of one net, and of the 25),
and to one MAP pass.
Target: per sample no slower than a MAP pass (ratio to S passes <= 1).
"""

from __future__ import annotations

import gc
import sys
from pathlib import Path
from typing import Any

import torch

from bbh.evaluation import predict_batched

sys.path.insert(0, str(Path(__file__).resolve().parent))

import harness
from cases import (
    DEFAULT_MAX_HYPERNET_PARAMS,
    MAP_CASE,
    planned_parameters,
    select_methods,
    select_nets,
)

#: independent MAP nets cycled for the baseline whose weights change every pass (LeNet-5 on this
#: CPU: 100 such passes cost 1.26x 100 passes of one net, whose weights stay in cache)
FRESH_NETS = 25


def main(argv: list[str] | None = None) -> int:
    ap = harness.common_parser(__doc__ or "", "benchmarks/results/predict_cpu.json")
    ap.add_argument("--nets", nargs="+", help="nets to run (default: all for the device)")
    ap.add_argument("--methods", nargs="+", help="substrings of method labels (default: all)")
    ap.add_argument("--samples", type=int, default=100, help="weight samples S (default: 100)")
    ap.add_argument("--max-hypernet-params", type=int, default=DEFAULT_MAX_HYPERNET_PARAMS)
    ap.add_argument(
        "--batches", type=int, default=1, help="batches in the predicted data set (default: 1)"
    )
    args = ap.parse_args(argv)
    if args.samples < 1:
        raise SystemExit(f"--samples must be >= 1, got {args.samples}")
    if args.batches < 1:
        raise SystemExit(f"--batches must be >= 1, got {args.batches}")
    device, load = harness.setup(args)
    s = args.samples
    results: dict[str, Any] = {}
    for net_case in select_nets(args.nets, args.scale, device):
        xs = [net_case.batch(device, seed=i)[0] for i in range(args.batches)]
        x = xs[0]
        map_net = MAP_CASE.build(net_case.make(), args.scale).to(device).eval().net
        # the same net with FRESH_NETS independent weight sets, cycled: S passes in which the
        # weights change every pass, as a sampling method's do (no weights kept hot in cache)
        torch.manual_seed(1)
        fresh_nets = [
            MAP_CASE.build(net_case.make(), args.scale).to(device).eval().net
            for _ in range(min(FRESH_NETS, s))
        ]
        rows: dict[str, Any] = {}
        for case in select_methods(args.methods):
            skip = case.skip_reason(net_case)
            if skip is not None:
                rows[case.label] = {"skipped": skip}
                continue
            planned = planned_parameters(case, net_case.make(), args.scale)
            if case.name == "bbh" and planned > args.max_hypernet_params:
                rows[case.label] = {"skipped": f"{planned:,} trainable parameters"}
                continue
            torch.manual_seed(0)
            method = case.build(net_case.make(), args.scale).to(device).eval()
            with torch.no_grad():
                draws = method.predict_logits(x, s).shape[0]
            timed = _time(method, map_net, fresh_nets, xs, s, args, device)
            per_sample = timed["method"]["median_s"] / draws
            map_pass = timed["map_1"]["median_s"]
            rows[case.label] = {
                "draws": draws,
                "seconds": timed["method"]["median_s"],
                "per_sample_s": per_sample,
                "ratio_to_map_passes": timed["method"]["median_s"]
                / (timed["map_S"]["median_s"] * draws / s),
                "ratio_to_one_map_pass": timed["method"]["median_s"] / map_pass,
                "map_S_passes_s": timed["map_S"]["median_s"],
                "ratio_to_fresh_map_passes": timed["method"]["median_s"]
                / (timed["map_S_fresh"]["median_s"] * draws / s),
                "map_S_fresh_passes_s": timed["map_S_fresh"]["median_s"],
            }
            print(
                f"{net_case.name}: {case.label:48s} {per_sample * 1e3:8.2f} ms/sample  "
                f"x{rows[case.label]['ratio_to_map_passes']:.2f} of {draws} MAP passes, "
                f"x{rows[case.label]['ratio_to_fresh_map_passes']:.2f} of {draws} passes of "
                f"{len(fresh_nets)} MAP nets, x{rows[case.label]['ratio_to_one_map_pass']:.1f} "
                "of one",
                file=sys.stderr,
                flush=True,
            )
            del method
            gc.collect()
        results[net_case.name] = {
            "net": net_case.description,
            "batch_size": net_case.batch_size,
            "batches": args.batches,
            "map_per_pass_s": timed["map_1"]["median_s"] if rows else None,
            "methods": rows,
        }
        harness.write_record(  # kept if the run is cut short (gpu.sh's time limits)
            args.out, _record(s, args, results, complete=False), device=device, load=load
        )
    out, full = harness.write_record(
        args.out, _record(s, args, results, complete=True), device=device, load=load
    )
    if not args.no_plot:
        import plots

        plots.predict(full, out.with_suffix(".png"))
    return 0


def _record(s: int, args: Any, results: dict[str, Any], *, complete: bool) -> dict[str, Any]:
    return {
        "benchmark": "predict",
        "complete": complete,
        "scale": args.scale,
        "num_samples": s,
        "timing": "medians of interleaved rounds, the order rotating (method, S MAP passes, S "
        "passes cycling FRESH_NETS MAP nets, one MAP pass)".replace("FRESH_NETS", str(FRESH_NETS)),
        "nets": results,
    }


def _time(
    method: Any,
    map_net: Any,
    fresh_nets: list[Any],
    xs: list[torch.Tensor],
    s: int,
    args: Any,
    device: Any,
) -> Any:
    """Interleaved medians; with several batches every timing covers all of them (the
    per-pass and per-sample figures are then per pass over the data set)."""
    data = torch.cat(xs)

    @torch.no_grad()
    def run_method() -> None:
        if len(xs) == 1:
            method.predict_logits(xs[0], s)
        else:
            predict_batched(method, data, num_samples=s, batch_size=xs[0].shape[0])

    @torch.no_grad()
    def map_s() -> None:
        for x in xs:
            for _ in range(s):
                map_net(x)

    @torch.no_grad()
    def map_s_fresh() -> None:
        for x in xs:
            for i in range(s):
                fresh_nets[i % len(fresh_nets)](x)

    @torch.no_grad()
    def map_1() -> None:
        for x in xs:
            map_net(x)

    return harness.interleaved(
        {"method": run_method, "map_S": map_s, "map_S_fresh": map_s_fresh, "map_1": map_1},
        repeats=args.repeats,
        warmup=args.warmup,
        device=device,
    )


if __name__ == "__main__":
    raise SystemExit(main())
