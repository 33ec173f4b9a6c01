"""What the reliability checks cost a training step: ``fit`` with and without them, interleaved.

    python benchmarks/check_overhead.py --out runs/bench/check_overhead.json

"with" is ``bbh.training.fit`` as it ships: the structural checks of every ``loss`` call
(``Method.check_batch``: types, dtype, device, the cached shape check) and the ``TrainingGuard``
(device-side non-finite flag, KL and NLL trackers). "without" replaces both by no-ops (the
guard's hooks do nothing; ``check_batch`` returns its inputs), i.e. the loop before issue 10
minus its per-log finiteness check. The up-front data check and the log-interval work happen
once per run, not per step, and are excluded by timing ``fit`` runs of two lengths and taking
the difference per step. The arms alternate in every repeat (order flipped each time), so a
change of machine load hits both; the JSON records the load average before and after.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import os
import platform
import statistics
import time
from collections.abc import Iterator
from typing import Any

import torch

import bbh.training.loop as loop
from bbh.methods import Method, build
from bbh.nets import MLP
from bbh.nets.lenet import LeNet5
from bbh.training import fit

CASES: dict[str, tuple[str, Any, dict[str, Any]]] = {
    "bbh-mlp": ("bbh", lambda: MLP(784, [100], 10), {"generator": "chunked", "kl": "entropy"}),
    "map-lenet": ("map", LeNet5, {}),
    "bbh-lenet": ("bbh", LeNet5, {"generator": "chunked", "kl": "entropy"}),
}


class _NoGuard:
    def __init__(self, *args: object, **kwargs: object) -> None:
        pass

    def after_backward(self, *args: object) -> None:
        pass

    def at_log(self, *args: object) -> None:
        pass


@contextlib.contextmanager
def checks_off() -> Iterator[None]:
    saved_guard, saved_check = loop.TrainingGuard, Method.check_batch
    loop.TrainingGuard = _NoGuard  # type: ignore[assignment,misc]
    Method.check_batch = lambda self, x, y, **kwargs: (x, y)  # type: ignore[method-assign]
    try:
        yield
    finally:
        loop.TrainingGuard = saved_guard  # type: ignore[misc]
        Method.check_batch = saved_check  # type: ignore[method-assign]


def per_step(method: Method, x: torch.Tensor, y: torch.Tensor, short: int, long: int) -> float:
    """Seconds per step: (time of ``long`` steps - time of ``short`` steps) / (long - short)."""
    times = []
    for steps in (short, long):
        model = copy.deepcopy(method)
        start = time.perf_counter()
        fit(model, x, y, steps=steps, batch_size=100, num_data=60_000, log_every=10**9)
        times.append(time.perf_counter() - start)
    return (times[1] - times[0]) / (long - short)


def component_ms(method: Method, x: torch.Tensor, y: torch.Tensor, repeats: int = 200) -> dict:
    """Milliseconds per call of the per-step pieces: ``check_batch`` (inside
    ``values_prechecked``, as in ``fit``), the guard's ``after_backward``, and one whole step."""
    from bbh.training.guards import TrainingGuard
    from bbh.validation import values_prechecked

    xb, yb = x[:100], y[:100]
    params = [p for p in method.parameters() if p.requires_grad]
    opt = loop.make_optimizer(params, "adam", 1e-3)
    guard = TrainingGuard(method, opt, num_data=60_000)

    def step() -> None:
        loss, _ = method.loss(xb, yb, num_data=60_000)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    step()
    loss, logs = method.loss(xb, yb, num_data=60_000)
    loss.backward()
    out: dict[str, float] = {}
    with values_prechecked():
        for label, fn, n in (
            (
                "check_batch",
                lambda: method.check_batch(xb, yb, num_data=60_000, kl_weight=1.0),
                10 * repeats,
            ),
            ("guard_after_backward", lambda: guard.after_backward(1, loss, logs), repeats),
            ("whole_step", step, max(repeats // 20, 3)),
        ):
            start = time.perf_counter()
            for _ in range(n):
                fn()
            out[label] = 1e3 * (time.perf_counter() - start) / n
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="runs/bench/check_overhead.json")
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--short", type=int, default=5)
    ap.add_argument("--long", type=int, default=25)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--cases", default=",".join(CASES), help="comma-separated case labels")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    x, y = torch.rand(1000, 1, 28, 28), torch.randint(0, 10, (1000,))
    load_before = os.getloadavg()
    rows: dict[str, Any] = {}
    for label in args.cases.split(","):
        name, make_net, options = CASES[label]
        method = build(name, make_net(), **options)
        per_step(method, x, y, 1, 2)  # warm-up
        with_checks, without = [], []
        for rep in range(args.repeats):
            for arm in ("with", "without") if rep % 2 == 0 else ("without", "with"):
                if arm == "with":
                    with_checks.append(per_step(method, x, y, args.short, args.long))
                else:
                    with checks_off():
                        without.append(per_step(method, x, y, args.short, args.long))
        ratios = [a / b for a, b in zip(with_checks, without, strict=True)]
        parts = component_ms(method, x, y)
        rows[label] = {
            "method": name,
            "net": type(make_net()).__name__,
            "options": options,
            "seconds_per_step_with": statistics.median(with_checks),
            "seconds_per_step_without": statistics.median(without),
            "ratio_median": statistics.median(ratios),
            "ratio_min_max": [min(ratios), max(ratios)],
            "ratios": ratios,
            "components_ms": parts,
            "component_share_of_step": (parts["check_batch"] + parts["guard_after_backward"])
            / parts["whole_step"],
        }
        print(label, json.dumps(rows[label]), flush=True)
    result = {
        "machine": {
            "platform": platform.platform(),
            "cpu_count": os.cpu_count(),
            "threads": args.threads,
            "torch": torch.__version__,
            "load_average_1_5_15_before": load_before,
            "load_average_1_5_15_after": os.getloadavg(),
        },
        "batch": 100,
        "steps": [args.short, args.long],
        "repeats": args.repeats,
        "cases": rows,
    }
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    from bbh.io import write_json

    write_json(args.out, result)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
