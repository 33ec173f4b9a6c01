"""Sequence nets under weight samples: attention (loop vs vmap) and an LSTM classifier vs MAP.

    python benchmarks/sequence_nets.py --threads 1            # CPU, one thread
    python benchmarks/sequence_nets.py --scale tiny --repeats 1 --warmup 0   # smoke run

Two measurements, each interleaved (``harness.interleaved``):

- ``transformer``: a float-input ``nn.TransformerEncoder`` classifier (d_model 64, 4 heads,
  feed-forward 128, 2 layers, 32 positions, 4 classes) under ``bbh.functional.sampled_forward``,
  forward + backward in training mode, for S = 2, 4, 8 and batches 32 and 100, with every
  sample on the whole batch ("shared") and the batch split between the samples ("split", what
  BbH's default ``nll="split"`` runs); ``vmap`` hits PyTorch's slow generic fallback for
  attention, ``loop`` runs S ordinary passes. The record says what ``auto`` picks, so
  ``bbh.functional.auto_forward_mode``'s rule for attention can be checked on any machine.
- ``lstm``: a text classifier (vocab 2000, embedding 64, LSTM hidden 64, 50 tokens, batch 64,
  2 classes): one BbH training step (default options: the LSTM has no vmap rule, so its S
  samples run in a loop) against one MAP step (``loss`` + ``backward`` + Adam), with every
  weight generated and with the embedding table a point estimate (``POINT``), and BbH's step
  without any pass of the net (draw, KL, backward, Adam), its cost per generated weight.
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))

import harness
from bbh import build
from bbh.functional import ParamSpec, auto_forward_mode, sampled_forward
from bbh.training import make_optimizer

#: BbH on everything but the embedding table (a Bayesian LSTM and output layer)
POINT = {"deterministic": ["embedding"]}


class TransformerClassifier(nn.Module):
    """Float inputs ``[B, T, d]`` -> logits ``[B, C]`` (mean over positions)."""

    def __init__(self, d: int, heads: int, ff: int, layers: int, classes: int):
        super().__init__()
        layer = nn.TransformerEncoderLayer(d, heads, ff, dropout=0.1, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.out = nn.Linear(d, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.encoder(x).mean(dim=1))


class LSTMClassifier(nn.Module):
    """Token ids ``[B, T]`` -> logits ``[B, C]`` (the LSTM's last hidden state)."""

    def __init__(self, vocab: int, embed: int, hidden: int, classes: int):
        super().__init__()
        self.embedding = nn.Embedding(vocab, embed)
        self.lstm = nn.LSTM(embed, hidden, batch_first=True)
        self.out = nn.Linear(hidden, classes)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        _, (h, _) = self.lstm(self.embedding(tokens))
        return self.out(h[-1])


def main(argv: list[str] | None = None) -> int:
    ap = harness.common_parser(__doc__ or "", "benchmarks/results/sequence_nets_cpu.json")
    ap.add_argument("--samples", type=int, nargs="+", default=[2, 4, 8], help="values of S")
    ap.add_argument("--batches", type=int, nargs="+", default=[32, 100], help="batch sizes")
    ap.add_argument("--skip", choices=["transformer", "lstm"], nargs="*", default=[])
    args = ap.parse_args(argv)
    device, load = harness.setup(args)
    tiny = args.scale == "tiny"
    record: dict[str, Any] = {"benchmark": "sequence_nets", "scale": args.scale}
    if "transformer" not in args.skip:
        record["transformer"] = _transformer(args, device, tiny)
    if "lstm" not in args.skip:
        record["lstm"] = _lstm(args, device, tiny)
    harness.write_record(args.out, record, device=device, load=load)
    return 0


def _transformer(args: Any, device: torch.device, tiny: bool) -> dict[str, Any]:
    d, heads, ff, layers, length, classes = (16, 2, 32, 1, 8, 4) if tiny else (64, 4, 128, 2, 32, 4)
    torch.manual_seed(0)
    net = TransformerClassifier(d, heads, ff, layers, classes).to(device).train()
    spec = ParamSpec.from_module(net)
    rows = []
    for batch in [8] if tiny else args.batches:
        for s in args.samples:
            flat = spec.from_module_values(net).expand(s, -1).clone().requires_grad_(True)
            x = torch.randn(batch, length, d, device=device)
            xs = torch.randn(s, max(batch // s, 1), length, d, device=device)
            fns = {}
            for mode in ("loop", "vmap"):
                fns[f"shared/{mode}"] = _train(net, spec, flat, x, False, mode)
                fns[f"split/{mode}"] = _train(net, spec, flat, xs, True, mode)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # PyTorch's "performance drop" under vmap
                timed = harness.interleaved(
                    fns, repeats=args.repeats, warmup=args.warmup, device=device
                )
            row: dict[str, Any] = {"S": s, "batch": batch, "weights_D": spec.dim}
            for kind, examples in (("shared", batch), ("split", xs.shape[1])):
                loop, vm = timed[f"{kind}/loop"]["median_s"], timed[f"{kind}/vmap"]["median_s"]
                auto = auto_forward_mode(net, s, examples, spec.dim, device).value
                row[kind] = {"loop_s": loop, "vmap_s": vm, "vmap_over_loop": vm / loop}
                row[kind]["auto"] = auto
                row[kind]["auto_is_faster"] = (auto == "vmap") == (vm < loop)
            rows.append(row)
            print(
                f"transformer B={batch:3d} S={s} "
                + "  ".join(
                    f"{k}: loop {row[k]['loop_s'] * 1e3:.1f} ms, vmap {row[k]['vmap_s'] * 1e3:.1f}"
                    f" ms (auto {row[k]['auto']})"
                    for k in ("shared", "split")
                ),
                file=sys.stderr,
                flush=True,
            )
    shape = {"d_model": d, "heads": heads, "ff": ff, "layers": layers, "length": length}
    return {"net": shape, "classes": classes, "rows": rows}


def _lstm(args: Any, device: torch.device, tiny: bool) -> dict[str, Any]:
    vocab, embed, hidden, length, batch = (200, 8, 16, 6, 8) if tiny else (2000, 64, 64, 50, 64)
    torch.manual_seed(0)
    tokens = torch.randint(0, vocab, (batch, length), device=device)
    labels = torch.randint(0, 2, (batch,), device=device)
    steps, built, steps_opt = {}, {}, {}
    variants = {"map": ("map", {}), "bbh": ("bbh", {}), "bbh_embedding_point": ("bbh", POINT)}
    for label, (name, options) in variants.items():
        torch.manual_seed(0)
        net = LSTMClassifier(vocab, embed, hidden, 2)
        method = build(name, net, **options).to(device).train()
        params = [p for p in method.parameters() if p.requires_grad]
        opt = make_optimizer(params, "adam", 1e-4)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the one-time loop fallback notice
            method.loss(tokens, labels, num_data=10_000)  # learns the fallback once
        steps[label] = _step(method, opt, tokens, labels)
        built[label], steps_opt[label] = method, opt
    steps["bbh_without_net"] = _posterior_step(built["bbh"], steps_opt["bbh"])
    timed = harness.interleaved(
        steps, repeats=args.repeats, warmup=args.warmup, device=device, baseline="map"
    )
    row: dict[str, Any] = {
        "vocab": vocab,
        "embed": embed,
        "hidden": hidden,
        "length": length,
        "batch": batch,
        "map_step_s": timed["map"]["median_s"],
        # BbH's own work on D weights (draw, KL, their backward, Adam) with no pass of the net
        "bbh_without_net_step_s": timed["bbh_without_net"]["median_s"],
        "bbh_without_net_over_map": timed["bbh_without_net"]["ratio"],
    }
    print(
        f"lstm: BbH without the net {row['bbh_without_net_step_s'] * 1e3:.1f} ms "
        f"({row['bbh_without_net_over_map']:.2f}x MAP's step)",
        file=sys.stderr,
    )
    for label in ("bbh", "bbh_embedding_point"):
        method = built[label]
        row[label] = {
            "options": variants[label][1],
            "num_samples": method.num_samples,
            "nll": method.nll_mode.value,
            "generated_D": method.spec.dim,
            "step_s": timed[label]["median_s"],
            "over_map": timed[label]["ratio"],
        }
        print(
            f"lstm {label}: MAP {row['map_step_s'] * 1e3:.1f} ms, BbH "
            f"{row[label]['step_s'] * 1e3:.1f} ms ({row[label]['over_map']:.2f}x MAP's), "
            f"D = {method.spec.dim}",
            file=sys.stderr,
        )
    return row


def _train(net: nn.Module, spec: ParamSpec, flat: torch.Tensor, x: Any, per: bool, mode: str):
    def step() -> None:
        out = sampled_forward(net, spec.unflatten(flat), x, x_per_sample=per, mode=mode)
        out.sum().backward()

    return step


def _posterior_step(method: Any, opt: torch.optim.Optimizer):
    """BbH's step without the net: the weight draw, the KL and a stand-in NLL (a sum of the
    weights), their backward and Adam: what a step costs beyond the net's own passes."""

    def step() -> None:
        draw = method.posterior.sample(method.num_samples, antithetic=method.antithetic)
        if getattr(method.kl_estimator, "uses_posterior", False):
            kl = method.kl_estimator(draw, method.prior, method.posterior)
        else:
            kl = method.kl_estimator(draw.weights, method.prior)
        loss = draw.weights.mean() + kl / 10_000
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step


def _step(method: Any, opt: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor):
    def step() -> None:
        loss, _ = method.loss(x, y, num_data=10_000)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step


if __name__ == "__main__":
    raise SystemExit(main())
