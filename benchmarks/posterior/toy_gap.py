"""Why a generated output layer cannot get the toy's posterior right, and what does.

On the posterior check's toy (the 1-100-1 ReLU net, 20 points, noise 9, prior N(0, 1)), fits
by plain Adam on the ELBO, in float64, with exact densities:

1. the best full-covariance Gaussian over all 301 weights (every Gaussian q: what any affine
   generator can reach), then an importance-weighted bound on log Z from its own draws, and
   the predictive std after self-normalised reweighting of those draws;
2. a full-covariance Gaussian over the hidden layer's 200 weights with the output layer
   integrated exactly (the collapsed ELBO of ``last_layer="exact"``, ``bbh.posteriors.last_layer``).

For each: ELBO, predictive std of f over NUTS's (median and worst over the grid) and the mean's
error. Writes JSON; prints one line per fit::

    python benchmarks/posterior/toy_gap.py --out benchmarks/results/toy_gap.json
"""

from __future__ import annotations

import argparse
import math
import time
from typing import Any

import torch
from torch import Tensor, nn

from bbh.experiments.posterior_check.cases import toy_case
from bbh.experiments.posterior_check.metrics import function_metrics
from bbh.experiments.toy_reference import relu_features, relu_net
from bbh.io import write_json
from bbh.posteriors.last_layer import log_marginal, sample_readout

HIDDEN = 100


class FullGaussian(nn.Module):
    """``N(loc, L L^T)`` in ``dim`` dimensions, L lower-triangular with a positive diagonal."""

    def __init__(self, dim: int, loc_scale: float, scale: float):
        super().__init__()
        self.loc = nn.Parameter(loc_scale * torch.randn(dim, dtype=torch.float64))
        self.tril = nn.Parameter(torch.zeros(dim, dim, dtype=torch.float64))
        self.log_diag = nn.Parameter(torch.full((dim,), math.log(scale), dtype=torch.float64))

    def sample(self, n: int) -> tuple[Tensor, Tensor]:
        """Draws ``[n, dim]`` and their log-density ``[n]``."""
        dim = self.loc.numel()
        z = torch.randn(n, dim, dtype=torch.float64)
        chol = torch.tril(self.tril, -1) + torch.diag(self.log_diag.exp())
        log_q = -0.5 * (z * z).sum(-1) - self.log_diag.sum() - 0.5 * dim * math.log(2 * math.pi)
        return self.loc + z @ chol.t(), log_q

    def kl_to_standard_normal(self) -> Tensor:
        chol = torch.tril(self.tril, -1) + torch.diag(self.log_diag.exp())
        dim = self.loc.numel()
        return 0.5 * ((chol * chol).sum() + (self.loc * self.loc).sum() - dim) - self.log_diag.sum()


def log_joint(w: Tensor, x: Tensor, y: Tensor, noise: float) -> Tensor:
    """``log p(y | w) + log p(w)`` ``[S]``."""
    resid = (y[None] - relu_net(w, x, HIDDEN)) / noise
    log_lik = -0.5 * (resid * resid).sum(-1) - len(x) * math.log(noise * math.sqrt(2 * math.pi))
    return log_lik - 0.5 * (w * w).sum(-1) - 0.5 * w.shape[1] * math.log(2 * math.pi)


def scores(f: Tensor, ref: Any, weights: Tensor | None = None) -> dict[str, float]:
    if weights is None:
        return function_metrics(f, ref.f_mean.double(), ref.f_std.double())
    mean = (weights[:, None] * f).sum(0)
    std = (weights[:, None] * (f - mean) ** 2).sum(0).sqrt()
    ratio = std / ref.f_std.double()
    worst = ratio[ratio.log().abs().argmax()]
    return {"std_ratio_median": float(ratio.median()), "std_ratio_worst": float(worst)}


def fit(q: FullGaussian, elbo_fn: Any, steps: int, lr: float) -> float:
    opt = torch.optim.Adam(q.parameters(), lr=lr)
    for _ in range(steps):
        loss = -elbo_fn()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return float(-loss.detach())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=6000)
    parser.add_argument("--samples", type=int, default=64, help="draws per step")
    parser.add_argument("--iw-draws", type=int, default=200_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="benchmarks/results/toy_gap.json")
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(args.seed)
    case = toy_case()
    x, y, xt = case.x.double()[:, 0], case.y.double()[:, 0], case.x_test.double()[:, 0]
    noise = float(case.noise_scale)  # type: ignore[arg-type]
    ref = case.reference
    rows: dict[str, Any] = {}

    start = time.perf_counter()
    full = FullGaussian(3 * HIDDEN + 1, 0.1, 0.1)

    def full_elbo() -> Tensor:
        w, log_q = full.sample(args.samples)
        return (log_joint(w, x, y, noise) - log_q).mean()

    fit(full, full_elbo, args.steps, 1e-3)
    with torch.no_grad():
        log_w, fs = [], []
        for _ in range(max(1, args.iw_draws // 10_000)):
            w, log_q = full.sample(10_000)
            log_w.append(log_joint(w, x, y, noise) - log_q)
            fs.append(relu_net(w, xt, HIDDEN))
        lw, f = torch.cat(log_w), torch.cat(fs)
        weights = torch.softmax(lw, 0)
        rows["gaussian_all_weights"] = {
            "elbo": float(lw.mean()),
            "iw_bound_log_z": float(torch.logsumexp(lw, 0) - math.log(len(lw))),
            "iw_draws": len(lw),
            **scores(f, ref),
            "reweighted": {"ess": float(1 / (weights * weights).sum()), **scores(f, ref, weights)},
            "seconds": round(time.perf_counter() - start, 1),
        }

    start = time.perf_counter()
    hidden = FullGaussian(2 * HIDDEN, 0.5, 0.3)
    y2 = y[:, None]

    def collapsed_elbo() -> Tensor:
        theta, _ = hidden.sample(args.samples)
        phi = relu_features(theta, x, HIDDEN)
        phi = torch.cat([phi, torch.ones_like(phi[..., :1])], -1)
        return log_marginal(phi, y2, noise, 1.0).mean() - hidden.kl_to_standard_normal()

    fit(hidden, collapsed_elbo, args.steps, 1e-3)
    with torch.no_grad():
        theta, _ = hidden.sample(10_000)
        phi = relu_features(theta, x, HIDDEN)
        phi = torch.cat([phi, torch.ones_like(phi[..., :1])], -1)
        readout = sample_readout(phi, y2, noise, 1.0)[..., 0]  # [S, H + 1]
        pt = relu_features(theta, xt, HIDDEN)
        f = (pt * readout[:, None, :HIDDEN]).sum(-1) + readout[:, HIDDEN:]
        elbo = float(torch.stack([collapsed_elbo() for _ in range(20)]).mean())
        rows["gaussian_hidden_exact_readout"] = {
            "elbo": elbo,
            **scores(f, ref),
            "seconds": round(time.perf_counter() - start, 1),
        }
    for name, row in rows.items():
        print(name, row, flush=True)
    write_json(args.out, {"steps": args.steps, "samples": args.samples, "seed": args.seed, **rows})


if __name__ == "__main__":
    main()
