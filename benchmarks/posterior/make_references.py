"""Generate the NUTS references of the posterior-check suite (``bbh check-posterior``).

Long NUTS runs (NumPyro, a benchmark-only dependency: ``pip install -e ".[reference]"``) on

- ``logistic-2`` and ``logistic-50``: Bayesian logistic regression without bias, prior N(0, I),
  x ~ N(0, I), labels from a seeded true weight vector; the data are stored with the reference;
- ``toy``: the paper's toy regression (``bbh.data.toy``; 1-100-1 ReLU net, every weight and bias
  N(0, 1), noise std 9); stored in function space (f on a grid), since the weights are not
  identifiable (hidden units can be permuted). The script also runs the package's own HMC
  (``bbh.experiments.toy_reference.hmc_reference``) and the Gaussian with the net's prior moments
  (``gp_reference``) on the same grid and records how far each is from NUTS.

Each reference is stored small in ``src/bbh/experiments/posterior_check/references/NAME.npz``:
moments from every kept draw plus a thinned set of draws, and ``NAME.json`` beside it with the
seed, chain count, warm-up and kept draws, R-hat and ESS. Usage::

    python benchmarks/posterior/make_references.py [--cases logistic-2,logistic-50,toy]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=1")

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
from numpyro.diagnostics import effective_sample_size, split_gelman_rubin
from numpyro.infer import MCMC, NUTS

jax.config.update("jax_enable_x64", True)

OUT = Path(__file__).resolve().parents[2] / "src/bbh/experiments/posterior_check/references"

#: name -> (dim, num_data, scale of the true weights, data seed, chains, warm-up, draws per chain)
LOGISTIC = {
    "logistic-2": dict(
        dim=2, num_data=40, true_scale=1.5, seed=2, chains=4, warmup=2000, draws=20000, keep=2000
    ),
    "logistic-50": dict(
        dim=50, num_data=200, true_scale=0.4, seed=50, chains=4, warmup=2000, draws=10000, keep=2000
    ),
}
TOY = dict(seed=0, chains=8, warmup=3000, draws=5000, keep=2000, grid_points=101)


def logistic_data(dim: int, num_data: int, true_scale: float, seed: int) -> dict[str, np.ndarray]:
    """x ~ N(0, I) [N, D], w_true ~ N(0, true_scale^2 I), y ~ Bernoulli(sigmoid(x . w_true))."""
    rng = np.random.default_rng(seed)
    w_true = true_scale * rng.standard_normal(dim)
    x = rng.standard_normal((num_data, dim))
    y = (rng.random(num_data) < 1 / (1 + np.exp(-x @ w_true))).astype(np.int64)
    x_test = rng.standard_normal((500, dim))
    return {"x": x, "y": y, "x_test": x_test, "w_true": w_true}


def run_nuts(model, args: tuple, *, seed: int, chains: int, warmup: int, draws: int) -> MCMC:
    mcmc = MCMC(
        NUTS(model, target_accept_prob=0.9),
        num_warmup=warmup,
        num_samples=draws,
        num_chains=chains,
        chain_method="sequential",
        progress_bar=False,
    )
    mcmc.run(jax.random.PRNGKey(seed), *args)
    return mcmc


def diagnostics(values: np.ndarray) -> dict[str, float]:
    """Worst split R-hat and smallest ESS over the trailing axes of ``[chains, draws, ...]``."""
    flat = values.reshape(values.shape[0], values.shape[1], -1)
    rhat = np.asarray(split_gelman_rubin(flat))
    ess = np.asarray(effective_sample_size(flat))
    return {"rhat_max": round(float(rhat.max()), 4), "ess_min": round(float(ess.min()), 1)}


def thin(values: np.ndarray, keep: int) -> np.ndarray:
    """Evenly spaced ``keep`` draws of the pooled ``[chains * draws, ...]`` array."""
    idx = np.linspace(0, len(values) - 1, keep).round().astype(int)
    return values[idx]


def logistic_model(x, y=None):
    w = numpyro.sample("w", dist.Normal(0.0, 1.0).expand([x.shape[1]]).to_event(1))
    numpyro.sample("y", dist.Bernoulli(logits=x @ w), obs=y)


def make_logistic(name: str) -> dict[str, Any]:
    cfg = LOGISTIC[name]
    data = logistic_data(cfg["dim"], cfg["num_data"], cfg["true_scale"], cfg["seed"])
    start = time.perf_counter()
    mcmc = run_nuts(
        logistic_model,
        (jnp.asarray(data["x"]), jnp.asarray(data["y"])),
        seed=cfg["seed"],
        chains=cfg["chains"],
        warmup=cfg["warmup"],
        draws=cfg["draws"],
    )
    seconds = time.perf_counter() - start
    w = np.asarray(mcmc.get_samples(group_by_chain=True)["w"])  # [C, T, D]
    pooled = w.reshape(-1, w.shape[-1])
    f_test = pooled @ data["x_test"].T
    info = {
        "case": name,
        "sampler": f"NumPyro {numpyro.__version__} NUTS (target_accept_prob 0.9), float64",
        "seed": cfg["seed"],
        "chains": cfg["chains"],
        "warmup_per_chain": cfg["warmup"],
        "draws_per_chain": cfg["draws"],
        "stored_draws": cfg["keep"],
        "weights": diagnostics(w),
        "f_test": diagnostics(np.einsum("ctd,nd->ctn", w, data["x_test"][:50])),
        "seconds": round(seconds, 1),
        "data": {k: cfg[k] for k in ("dim", "num_data", "true_scale")},
    }
    arrays = {
        **data,
        "weight_draws": thin(pooled, cfg["keep"]),
        "weight_mean": pooled.mean(0),
        "weight_cov": np.cov(pooled, rowvar=False).reshape(cfg["dim"], cfg["dim"]),
        "f_mean": f_test.mean(0),
        "f_std": f_test.std(0, ddof=1),
    }
    return {"arrays": arrays, "info": info}


def toy_model(x, y, hidden: int = 100, noise_std: float = 9.0):
    w1 = numpyro.sample("w1", dist.Normal(0.0, 1.0).expand([hidden]).to_event(1))
    b1 = numpyro.sample("b1", dist.Normal(0.0, 1.0).expand([hidden]).to_event(1))
    w2 = numpyro.sample("w2", dist.Normal(0.0, 1.0).expand([hidden]).to_event(1))
    b2 = numpyro.sample("b2", dist.Normal(0.0, 1.0))
    f = jax.nn.relu(x[:, None] * w1 + b1) @ w2 + b2
    numpyro.sample("y", dist.Normal(f, noise_std), obs=y)


def toy_f(samples: dict[str, np.ndarray], grid: np.ndarray) -> np.ndarray:
    """f on the grid for every draw: ``[..., G]``."""
    h = np.maximum(grid[:, None] * samples["w1"][..., None, :] + samples["b1"][..., None, :], 0)
    return np.einsum("...gh,...h->...g", h, samples["w2"]) + samples["b2"][..., None]


def make_toy() -> dict[str, Any]:
    import torch

    from bbh.data.toy import toy_regression
    from bbh.experiments.toy_reference import gp_reference, hmc_reference

    data = toy_regression()
    x, y = data.x[:, 0].double().numpy(), data.y[:, 0].double().numpy()
    grid = np.linspace(-6.0, 6.0, TOY["grid_points"])
    start = time.perf_counter()
    mcmc = run_nuts(
        toy_model,
        (jnp.asarray(x), jnp.asarray(y)),
        seed=TOY["seed"],
        chains=TOY["chains"],
        warmup=TOY["warmup"],
        draws=TOY["draws"],
    )
    seconds = time.perf_counter() - start
    samples = {k: np.asarray(v) for k, v in mcmc.get_samples(group_by_chain=True).items()}
    f = toy_f(samples, grid)  # [C, T, G]
    pooled = f.reshape(-1, f.shape[-1])
    f_mean, f_std = pooled.mean(0), pooled.std(0, ddof=1)
    weights = np.concatenate(
        [samples["w1"], samples["b1"], samples["w2"], samples["b2"][..., None]], -1
    )
    g = torch.from_numpy(grid).float()[:, None]
    start_hmc = time.perf_counter()
    hmc = hmc_reference(data.x, data.y, g)
    hmc_seconds = time.perf_counter() - start_hmc
    gp = gp_reference(data.x, data.y, g)
    info = {
        "case": "toy",
        "sampler": f"NumPyro {numpyro.__version__} NUTS (target_accept_prob 0.9), float64",
        "seed": TOY["seed"],
        "chains": TOY["chains"],
        "warmup_per_chain": TOY["warmup"],
        "draws_per_chain": TOY["draws"],
        "stored_draws": TOY["keep"],
        "f_grid": diagnostics(f),
        "weights (not identifiable: permutations of hidden units)": diagnostics(weights),
        "seconds": round(seconds, 1),
        "vs_package_hmc": compare(
            f_mean, f_std, hmc.mean.double().numpy(), hmc.std.double().numpy()
        )
        | {"hmc_seconds": round(hmc_seconds, 1), "hmc_info": hmc.info},
        "vs_prior_moment_gaussian": compare(
            f_mean, f_std, gp.mean.double().numpy(), gp.std.double().numpy()
        ),
    }
    arrays = {
        "x": x,
        "y": y,
        "x_test": grid,
        "f_draws": thin(pooled, TOY["keep"]),
        "f_mean": f_mean,
        "f_std": f_std,
        "hmc_f_mean": hmc.mean.double().numpy(),
        "hmc_f_std": hmc.std.double().numpy(),
        "gp_f_mean": gp.mean.double().numpy(),
        "gp_f_std": gp.std.double().numpy(),
    }
    return {"arrays": arrays, "info": info}


def compare(mean: np.ndarray, std: np.ndarray, other_mean: np.ndarray, other_std: np.ndarray):
    """How far ``other`` is from the NUTS reference: std ratio (median, range) and mean gap."""
    ratio = other_std / std
    return {
        "std_ratio_median": round(float(np.median(ratio)), 4),
        "std_ratio_min": round(float(ratio.min()), 4),
        "std_ratio_max": round(float(ratio.max()), 4),
        "mean_abs_diff_max_over_std": round(float((np.abs(other_mean - mean) / std).max()), 4),
    }


def save(name: str, result: dict[str, Any], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    arrays = {
        k: (v.astype(np.float32) if v.dtype == np.float64 else v)
        for k, v in result["arrays"].items()
    }
    info = json.dumps(result["info"], indent=2)
    np.savez_compressed(out / f"{name}.npz", info=np.array(info), **arrays)
    (out / f"{name}.json").write_text(info + "\n")
    print(info)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cases", default="logistic-2,logistic-50,toy")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    for name in [c.strip() for c in args.cases.split(",") if c.strip()]:
        if name in LOGISTIC:
            save(name, make_logistic(name), args.out)
        elif name == "toy":
            save(name, make_toy(), args.out)
        else:
            raise SystemExit(f"unknown case {name!r}; allowed: {[*LOGISTIC, 'toy']}")


if __name__ == "__main__":
    main()
