"""Training-length study: does a method's uncertainty depend on how long it trained?

Trains each method at several multiples of a base budget, 3 seeds by default, and scores
accuracy, NLL, ECE (15 bins), mean confidence minus accuracy and the OOD AUROC of the
predictive entropy; for a semi-implicit BbH or Bayes by Backprop it also records each tensor's
sigma quantiles (10%, 50%, 90%) against the step, to show whether sigma reached a stationary
distribution within the run. The methods get their defaults (``bbh.build(name, net)``), and
those with ``temperature="validation"`` their validation split.

Suites:

- ``demo``: ``bbh demo``'s setting (embedded MNIST subset, MLP 784-100-10, 1,800 training and
  200 validation images, batch 100, KL annealed in over epochs 2-6), base 20 epochs (360 steps);
- ``mnist``: LeNet-5 on MNIST (55,000 training, 5,000 validation images), base 5 epochs,
  constant KL weight, notMNIST as OOD data (``--data-dir``).

Each run writes one JSON file into ``--work`` (a finished run is not redone, so several
processes can share the work, e.g. one per core); ``--summarize`` gathers them into
``benchmarks/results/training_length_SUITE.json`` with a figure of each metric against the
steps and one of the sigma quantiles::

    python benchmarks/posterior/training_length.py --suite demo --multiples 1 4 20 --seeds 0 1 2
    python benchmarks/posterior/training_length.py --suite demo --summarize
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

import bbh
from bbh import metrics
from bbh.io import atomic_write, write_json
from bbh.nets import MLP, LeNet5
from bbh.training import FitHooks, annealing, constant, fit, make_optimizer
from bbh.training.schedules import LR_SCHEDULES

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from harness import finish_load, load_guard, machine_info

RESULTS = Path(__file__).resolve().parents[1] / "results"
DEFAULT_METHODS = {"demo": ("map", "mc_dropout", "bbb", "bbh"), "mnist": ("map", "bbb", "bbh")}
DEFAULT_MULTIPLES = {"demo": (1, 4, 20), "mnist": (1, 4)}
#: points of the sigma trajectory per run
TRAJECTORY_POINTS = 20


@dataclass
class Suite:
    make_net: Callable[[], torch.nn.Module]
    base_epochs: float
    train: tuple[torch.Tensor, torch.Tensor]
    val: tuple[torch.Tensor, torch.Tensor]
    test: tuple[torch.Tensor, torch.Tensor]
    ood: torch.Tensor
    anneal_epochs: tuple[int, int] | None  # (start, length) of the KL ramp, None: constant 1
    samples: int  # weight draws per prediction


def load_suite(name: str, data_dir: str | None) -> Suite:
    if name == "demo":
        from bbh.data import load_embedded_mnist, load_embedded_notmnist

        d = load_embedded_mnist()
        x, y = d.train.images, d.train.labels
        return Suite(
            lambda: MLP(784, [100], 10), 20, (x[200:], y[200:]), (x[:200], y[:200]),
            (d.test.images, d.test.labels), load_embedded_notmnist().images, (2, 4), 20,
        )  # fmt: skip
    if data_dir is None:
        raise SystemExit("--suite mnist needs --data-dir (the folder with mnist/ and notmnist/)")
    from bbh.data import load_mnist, load_notmnist

    m = load_mnist(data_dir, offline=True)
    assert m.val is not None
    return Suite(
        LeNet5, 5, (m.train.images, m.train.labels), (m.val.images, m.val.labels),
        (m.test.images, m.test.labels), load_notmnist(data_dir, offline=True).images, None, 30,
    )  # fmt: skip


def sigma_of(model: Any) -> tuple[torch.Tensor, list[Any]] | None:
    """Per-weight sigma ``[D]`` of a semi-implicit BbH or of Bayes by Backprop, with the spec."""
    hypernet = getattr(model, "posterior", None)
    if hypernet is not None and getattr(hypernet, "semi_implicit", False):
        return hypernet.sigma().detach(), list(model.spec)
    posterior = getattr(model, "posterior", None)
    if posterior is not None and hasattr(posterior, "std"):
        return posterior.std.detach(), list(model.spec)
    return None


def sigma_quantiles(model: Any) -> dict[str, list[float]]:
    found = sigma_of(model)
    if found is None:
        return {}
    sigma, spec = found
    q = torch.tensor([0.1, 0.5, 0.9])
    return {
        e.name: [round(float(v), 5) for v in part.float().quantile(q)]
        for e, part in zip(spec, sigma.split([e.numel for e in spec]), strict=True)
    }


@torch.no_grad()
def marginal_moments(
    model: Any, samples: int = 100
) -> tuple[dict[str, list[float]], dict[str, float]]:
    """Per tensor, the 10/50/90% quantiles of q's marginal std per weight and the root mean
    square of q's means (from ``samples`` draws): for BbH the spread of ``G(z)`` and
    ``sigma * eps`` together, what the predictions see. The means' scale tells apart runs
    whose layers settled at other scales (a ReLU net's function is unchanged when one layer's
    weights grow by c and the next's shrink by c; only the weak prior term picks c), which
    moves sigma with them. ``({}, {})`` for a method without weight samples."""
    if sigma_of(model) is None:
        return {}, {}
    total = total_sq = None
    for _ in range(samples // 25):
        w = model.sample_weights(25).double()
        s1, s2 = w.sum(0), w.pow(2).sum(0)
        total = s1 if total is None else total + s1
        total_sq = s2 if total_sq is None else total_sq + s2
    n = 25 * (samples // 25)
    assert total is not None and total_sq is not None
    std = ((total_sq - total.pow(2) / n) / (n - 1)).clamp_min(0).sqrt().float()
    mean = (total / n).float()
    spec = list(model.spec)
    sizes = [e.numel for e in spec]
    std, mean = std[: sum(sizes)], mean[: sum(sizes)]
    q = torch.tensor([0.1, 0.5, 0.9])
    stds = {
        e.name: [round(float(v), 5) for v in part.quantile(q)]
        for e, part in zip(spec, std.split(sizes), strict=True)
    }
    rms = {
        e.name: round(float(part.pow(2).mean().sqrt()), 5)
        for e, part in zip(spec, mean.split(sizes), strict=True)
    }
    return stds, rms


@torch.no_grad()
def predict(model: Any, x: torch.Tensor, samples: int) -> torch.Tensor:
    n = samples if model.stochastic else 1
    return torch.cat([model.predict(b, n) for b in x.split(1000)])


def score(model: Any, suite: Suite) -> dict[str, float]:
    """Test accuracy, NLL, ECE, confidence minus accuracy and the OOD AUROC of the entropy."""
    p_in = predict(model, suite.test[0], suite.samples)
    return score_predictions(p_in, suite.test[1], predict(model, suite.ood, suite.samples))


def score_predictions(
    p_in: torch.Tensor, yt: torch.Tensor, p_out: torch.Tensor
) -> dict[str, float]:
    acc = metrics.accuracy(p_in, yt)
    return {
        "accuracy": acc,
        "nll": metrics.nll(p_in, yt),
        "ece": metrics.expected_calibration_error(p_in, yt),
        "confidence_minus_accuracy": float(p_in.max(-1).values.mean()) - acc,
        "ood_auroc": metrics.auroc(
            metrics.predictive_entropy(p_in), metrics.predictive_entropy(p_out)
        ),
    }


def sigma_recorder(
    model: Any, steps: int, scored: dict[float, float] | None = None
) -> tuple[FitHooks, list[dict[str, Any]]]:
    """Hooks for ``fit`` that record the sigma quantiles at ``TRAJECTORY_POINTS`` steps of a
    ``steps``-step run, and the list they fill; ``scored``: temperature candidates an earlier
    run of the same settings scored, reused by the search (``FitHooks.scored_temperatures``)."""
    every = max(1, steps // TRAJECTORY_POINTS)
    trajectory: list[dict[str, Any]] = []

    class Trajectory(FitHooks):
        def on_step(self, step: int) -> None:
            if step % every == 0 or step == steps:
                trajectory.append({"step": step, "sigma": sigma_quantiles(model)})

        def scored_temperatures(self) -> dict[float, float]:
            return dict(scored or {})

    return Trajectory(), trajectory


def run_one(
    suite: Suite,
    method: str,
    multiple: float,
    seed: int,
    options: dict[str, Any],
    lr_schedule: str = "cooldown",
    sigma_continuation: int = 0,
    scored: dict[float, float] | None = None,
    continuation_adam: str = "carried",
) -> dict[str, Any]:
    torch.manual_seed(seed)
    x, y = suite.train
    per_epoch = len(x) // 100
    steps = round(multiple * suite.base_epochs * per_epoch)
    schedule = (
        annealing(suite.anneal_epochs[0] * per_epoch, suite.anneal_epochs[1] * per_epoch)
        if suite.anneal_epochs and method in ("bbh", "bbb")
        else constant(1.0)
    )
    model = bbh.build(method, suite.make_net(), **options)
    hooks, trajectory = sigma_recorder(model, steps, scored)
    final_state: list[Any] = []
    if sigma_continuation and continuation_adam == "carried":  # keep the optimiser's last state
        hooks.checkpoint_every = steps
        hooks.on_checkpoint = lambda state: final_state.append(  # type: ignore[method-assign]
            copy.deepcopy(state.optimizer)
        )
    start = time.perf_counter()
    result = fit(
        model, x, y, steps=steps, batch_size=100, kl_schedule=schedule, seed=seed,
        log_every=steps, hooks=hooks, validation=suite.val, lr_schedule=lr_schedule,
    )  # fmt: skip
    seconds = time.perf_counter() - start
    # in this order: the records' predictions draw their weight samples as before
    p_in, p_val = predict(model, suite.test[0], suite.samples), predict(model, suite.val[0], 20)
    scores = score_predictions(p_in, suite.test[1], predict(model, suite.ood, suite.samples))
    final = sigma_quantiles(model)
    marginal, mean_rms = marginal_moments(model)
    continued = None
    if sigma_continuation and final:
        if continuation_adam == "carried":
            continued = continue_sigma_carried(
                model, suite, sigma_continuation, schedule(steps), seed, final_state[-1]
            )
        else:
            continued = continue_sigma(model, suite, sigma_continuation, schedule(steps), seed)
        continued["adam"] = continuation_adam
        continued["scores"] = score(model, suite)  # the posterior with sigma settled
    return {
        "method": method,
        "options": options,
        "lr_schedule": lr_schedule,
        "multiple": multiple,
        "seed": seed,
        "steps": steps,
        "epochs": steps / per_epoch,
        **scores,
        "val_nll": metrics.nll(p_val, suite.val[1]),
        "temperature": result.temperature.to_dict() if result.temperature else None,
        "train_seconds": round(seconds, 1),
        "sigma_final": final,
        "marginal_std_final": marginal,
        "mean_rms_final": mean_rms,
        "sigma_trajectory": trajectory,
        "sigma_continued": continued,
    }


#: the parameters of a posterior's scale: BbH's (semi-implicit) and Bayes by Backprop's
SIGMA_PARAMETERS = ("log_sigma_param", "log_sigma_tensor_param", "posterior.log_var")


def continue_sigma(
    model: Any, suite: Suite, steps: int, kl_weight: float, seed: int
) -> dict[str, Any]:
    """Whether the run left sigma at its optimum for the trained means: every other parameter
    frozen, ``steps`` more steps of sigma alone at the run's rate, KL weight and temperature;
    the sigma quantiles after them (the model is changed: call after scoring it)."""
    frozen = []
    for name, p in model.named_parameters():
        if p.requires_grad and not name.endswith(SIGMA_PARAMETERS):
            p.requires_grad_(False)
            frozen.append(name)
    model.temperature_candidates = None  # keep the chosen temperature
    x, y = suite.train
    hooks, trajectory = sigma_recorder(model, steps)
    fit(
        model, x, y, steps=steps, batch_size=100, kl_schedule=constant(kl_weight),
        seed=seed + 1, log_every=steps, lr_schedule="constant", hooks=hooks,
    )  # fmt: skip
    return {
        "steps": steps,
        "frozen": len(frozen),
        "sigma": sigma_quantiles(model),
        "trajectory": trajectory,
    }


def continue_sigma_carried(
    model: Any,
    suite: Suite,
    steps: int,
    kl_weight: float,
    seed: int,
    optimizer_state: dict[str, Any],
) -> dict[str, Any]:
    """``continue_sigma`` with the run's own Adam state carried over (a fresh Adam's first
    steps are about its full rate in the sign of one noisy gradient, which moves a noise-dominated
    sigma by itself): the run's optimiser rebuilt and loaded, every gradient but sigma's dropped
    before each step, sigma's group at its constant rate, batches drawn with ``seed + 1``."""
    sigma = [p for n, p in model.named_parameters() if n.endswith(SIGMA_PARAMETERS)]
    opt = make_optimizer(model.optimizer_groups(model.default_lr), "adam", model.default_lr)
    opt.load_state_dict(optimizer_state)
    x, y = suite.train
    gen = torch.Generator().manual_seed(seed + 1)
    every = max(1, steps // TRAJECTORY_POINTS)
    trajectory: list[dict[str, Any]] = []
    kept = {id(p) for p in sigma}
    frozen = [p for group in opt.param_groups for p in group["params"] if id(p) not in kept]
    model.train()
    for step in range(1, steps + 1):
        idx = torch.randint(len(x), (100,), generator=gen)
        loss, _ = model.loss(x[idx], y[idx], num_data=len(x), kl_weight=kl_weight)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        for p in frozen:
            p.grad = None  # Adam skips a parameter without a gradient
        opt.step()
        if step % every == 0 or step == steps:
            trajectory.append({"step": step, "sigma": sigma_quantiles(model)})
    model.eval()
    return {"steps": steps, "frozen": len(frozen), "sigma": sigma_quantiles(model),
            "trajectory": trajectory}  # fmt: skip


METRICS = ("accuracy", "nll", "ece", "confidence_minus_accuracy", "ood_auroc")


def summarize(suite_name: str, work: Path) -> dict[str, Any]:
    runs = [json.loads(p.read_text()) for p in sorted(work.glob(f"{suite_name}_*.json"))]
    if not runs:
        raise SystemExit(f"no runs of suite {suite_name!r} in {work}")
    table: dict[str, dict[str, Any]] = {}
    for r in runs:
        key = f"{r['method']} x{r['multiple']:g}"
        row = table.setdefault(
            key, {"method": r["method"], "multiple": r["multiple"], "steps": r["steps"], "runs": []}
        )
        row["runs"].append({k: r[k] for k in ("seed", *METRICS, "val_nll", "train_seconds")})
        if r["temperature"]:
            row.setdefault("temperatures", []).append(r["temperature"]["chosen"])
    for row in table.values():
        for m in METRICS:
            values = [run[m] for run in row["runs"]]
            row[m] = sum(values) / len(values)
        row["seeds"] = sorted(run["seed"] for run in row["runs"])
    return {"suite": suite_name, "rows": table, "runs": runs}


def plot(summary: dict[str, Any], out: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = list(summary["rows"].values())
    methods = list(dict.fromkeys(r["method"] for r in rows))
    fig, axes = plt.subplots(1, len(METRICS), figsize=(4 * len(METRICS), 3.4))
    for ax, m in zip(axes, METRICS, strict=True):
        for method in methods:
            mine = sorted((r for r in rows if r["method"] == method), key=lambda r: r["steps"])
            ax.plot([r["steps"] for r in mine], [r[m] for r in mine], "o-", label=method)
            for r in mine:  # each seed
                ax.plot([r["steps"]] * len(r["runs"]), [v[m] for v in r["runs"]], ".", alpha=0.3,
                        color=ax.lines[-1].get_color())  # fmt: skip
        ax.set_xscale("log")
        steps = sorted({r["steps"] for r in rows})
        ax.set_xticks(steps, [str(t) for t in steps])
        ax.minorticks_off()
        ax.set_xlabel("training steps")
        ax.set_title(m.replace("_", " "))
        if m == "confidence_minus_accuracy":
            ax.axhline(0, color="grey", lw=0.8)
    axes[0].legend(fontsize=8)
    fig.suptitle(f"training-length study, suite {summary['suite']} (mean of seeds, dots: seeds)")
    paths = [out.with_suffix(".png")]
    atomic_write(paths[0], lambda p: fig.savefig(p, dpi=110, bbox_inches="tight", format="png"))
    plt.close(fig)
    # sigma quantiles against the step: the longest run of each stochastic method, first seed
    longest = {}
    for r in summary["runs"]:
        has_sigma = any(p["sigma"] for p in r["sigma_trajectory"])
        if has_sigma and (
            r["method"] not in longest
            or (r["steps"], -r["seed"])
            > (longest[r["method"]]["steps"], -longest[r["method"]]["seed"])
        ):
            longest[r["method"]] = r
    if longest:
        fig, axes = plt.subplots(1, len(longest), figsize=(6 * len(longest), 4), squeeze=False)
        for ax, (method, r) in zip(axes[0], longest.items(), strict=True):
            names = list(r["sigma_trajectory"][0]["sigma"])
            for i, name in enumerate(names):
                steps = [p["step"] for p in r["sigma_trajectory"]]
                q = [p["sigma"][name] for p in r["sigma_trajectory"]]
                color = f"C{i % 10}"
                ax.plot(steps, [v[1] for v in q], color=color, label=name)
                ax.fill_between(
                    steps, [v[0] for v in q], [v[2] for v in q], color=color, alpha=0.15
                )
            ax.set_yscale("log")
            ax.set_xlabel("training step")
            ax.set_ylabel("sigma (median, 10-90% band)")
            t = (r.get("temperature") or {}).get("chosen")
            ax.set_title(f"{method}, {r['steps']} steps, seed {r['seed']}"
                         + (f", T = {t:g} chosen after" if t else ""))  # fmt: skip
            ax.legend(fontsize=7, ncol=2)
        paths.append(out.with_name(out.stem + "_sigma.png"))
        atomic_write(paths[1], lambda p: fig.savefig(p, dpi=110, bbox_inches="tight", format="png"))
        plt.close(fig)
    return paths


def earlier_candidates(path: Path, options: dict[str, Any], suite: Suite) -> dict[float, float]:
    """The temperature candidates of the record at ``path`` (the same suite, method, budget,
    seed and options): ``{T: val_nll}``; empty where it has none."""
    if not path.is_file():
        return {}
    row = json.loads(path.read_text())
    search = row.get("temperature")
    if not search or row.get("options") != options or search["val_examples"] != len(suite.val[1]):
        return {}
    return dict(zip(search["candidates"], search["val_nll"], strict=True))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--suite", choices=("demo", "mnist"), required=True)
    parser.add_argument("--data-dir", help="data root for --suite mnist")
    parser.add_argument("--methods", nargs="+", help="registry names (default: per suite)")
    parser.add_argument("--multiples", type=float, nargs="+", help="of the base budget")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument(
        "--options", default="{}", help="JSON options for every method, e.g. a fixed temperature"
    )
    parser.add_argument("--lr-schedule", choices=LR_SCHEDULES, default="cooldown")
    parser.add_argument(
        "--sigma-continuation",
        type=int,
        default=0,
        metavar="STEPS",
        help="after each run, train sigma alone for STEPS more steps (the means frozen) and "
        "record where it goes: a sigma at its optimum for the trained means stays",
    )
    parser.add_argument(
        "--continuation-adam",
        choices=("carried", "fresh"),
        default="carried",
        help="the sigma continuation's optimiser: the run's Adam state carried over, or a "
        "fresh Adam (the records before this option)",
    )
    parser.add_argument("--tag", default="", help="names the runs of --options apart")
    parser.add_argument(
        "--scored-from",
        type=Path,
        metavar="WORK",
        help="a --work folder of the same runs made with a shorter temperature grid: its "
        "candidates' validation NLLs are reused, only the new candidates are trained",
    )
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--work", type=Path, default=Path("runs/training_length"))
    parser.add_argument("--summarize", action="store_true", help="gather the runs in --work")
    parser.add_argument("--out", type=Path, help="record path (default benchmarks/results/...)")
    args = parser.parse_args()
    out = args.out or RESULTS / f"training_length_{args.suite}.json"
    if args.summarize:
        summary = summarize(args.suite, args.work)
        summary["machine"] = machine_info(torch.device("cpu"))
        summary["command"] = " ".join(sys.argv)
        write_json(out, summary)
        for p in [out, *plot(summary, out)]:
            print(f"wrote {p}", file=sys.stderr)
        for key, row in summary["rows"].items():
            cells = " ".join(f"{m} {row[m]:.4f}" for m in METRICS)
            temps = f" T {row['temperatures']}" if row.get("temperatures") else ""
            print(f"{key:16s} steps {row['steps']:6d} seeds {row['seeds']} {cells}{temps}")
        return
    torch.set_num_threads(args.threads)
    load = load_guard(allow_busy=True)  # accuracy, not timing: the load is only recorded
    suite = load_suite(args.suite, args.data_dir)
    args.work.mkdir(parents=True, exist_ok=True)
    for multiple in args.multiples or DEFAULT_MULTIPLES[args.suite]:
        for method in args.methods or DEFAULT_METHODS[args.suite]:
            for seed in args.seeds:
                name = method + (f"-{args.tag}" if args.tag else "")
                path = args.work / f"{args.suite}_{name}_x{multiple:g}_s{seed}.json"
                if path.exists():
                    continue
                options = json.loads(args.options)
                scored = (
                    earlier_candidates(args.scored_from / path.name, options, suite)
                    if args.scored_from
                    else None
                )
                row = run_one(
                    suite, method, multiple, seed, options, args.lr_schedule,
                    args.sigma_continuation, scored, args.continuation_adam,
                )  # fmt: skip
                if scored:
                    row["scored_from"] = str(args.scored_from / path.name)
                row["method"] = name
                row["load"] = finish_load(dict(load))
                write_json(path, row)
                t = row["temperature"]["chosen"] if row["temperature"] else None
                print(
                    f"{name} x{multiple:g} seed {seed}: acc {row['accuracy']:.4f} nll "
                    f"{row['nll']:.4f} ece {row['ece']:.4f} gap "
                    f"{row['confidence_minus_accuracy']:+.4f} auroc {row['ood_auroc']:.4f}"
                    + (f" T {t:g}" if t is not None else "")
                    + f" ({row['train_seconds']:.0f} s)",
                    flush=True,
                )


if __name__ == "__main__":
    main()
