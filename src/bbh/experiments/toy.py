"""The 1-D toy regression experiment (the paper's ``toy_data.ipynb``): ``bbh toy --out DIR``.

Trains each method on the 20-point cubic data set with the proper ELBO (prior ``N(0, 1)`` on every
weight, Gaussian likelihood with noise std 9), predicts on ``x in [-6, 6]``, compares with a
trusted reference of the same Bayesian model (HMC, or the Gaussian with the net's prior
moments: see ``bbh.experiments.toy_reference``) and writes

- ``toy.png``: per method, the data, the true curve ``x^3``, the predictive mean and bands of
  +-1, 2, 3 standard deviations of ``f`` (weight uncertainty), the reference mean +-2 std dashed;
- ``metrics.json``: per method the RMSE of the mean against ``x^3`` on the grid, the predictive
  standard deviation on the grid (of ``f``, and with the noise), the coverage of ``x^3`` by
  mean +-2 std of ``f`` and of fresh noisy targets by mean +-2 total std, the Gaussian NLL and
  interval calibration error (``bbh.metrics.regression``) of those targets, and how close mean
  and std come to the reference.

``setting="paper"`` reproduces the paper notebook's schedule (KL weight zero from step 9 on, no
``1/N``): offered to show what it does, not as a recommendation.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from bbh.data.toy import ToyData, toy_regression
from bbh.experiments.toy_reference import Reference, gp_reference, hmc_reference
from bbh.io import RunFolder, run_folder, savefig
from bbh.likelihoods import RegressionPrediction
from bbh.methods import build
from bbh.metrics.regression import gaussian_nll, interval_calibration_error, interval_coverage, rmse
from bbh.nets import toy_regression_net
from bbh.training import fit, paper_toy_schedule
from bbh.training.schedules import KLSchedule, constant
from bbh.validation import at_least, checked_args


@dataclass(frozen=True)
class ToySettings:
    """How one method is trained on the toy data."""

    options: dict[str, Any]
    steps: int
    lr: float
    label: str
    paper_schedule: bool = False  # the notebook's clip(10/(i+1) - 1, 0, 1), with no 1/N
    extra: dict[str, Any] = field(default_factory=dict)
    lr_schedule: str = "cooldown"  # the paper notebook's: constant


#: Our settings: the proper ELBO, trained to convergence (under a minute on two cores).
TOY_SETTINGS: dict[str, ToySettings] = {
    # the recommended defaults (on this 301-weight net: the affine generator, 64 samples, the
    # exact Jacobian KL) with the output layer integrated exactly: the hypernet generates the
    # hidden layer; predictive std 0.99x NUTS's at the median (the generated output layer: 2.6x)
    "bbh": ToySettings(
        # the model the reference samples: N(0, 1) on every weight, the ELBO (T = 1)
        options=dict(last_layer="exact", prior="isotropic", temperature=1.0),
        steps=1000,
        lr=1e-2,
        label="Bayes by Hypernet (exact output layer)",
    ),
}

#: The paper notebook's settings (2019 toy notebook), for a faithful reproduction.
PAPER_TOY_SETTINGS: dict[str, ToySettings] = {
    "bbh": ToySettings(
        options=dict(preset="paper", noise_dim=1, hidden=(16, 32, 64)),
        steps=200,
        lr=0.01,
        label="Bayes by Hypernet (paper notebook)",
        paper_schedule=True,
    ),
}

# --- baselines (issue 3) ---
#: The baselines with the proper objective (prior N(0, 1), KL / N), trained to convergence.
BASELINE_TOY_SETTINGS: dict[str, ToySettings] = {
    "map": ToySettings(options=dict(weight_decay="gaussian"), steps=2000, lr=1e-2, label="MAP"),
    "mnf": ToySettings(options=dict(max_std=1.0), steps=3000, lr=1e-2, label="MNF"),
    "bbb": ToySettings(
        options=dict(
            weight_noise="local",
            init_log_var=-6.0,
            num_train_samples=4,
            prior="isotropic",
            temperature=1.0,
        ),
        steps=3000,
        lr=1e-2,
        label="Bayes by Backprop",
    ),
    # no L2: with the N(0, 1) weight decay every ReLU unit dies on the flat positive side of
    # the data, and dropout then has nothing to drop there (zero predictive std)
    "mc_dropout": ToySettings(
        options=dict(p=0.5, weight_decay="none"), steps=2000, lr=1e-2, label="MC dropout"
    ),
    # epsilon = 1% of the input range (Lakshminarayanan et al.)
    "ensemble": ToySettings(
        options=dict(num_members=10, epsilon=0.08), steps=3000, lr=1e-2, label="Deep ensemble"
    ),
}

#: The paper notebook's baselines (pawni/BayesByHypernet, ``toy_data.ipynb``): lr 0.1, 40 steps.
BASELINE_PAPER_TOY_SETTINGS: dict[str, ToySettings] = {
    "map": ToySettings(
        options=dict(weight_decay="none"), steps=40, lr=0.1, label="MAP (paper: MLE)"
    ),
    "mnf": ToySettings(
        options=dict(max_std=0.5), steps=40, lr=0.1, label="MNF (paper)", paper_schedule=True
    ),
    "bbb": ToySettings(
        # the paper's model: N(0, 1), the ELBO, the log-variance at the optimiser's lr
        options=dict(
            init_log_var=-3.0,
            prior="isotropic",
            temperature=1.0,
            sigma_rate=5e-4,
            sigma_tensor_scale=False,
        ),
        steps=40,
        lr=0.1,
        label="Bayes by Backprop (paper)",
        paper_schedule=True,
    ),
    "mc_dropout": ToySettings(
        options=dict(p=0.5, weight_decay="none"), steps=40, lr=0.1, label="MC dropout (paper)"
    ),
    "ensemble": ToySettings(
        options=dict(num_members=10, epsilon=0.01, alpha=0.5),
        steps=40,
        lr=0.1,
        label="Deep ensemble (paper)",
    ),
}

# the notebook trains at a constant rate (ours: a cooldown, bbh.training.fit's default)
PAPER_TOY_SETTINGS = {k: replace(s, lr_schedule="constant") for k, s in PAPER_TOY_SETTINGS.items()}
BASELINE_PAPER_TOY_SETTINGS = {
    k: replace(s, lr_schedule="constant") for k, s in BASELINE_PAPER_TOY_SETTINGS.items()
}

# the paper's figure-1 panel order: MAP, MNF, BbB, MC dropout, ensemble, BbH
TOY_SETTINGS = {**BASELINE_TOY_SETTINGS, **TOY_SETTINGS}
PAPER_TOY_SETTINGS = {**BASELINE_PAPER_TOY_SETTINGS, **PAPER_TOY_SETTINGS}
# --- end baselines ---

SETTINGS = {"ours": TOY_SETTINGS, "paper": PAPER_TOY_SETTINGS}
REFERENCES = ("gp", "hmc", "none")


@checked_args(data_seed=at_least(0), seed=at_least(0), steps=at_least(1))
def run_toy(
    out: str | Path,
    methods: Sequence[str] = ("bbh",),
    *,
    setting: str = "ours",
    reference: str = "gp",
    data_seed: int = 1,
    seed: int = 0,
    steps: int | None = None,
    num_predictive_samples: int = 500,
    figure: bool = True,
) -> dict[str, Any]:
    """Train ``methods`` on the toy data, write ``metrics.json`` (and ``toy.png``) to ``out``.

    ``out`` is a run folder (``bbh.io.run_folder``): checked before any work, and replaced as a
    whole when the run finishes, so it never mixes two runs' files.
    """
    if setting not in SETTINGS:
        raise ValueError(f"unknown setting {setting!r}; allowed: {sorted(SETTINGS)}")
    table = SETTINGS[setting]
    methods = list(table) if list(methods) == ["all"] else list(methods)
    unknown = [m for m in methods if m not in table]
    if unknown or not methods:
        raise ValueError(f"unknown toy method(s) {unknown}; allowed: {sorted(table)} or 'all'")
    if reference not in REFERENCES:
        raise ValueError(f"unknown reference {reference!r}; allowed: {list(REFERENCES)}")
    if figure:
        _require_matplotlib()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny tensors: threads only add overhead, worst on a busy machine
    try:
        with run_folder(out) as run:
            return _run(
                run,
                methods,
                table,
                setting,
                reference,
                data_seed,
                seed,
                steps,
                num_predictive_samples,
                figure,
            )
    finally:
        torch.set_num_threads(threads)


def _run(
    run: RunFolder,
    methods: list[str],
    table: dict[str, ToySettings],
    setting: str,
    reference: str,
    data_seed: int,
    seed: int,
    steps: int | None,
    num_predictive_samples: int,
    figure: bool,
) -> dict[str, Any]:
    data = toy_regression(seed=data_seed)
    ref = _reference(data, reference)
    results: dict[str, Any] = {
        "data": {"num_points": len(data.x), "seed": data_seed, "noise_std": data.noise_std},
        "setting": setting,
        "reference": None if ref is None else {"kind": reference, **ref.info},
        "methods": {},
    }
    predictions: dict[str, tuple[Tensor, Tensor]] = {}
    for name in methods:
        settings = table[name]
        torch.manual_seed(seed)
        method = build(
            name,
            toy_regression_net(),
            likelihood="gaussian",
            noise_scale=data.noise_std,
            **settings.options,
        )
        schedule: KLSchedule = constant(1.0)
        if settings.paper_schedule:  # the notebook weights the KL without 1/N
            n = len(data.x)
            schedule = _scaled(paper_toy_schedule, float(n))
        start = time.perf_counter()
        n_steps = settings.steps if steps is None else steps
        fit(
            method,
            data.x,
            data.y,
            steps=n_steps,
            batch_size=len(data.x),
            lr=settings.lr,
            kl_schedule=schedule,
            lr_schedule=settings.lr_schedule,
            seed=seed,
            log_every=n_steps,
            **settings.extra,
        )
        seconds = time.perf_counter() - start
        pred = method.predict(data.grid, num_predictive_samples)
        if not isinstance(pred, RegressionPrediction):
            raise TypeError(f"{name}: predict must return a RegressionPrediction here")
        mean, std_f = pred.mean[:, 0], pred.epistemic_std[:, 0]  # [G] each
        predictions[name] = (mean, std_f)
        results["methods"][name] = {
            "label": settings.label,
            "train_seconds": round(seconds, 2),
            "steps": n_steps,
            "options": {
                k: (list(v) if isinstance(v, tuple) else v) for k, v in settings.options.items()
            },
            **toy_metrics(data, mean, std_f, ref),
        }
    if ref is not None:
        results["reference"].update(toy_metrics(data, ref.mean, ref.std, None))
    run.write_json("metrics.json", results)
    if figure:
        plot_toy(run.path("toy.png"), data, predictions, results, ref)
    return results


def toy_metrics(data: ToyData, mean: Tensor, std_f: Tensor, ref: Reference | None) -> dict:
    """RMSE against ``x^3``, standard deviations on the grid, coverage, closeness to ``ref``.

    Coverage compares like with like: ``coverage_f_2std`` is the share of grid points where the
    noise-free ``x^3`` lies within mean +- 2 std of f; ``coverage_y_2std`` the share of fresh
    noisy targets ``x^3 + N(0, noise^2)`` (one per grid point, seeded) within mean +- 2 total std;
    ``nll_y`` and ``calibration_error_y`` score the total predictive on the same targets.
    """
    grid = data.grid[:, 0]
    truth = data.truth(grid)
    std_total = (std_f.pow(2) + data.noise_std**2).sqrt()
    fresh_y = truth + data.noise_std * torch.randn(
        grid.shape, generator=torch.Generator().manual_seed(0)
    )
    at = {f"{x:g}": int((grid - x).abs().argmin()) for x in (-6.0, 0.0, 6.0)}
    m: dict[str, Any] = {
        "rmse_mean_vs_truth": _r(rmse(mean, truth)),
        "coverage_f_2std": _r(interval_coverage(mean, std_f, truth, 2.0)),
        "coverage_y_2std": _r(interval_coverage(mean, std_total, fresh_y, 2.0)),
        "nll_y": _r(gaussian_nll(mean, std_total, fresh_y)),
        "calibration_error_y": _r(interval_calibration_error(mean, std_total, fresh_y)),
        "std_f_at": {k: _r(std_f[i]) for k, i in at.items()},
        "std_total_at": {k: _r(std_total[i]) for k, i in at.items()},
        "std_ratio_edge_over_centre": {
            "x=-6": _r(std_f[at["-6"]] / std_f[at["0"]].clamp_min(1e-12)),
            "x=6": _r(std_f[at["6"]] / std_f[at["0"]].clamp_min(1e-12)),
        },
        "grid": {
            "x": _list(grid),
            "mean": _list(mean),
            "std_f": _list(std_f),
            "std_total": _list(std_total),
        },
    }
    if ref is not None:
        m["vs_reference"] = {
            "rmse_mean": _r(((mean - ref.mean) ** 2).mean().sqrt()),
            "mean_abs_std_diff": _r((std_f - ref.std).abs().mean()),
            "mean_std_ratio": _r((std_f / ref.std.clamp_min(1e-6)).mean()),
        }
    return m


def plot_toy(
    path: Path,
    data: ToyData,
    predictions: dict[str, tuple[Tensor, Tensor]],
    results: dict[str, Any],
    ref: Reference | None,
) -> None:
    """One panel per method: data, truth, mean, +-1/2/3 std bands, reference dashed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(predictions)
    cols = min(n, 3)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(5 * cols, 4 * rows), squeeze=False)
    g = data.grid[:, 0].numpy()
    for ax, (name, (mean, std)) in zip(axes.flat, predictions.items(), strict=False):
        mu, sd = mean.numpy(), std.numpy()
        for k, alpha in ((3, 0.12), (2, 0.2), (1, 0.3)):
            ax.fill_between(
                g,
                mu - k * sd,
                mu + k * sd,
                color="tab:blue",
                alpha=alpha,
                lw=0,
                label=f"±{k} std" if k == 1 else None,
            )
        ax.plot(g, g**3, color="k", lw=1, label="x³")
        ax.plot(g, mu, color="tab:blue", lw=1.5, label="predictive mean")
        if ref is not None:
            r_mu, r_sd = ref.mean.numpy(), ref.std.numpy()
            ax.plot(g, r_mu, color="tab:red", lw=1, ls="--", label="reference mean ±2 std")
            ax.plot(g, r_mu + 2 * r_sd, color="tab:red", lw=0.8, ls=":")
            ax.plot(g, r_mu - 2 * r_sd, color="tab:red", lw=0.8, ls=":")
        ax.scatter(data.x[:, 0], data.y[:, 0], s=12, color="tab:orange", zorder=3, label="data")
        info = results["methods"][name]
        ax.set_title(f"{info['label']}\nRMSE vs x³ {info['rmse_mean_vs_truth']:.1f}", fontsize=10)
        ax.set_ylim(-250, 250)
        ax.set_xlim(g[0], g[-1])
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    savefig(fig, path, dpi=110)
    plt.close(fig)


def _scaled(schedule: KLSchedule, factor: float) -> KLSchedule:
    return lambda step: factor * schedule(step)


def _reference(data: ToyData, kind: str) -> Reference | None:
    if kind == "none":
        return None
    fn = gp_reference if kind == "gp" else hmc_reference
    return fn(data.x, data.y, data.grid, noise_std=data.noise_std)


def _require_matplotlib() -> None:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise RuntimeError(
            "the toy figure needs matplotlib: pip install 'bayes-by-hypernet[plot]' "
            "(or pass figure=False / --no-figure)"
        ) from None


def _r(t: Tensor | float) -> float:
    return round(float(t), 4)


def _list(t: Tensor) -> list[float]:
    return [round(float(v), 4) for v in t]
