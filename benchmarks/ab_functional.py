"""A/B of the ``bbh.functional`` changes on whole BbH training steps, in one process.

    python benchmarks/ab_functional.py [--nets lenet resnet18] [--repeats 5]

Runs the same BbH step with the current ``ParamSpec.unflatten`` and loop of ``sampled_forward``
and with their earlier forms (a slice per tensor, an index per sample; kept here only for this
comparison), alternating step by step, and records the ratio old / new.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from torch.func import functional_call

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bbh.functional as functional
import harness
from bbh.functional import ParamSpec
from cases import MethodCase, make_training, select_nets

CASES = [
    MethodCase("bbh chunked, entropy, nll=first", "bbh", {"generator": "chunked", "kl": "entropy"}),
    MethodCase(
        "bbh chunked, entropy, nll=mean, loop",
        "bbh",
        {"generator": "chunked", "kl": "entropy", "nll": "mean", "forward_mode": "loop"},
    ),
]


def _old_unflatten(self: ParamSpec, flat: torch.Tensor) -> dict[str, torch.Tensor]:
    s = flat.shape[0]
    return {e.name: flat[:, e.offset : e.offset + e.numel].reshape(s, *e.shape) for e in self}


def _old_forward(net: Any, params: Any, x: Any, *, x_per_sample: bool = False, mode: Any = "auto"):
    s = next(iter(params.values())).shape[0]
    outs = [
        functional_call(net, {k: v[i] for k, v in params.items()}, (x[i] if x_per_sample else x,))
        for i in range(s)
    ]
    return torch.stack(outs)


@contextmanager
def old_functional(enabled: bool) -> Iterator[None]:
    """While inside (if enabled), the earlier unflatten, and the earlier loop for mode=loop."""
    if not enabled:
        yield
        return
    saved_unflatten, saved_forward = ParamSpec.unflatten, functional.sampled_forward
    import bbh.methods.bbh as bbh_method

    def forward(net: Any, params: Any, x: Any, **kw: Any) -> Any:
        one_sample = next(iter(params.values())).shape[0] == 1
        if kw.get("mode") in ("loop", functional.ForwardMode.LOOP) or one_sample:
            return _old_forward(net, params, x, **kw)
        return saved_forward(net, params, x, **kw)

    ParamSpec.unflatten = _old_unflatten  # type: ignore[method-assign]
    bbh_method.sampled_forward = forward  # type: ignore[assignment]
    try:
        yield
    finally:
        ParamSpec.unflatten = saved_unflatten  # type: ignore[method-assign]
        bbh_method.sampled_forward = saved_forward  # type: ignore[assignment]


def main(argv: list[str] | None = None) -> int:
    ap = harness.common_parser(__doc__ or "", "benchmarks/results/ab_functional_cpu.json")
    ap.add_argument("--nets", nargs="+", default=["lenet", "resnet18"])
    args = ap.parse_args(argv)
    device, load = harness.setup(args)
    rows: dict[str, Any] = {}
    for net_case in select_nets(args.nets, args.scale, device):
        for case in CASES:
            training = make_training(case, net_case, device, args.scale)

            def run(old: bool, step: Callable[[], None] = training.step) -> Callable[[], None]:
                def go() -> None:
                    with old_functional(old):
                        step()

                return go

            timed = harness.interleaved(
                {"new": run(False), "old": run(True)},
                repeats=args.repeats,
                warmup=args.warmup,
                device=device,
                baseline="new",
            )
            key = f"{net_case.name}: {case.label}"
            rows[key] = {
                "new_s": timed["new"]["median_s"],
                "old_s": timed["old"]["median_s"],
                "old_over_new": timed["old"]["ratio"],
            }
            print(f"{key:55s} old/new x{timed['old']['ratio']:.2f}", file=sys.stderr, flush=True)
    record = {"benchmark": "ab_functional", "scale": args.scale, "rows": rows}
    harness.write_record(args.out, record, device=device, load=load)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
