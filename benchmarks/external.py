"""Our baselines against other people's code on the same LeNet-5 / MNIST batch of 100.

    pip install --no-deps bayesian-torch    # optional; see benchmarks/README.md for why --no-deps
    python benchmarks/external.py

- Bayes by Backprop: ours (``bbb``, ``sigma_noise="sample"`` and ``"flipout"``) against
  bayesian-torch's ``dnn_to_bnn`` conversion of the same LeNet-5 (``Reparameterization`` and
  ``Flipout`` layers), each with its closed-form KL, fused Adam, CE + KL / N. Skipped (and said
  so in the record) when bayesian-torch is not installed. Target: ours no slower.
- MC dropout: ours against a plain PyTorch loop (``nn.Dropout(0.5)`` after the same ReLUs, CE +
  the same L2 term).
- Deep ensemble (M = 5, adversarial training): ours against a plain loop over five nets, each
  with its own optimiser and its own FGSM step.

Each pair alternates step by step with a MAP step (ours, theirs, MAP, ...); the record gives
each one's median and the per-round ratio ours / theirs.
"""

from __future__ import annotations

import copy
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))

import harness
from bbh.training import make_optimizer
from cases import MAP_CASE, MethodCase, make_training, nets

Step = Callable[[], None]


def bayesian_torch_step(net: nn.Module, kind: str, x: Any, y: Any, num_data: int) -> Step | str:
    """A bayesian-torch BNN step, or the reason there is none."""
    try:
        from bayesian_torch.models.dnn_to_bnn import dnn_to_bnn, get_kl_loss
    except ImportError as err:
        return f"bayesian-torch is not installed ({err}); pip install --no-deps bayesian-torch"
    model = copy.deepcopy(net)
    prior = {
        "prior_mu": 0.0,
        "prior_sigma": 1.0,
        "posterior_mu_init": 0.0,
        "posterior_rho_init": -3.0,
        "type": kind,
        "moped_enable": False,
        "moped_delta": 0.5,
    }
    dnn_to_bnn(model, prior)
    model.to(x.device).train()
    opt = make_optimizer(list(model.parameters()), "adam", 1e-4)

    def step() -> None:
        loss = F.cross_entropy(model(x), y) + get_kl_loss(model) / num_data
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step


def plain_dropout_step(x: Any, y: Any, num_data: int, in_channels: int = 1) -> Step:
    """LeNet-5 with ``nn.Dropout(0.5)`` after each ReLU, CE + sum ||w||^2 / 2 / N, fused Adam."""
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(in_channels, 20, 5), nn.ReLU(), nn.Dropout(0.5), nn.MaxPool2d(2),
        nn.Conv2d(20, 50, 5), nn.ReLU(), nn.Dropout(0.5), nn.MaxPool2d(2), nn.Flatten(),
        nn.Linear(800, 500), nn.ReLU(), nn.Dropout(0.5), nn.Linear(500, 10),
    ).to(x.device).train()  # fmt: skip
    params = list(model.parameters())
    opt = make_optimizer(params, "adam", 1e-4)

    def step() -> None:
        l2 = sum(p.pow(2).sum() for p in params) / 2
        loss = F.cross_entropy(model(x), y) + l2 / num_data
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step


def plain_ensemble_step(
    net: nn.Module, x: Any, y: Any, members: int = 5, eps: float = 0.01
) -> Step:
    """M nets in a loop, each with its own Adam and FGSM adversarial training (alpha 0.5)."""
    torch.manual_seed(0)
    models = [copy.deepcopy(net).to(x.device).train() for _ in range(members)]
    opts = [make_optimizer(list(m.parameters()), "adam", 1e-4) for m in models]

    def step() -> None:
        for model, opt in zip(models, opts, strict=True):
            xr = x.detach().clone().requires_grad_(True)
            nll = F.cross_entropy(model(xr), y)
            (grad,) = torch.autograd.grad(nll, xr, retain_graph=True)
            nll_adv = F.cross_entropy(model((xr + eps * grad.sign()).detach()), y)
            loss = 0.5 * nll + 0.5 * nll_adv
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

    return step


def main(argv: list[str] | None = None) -> int:
    ap = harness.common_parser(__doc__ or "", "benchmarks/results/external_cpu.json")
    args = ap.parse_args(argv)
    device, load = harness.setup(args)
    net_case = nets(args.scale)["lenet"]
    x, y = net_case.batch(device)
    n = net_case.num_data

    def ours(case: MethodCase) -> Step:
        return make_training(case, net_case, device, args.scale).step

    pairs: dict[str, tuple[Step, Step | str]] = {
        "bbb sample vs bayesian-torch Reparameterization": (
            ours(MethodCase("bbb", "bbb")),
            bayesian_torch_step(net_case.make(), "Reparameterization", x, y, n),
        ),
        "bbb flipout vs bayesian-torch Flipout": (
            ours(MethodCase("bbb", "bbb", {"sigma_noise": "flipout"})),
            bayesian_torch_step(net_case.make(), "Flipout", x, y, n),
        ),
        "mc_dropout vs plain PyTorch": (
            ours(MethodCase("mc_dropout", "mc_dropout", {"p": 0.5})),
            plain_dropout_step(x, y, n),
        ),
        "ensemble (M=5, adversarial) vs plain PyTorch": (
            ours(MethodCase("ensemble", "ensemble", {"num_members": 5})),
            plain_ensemble_step(net_case.make(), x, y),
        ),
    }
    map_step = make_training(MAP_CASE, net_case, device, args.scale).step
    rows: dict[str, Any] = {}
    for label, (our_step, their_step) in pairs.items():
        if isinstance(their_step, str):
            rows[label] = {"skipped": their_step}
            print(f"{label}: skipped: {their_step}", file=sys.stderr)
            continue
        timed = harness.interleaved(
            {"ours": our_step, "theirs": their_step, "map": map_step},
            repeats=args.repeats,
            warmup=args.warmup,
            device=device,
            baseline="theirs",
        )
        rows[label] = {
            "ours_s": timed["ours"]["median_s"],
            "theirs_s": timed["theirs"]["median_s"],
            "map_s": timed["map"]["median_s"],
            "ours_over_theirs": timed["ours"]["ratio"],
        }
        print(
            f"{label:50s} ours/theirs x{timed['ours']['ratio']:.2f} "
            f"({timed['ours']['median_s'] * 1e3:.1f} vs {timed['theirs']['median_s'] * 1e3:.1f} "
            f"ms; MAP {timed['map']['median_s'] * 1e3:.1f} ms)",
            file=sys.stderr,
            flush=True,
        )
    record = {
        "benchmark": "external",
        "scale": args.scale,
        "net": net_case.description,
        "repeats": args.repeats,
        "pairs": rows,
    }
    harness.write_record(args.out, record, device=device, load=load)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
