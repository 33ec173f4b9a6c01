"""Where a training step's time goes: ``torch.profiler`` tables of one method's step, and MAP's.

    python benchmarks/profile_step.py --net lenet --method "bbh chunked, entropy"
    python benchmarks/profile_step.py --net resnet18 --method mnf --device cuda

Profiles ``--steps`` steps after warm-up, prints the top operators by self time and writes them
(with the step's wall time against MAP's) to JSON. ``--method`` is a substring of a label in
``benchmarks/cases.py`` (``python benchmarks/step_time.py --list`` prints them).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from torch.profiler import ProfilerActivity, profile, record_function

import harness
from cases import MAP_CASE, make_training, select_methods, select_nets


def profile_training(training: Any, steps: int, device: Any, top: int) -> dict[str, Any]:
    activities = [ProfilerActivity.CPU]
    if device.type == "cuda":
        activities.append(ProfilerActivity.CUDA)
    for _ in range(2):
        training.step()
    harness.synchronize(device)
    with profile(activities=activities) as prof:
        start = time.perf_counter()
        for _ in range(steps):
            with record_function("training_step"):
                training.step()
        harness.synchronize(device)
        wall = (time.perf_counter() - start) / steps
    averages = prof.key_averages()
    sort = "self_cpu_time_total"
    if device.type == "cuda":  # renamed from self_cuda_time_total in newer torch
        sort = next(
            (
                k
                for k in ("self_device_time_total", "self_cuda_time_total")
                if hasattr(averages[0], k)
            ),
            sort,
        )
    table = averages.table(sort_by=sort, row_limit=top)
    rows = []
    for e in sorted(averages, key=lambda e: -getattr(e, sort))[:top]:
        rows.append(
            {
                "op": e.key,
                "calls_per_step": e.count / steps,
                "self_cpu_ms_per_step": e.self_cpu_time_total / 1e3 / steps,
                "cpu_total_ms_per_step": e.cpu_time_total / 1e3 / steps,
            }
        )
    return {"step_s_profiled": wall, "top_ops": rows, "table": table}


def main(argv: list[str] | None = None) -> int:
    ap = harness.common_parser(__doc__ or "", "benchmarks/results/profile.json")
    ap.add_argument("--net", default="lenet", help="a net of benchmarks/cases.py")
    ap.add_argument("--method", required=True, help="substring of a method label")
    ap.add_argument("--steps", type=int, default=5, help="profiled steps (default: %(default)s)")
    ap.add_argument("--top", type=int, default=25, help="operators listed (default: %(default)s)")
    args = ap.parse_args(argv)
    device, load = harness.setup(args)
    (net_case,) = select_nets([args.net], args.scale, device)
    cases = select_methods([args.method])
    record: dict[str, Any] = {"net": net_case.description, "profiles": {}}
    for case in [MAP_CASE, cases[0]]:
        training = make_training(case, net_case, device, args.scale)
        result = profile_training(training, args.steps, device, args.top)
        print(f"== {case.label} on {net_case.name}: {result['step_s_profiled']:.4f} s/step")
        print(result.pop("table"))
        record["profiles"][case.label] = result
    harness.write_record(args.out, record, device=device, load=load)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
