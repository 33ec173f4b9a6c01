"""vmap against a loop over weight samples in ``bbh.functional.sampled_forward``.

    python benchmarks/sampled_forward.py                 # CPU, the nets below, S = 5 and 20
    python benchmarks/sampled_forward.py --device cuda

For each net and S: forward + backward with every sample seeing the whole batch ("shared"), with
the batch split between the samples ("split", ``x_per_sample``), and a no-grad forward
("predict"), each in both modes, interleaved. The record also says which mode ``auto`` picks, so
``CPU_VMAP_MAX_WORK`` in ``bbh.functional`` can be checked against the measurement on any machine.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))

import harness
from bbh.functional import ParamSpec, auto_forward_mode, sampled_forward
from bbh.nets import MLP, CifarResNet, LeNet5, resnet18


def _nets(scale: str) -> list[tuple[str, nn.Module, tuple[int, ...], int]]:
    if scale == "tiny":
        return [
            ("toy 1-100-1", MLP(1, [100], 1), (1,), 20),
            ("lenet", LeNet5(), (1, 28, 28), 10),
        ]
    return [
        ("toy 1-100-1", MLP(1, [100], 1), (1,), 20),
        ("mlp 784-400-400-10", MLP(784, [400, 400], 10), (784,), 100),
        ("lenet", LeNet5(), (1, 28, 28), 100),
        ("cifar_resnet", CifarResNet(5), (3, 24, 24), 100),
        ("resnet18 w16 (instance norm)", resnet18(10, width=16, norm="instance"), (3, 32, 32), 120),
    ]


def main(argv: list[str] | None = None) -> int:
    ap = harness.common_parser(__doc__ or "", "benchmarks/results/sampled_forward_cpu.json")
    ap.add_argument("--samples", type=int, nargs="+", default=[5, 20], help="values of S")
    args = ap.parse_args(argv)
    device, load = harness.setup(args)
    rows = []
    for name, net, shape, batch in _nets(args.scale):
        net = net.to(device)
        spec = ParamSpec.from_module(net)
        for s in args.samples:
            flat = spec.from_module_values(net).expand(s, -1).clone().requires_grad_(True)
            x = torch.rand(batch, *shape, device=device)
            xs = torch.rand(s, max(batch // s, 1), *shape, device=device)
            fns = {}
            for mode in ("loop", "vmap"):
                fns[f"shared/{mode}"] = _train(net, spec, flat, x, False, mode)
                fns[f"split/{mode}"] = _train(net, spec, flat, xs, True, mode)
                fns[f"predict/{mode}"] = _predict(net, spec, flat, x, mode)
            timed = harness.interleaved(
                fns, repeats=args.repeats, warmup=args.warmup, device=device
            )
            row: dict[str, Any] = {"net": name, "S": s, "batch": batch, "weights_D": spec.dim}
            for kind, examples in (("shared", batch), ("split", xs.shape[1]), ("predict", batch)):
                loop, vm = timed[f"{kind}/loop"]["median_s"], timed[f"{kind}/vmap"]["median_s"]
                auto = auto_forward_mode(net, s, examples, spec.dim, device).value
                row[kind] = {
                    "loop_s": loop,
                    "vmap_s": vm,
                    "vmap_over_loop": vm / loop,
                    "auto": auto,
                }
            rows.append(row)
            print(
                f"{name:30s} S={s:3d} "
                + "  ".join(
                    f"{k}: vmap/loop {row[k]['vmap_over_loop']:.2f} (auto {row[k]['auto']})"
                    for k in ("shared", "split", "predict")
                ),
                file=sys.stderr,
                flush=True,
            )
    record = {"benchmark": "sampled_forward", "scale": args.scale, "rows": rows}
    harness.write_record(args.out, record, device=device, load=load)
    return 0


def _train(net: nn.Module, spec: ParamSpec, flat: torch.Tensor, x: Any, per: bool, mode: str):
    def step() -> None:
        out = sampled_forward(net, spec.unflatten(flat), x, x_per_sample=per, mode=mode)
        out.sum().backward()

    return step


def _predict(net: nn.Module, spec: ParamSpec, flat: torch.Tensor, x: torch.Tensor, mode: str):
    def run() -> None:
        with torch.no_grad():
            sampled_forward(net, spec.unflatten(flat), x, mode=mode)

    return run


if __name__ == "__main__":
    raise SystemExit(main())
