"""Variance of the ``log sigma`` gradient of BbH's training NLL, ``sigma_noise`` sample vs local.

    python benchmarks/sigma_noise_gradient.py --data-dir /work/shared/data --draws 50

LeNet-5 at its initial posterior (sigma ``--sigma``) on one MNIST training batch of 100, S = 2
split (the recommended likelihood): the generator's means ``G(z_s)`` held fixed, the gradient
of the NLL w.r.t. ``log sigma`` over ``--draws`` draws of the weight noise, with one ``eps``
per sample shared by its 50 examples (``sample``) or per-example output noise (``local``, the
local reparameterisation trick of Kingma, Salimans and Welling 2015; ``flipout``). Prints, per
tensor, the summed variance of each and the ratio, and the signal-to-noise ratio
``|mean| / std`` of the gradient's median weight.
"""

from __future__ import annotations

import argparse
import json
import math

import torch

import bbh
from bbh.data import load_mnist
from bbh.methods.bbh import BayesByHypernet
from bbh.nets import LeNet5


def grads(
    model: BayesByHypernet, mean: torch.Tensor, x: torch.Tensor, y: torch.Tensor, draws: int
) -> torch.Tensor:
    """``[draws, D]`` gradients of the split NLL w.r.t. ``log sigma``."""
    param = model.posterior.log_sigma_param
    out = []
    for _ in range(draws):
        if model.sigma_noise.value == "sample":
            flat = mean + model.posterior.sigma() * torch.randn_like(mean)
            nll = model._nll(flat, x, y)
        else:
            nll = model._nll(mean, x, y, local=True)
        (g,) = torch.autograd.grad(nll, param)
        out.append(g * model.posterior.log_sigma_scale)
    return torch.stack(out)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data-dir", required=True)
    ap.add_argument("--draws", type=int, default=50)
    ap.add_argument("--sigma", type=float, default=0.01)
    ap.add_argument("--noises", nargs="+", default=["local", "flipout"])
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    torch.set_num_threads(1)
    data = load_mnist(args.data_dir, offline=True)
    x, y = data.train.images[:100], data.train.labels[:100]
    torch.manual_seed(0)
    net = LeNet5()
    models = {}
    for noise in ["sample", *args.noises]:
        torch.manual_seed(0)
        models[noise] = bbh.build(
            "bbh", net, temperature=0.03, weight_noise=args.sigma, sigma_noise=noise
        )
    base = models["sample"]
    mean = base.posterior.sample(2, antithetic=True).mean.detach()
    g = {k: grads(m, mean, x, y, args.draws) for k, m in models.items()}
    record: dict[str, dict[str, float]] = {}
    offset = 0
    for entry in base.spec:
        sl = slice(offset, offset + entry.numel)
        offset += entry.numel
        row = {}
        for k, v in g.items():
            part = v[:, sl]
            snr = (part.mean(0).abs() / part.std(0).clamp_min(1e-30)).median()
            row[f"{k}_var"] = float(part.var(0).sum())
            row[f"{k}_snr_median"] = float(snr)
        for k in args.noises:
            row[f"{k}_var_ratio"] = row[f"{k}_var"] / row["sample_var"]
        record[entry.name] = row
        ratios = "  ".join(f"{k} var ratio {row[f'{k}_var_ratio']:.4f}" for k in args.noises)
        snrs = "  ".join(f"{k} {row[f'{k}_snr_median']:.3f}" for k in g)
        print(f"{entry.name:14s} {ratios}   median |mean|/std: {snrs}")
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"args": vars(args), "per_tensor": record}, f, indent=1)
    assert math.isfinite(sum(r["sample_var"] for r in record.values()))


if __name__ == "__main__":
    main()
