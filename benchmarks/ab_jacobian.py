"""A/B of the recommended BbH step's speed work (the Jacobian KL path), in one process.

    python benchmarks/ab_jacobian.py [--nets lenet cifar_resnet] [--repeats 10] [--threads 1]

Alternates, step by step: MAP, the recommended BbH step as it is now, the same with the chunked
generator's Gram in one tile (``CPU_TILE_FLOATS`` unlimited), and the same with the earlier
forms (kept here only for this comparison: tangents through ``generate_with_tangents`` sliced to
``[k, D]`` and ``block_grams``; the output multiplier on the ``[chunk, width]`` weight; the
cross term's ``pow`` and a second ``exp`` for sigma). Records each step's median time, its ratio
to MAP and the ratio earlier / now.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from torch import Tensor, nn

sys.path.insert(0, str(Path(__file__).resolve().parent))

import harness
from bbh.divergences import jacobian
from bbh.hypernets import chunked
from bbh.hypernets.chunked import ChunkedGenerator
from cases import MAP_CASE, MethodCase, make_training, select_nets

RECOMMENDED = MethodCase("bbh recommended", "bbh", {}, {"noise_dim": 4})


def _old_output(self: ChunkedGenerator, h: Tensor, *, bias: bool) -> Tensor:
    out = self._out
    chunks = nn.functional.linear(
        h, out.weight * self.output_multiplier, out.bias if bias else None
    )
    return chunks.reshape(*chunks.shape[:-2], -1)[..., : self.spec.dim]


def _old_kl_forward(self: Any, draw: Any, prior: Any, posterior: Any) -> Tensor:
    mean, sigma = draw.mean, posterior.sigma()
    d, s2 = sigma.numel(), prior.scale**2
    quad = mean.pow(2).sum(-1).mean() + sigma.pow(2).sum()
    cross = 0.5 * quad / s2 + d * (math.log(prior.scale) + 0.5 * math.log(2 * math.pi))
    return cross - jacobian.entropy_linearised(posterior, draw.noise[: self.jacobian_samples])


@contextmanager
def variant(name: str) -> Iterator[None]:
    """``now``: as it is; ``one_tile``: the fused Gram untiled; ``earlier``: the earlier forms."""
    if name == "now":
        yield
        return
    if name == "one_tile":
        saved_tile = chunked.CPU_TILE_FLOATS
        chunked.CPU_TILE_FLOATS = 1 << 62
        try:
            yield
        finally:
            chunked.CPU_TILE_FLOATS = saved_tile
        return
    saved = (
        ChunkedGenerator.jacobian_grams,
        ChunkedGenerator._output,
        jacobian.JacobianKL.forward,
    )
    del ChunkedGenerator.jacobian_grams  # entropy_linearised takes the generic path
    ChunkedGenerator._output = _old_output  # type: ignore[method-assign]
    jacobian.JacobianKL.forward = _old_kl_forward  # type: ignore[method-assign]
    try:
        yield
    finally:
        grams, output, forward = saved
        ChunkedGenerator.jacobian_grams = grams  # type: ignore[method-assign]
        ChunkedGenerator._output = output  # type: ignore[method-assign]
        jacobian.JacobianKL.forward = forward  # type: ignore[method-assign]


def main(argv: list[str] | None = None) -> int:
    ap = harness.common_parser(__doc__ or "", "benchmarks/results/ab_jacobian_cpu.json")
    ap.add_argument("--nets", nargs="+", default=["lenet"])
    args = ap.parse_args(argv)
    device, load = harness.setup(args)
    rows: dict[str, Any] = {}
    for net_case in select_nets(args.nets, args.scale, device):
        map_step = make_training(MAP_CASE, net_case, device, args.scale).step
        training = make_training(RECOMMENDED, net_case, device, args.scale)

        def run(name: str, step: Callable[[], None] = training.step) -> Callable[[], None]:
            def go() -> None:
                with variant(name):
                    step()

            return go

        names = ["now", "one_tile", "earlier"]
        timed = harness.interleaved(
            {"map": map_step, **{n: run(n) for n in names}},
            repeats=args.repeats,
            warmup=args.warmup,
            device=device,
            baseline="map",
        )
        row: dict[str, Any] = {"map_s": timed["map"]["median_s"]}
        for n in names:
            row[f"{n}_s"] = timed[n]["median_s"]
            row[f"{n}_over_map"] = timed[n]["ratio"]
        row["earlier_over_now"] = timed["earlier"]["median_s"] / timed["now"]["median_s"]
        rows[net_case.name] = row
        print(
            f"{net_case.name}: MAP {row['map_s']:.4f} s; BbH now x{row['now_over_map']:.2f}, "
            f"one tile x{row['one_tile_over_map']:.2f}, earlier x{row['earlier_over_map']:.2f}",
            file=sys.stderr,
            flush=True,
        )
    record = {"benchmark": "ab_jacobian", "scale": args.scale, "rows": rows}
    harness.write_record(args.out, record, device=device, load=load)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
