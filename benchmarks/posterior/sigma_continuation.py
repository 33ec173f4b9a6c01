"""Is sigma at its stationary point when the run ends? The run's per-tensor sigma quantiles
against the step, then sigma alone continued at the constant base rate with every other
parameter frozen (``training_length.py --sigma-continuation STEPS``).

A sigma left at its optimum for the trained means fluctuates around where the run left it once
continued (Adam's noise at the base rate); one the run stopped short of drifts away. For each
run and tensor the record holds the final median, the mean of the continuation's second half,
their ratio (``drift``: 1 is stationary), and the test scores before and after the continuation.
The continuation carries the run's Adam state (``--continuation-adam carried``, the default): a
fresh Adam's first steps, about its full rate in the sign of one noisy gradient, move a
noise-dominated sigma by themselves (on MNIST 1.4-4x within 100 steps, `fresh` in the record).
The figure has a column per tensor and a row per budget: the run in colour, the continuation
after the dashed line, medians solid and the 10% / 90% quantiles dotted, one colour per seed
(per run where the runs are of several methods)::

    python benchmarks/posterior/sigma_continuation.py --out benchmarks/results/NAME.json \\
        runs/tl_cont/demo_bbh-vertex-cont_x1_s0.json ...
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path
from typing import Any

from bbh.io import atomic_write, write_json

SCORES = ("accuracy", "nll", "ece", "confidence_minus_accuracy", "ood_auroc")


def load_run(path: Path) -> dict[str, Any]:
    run = json.loads(path.read_text())
    cont = run.get("sigma_continued")
    if not cont or not cont.get("trajectory") or not run.get("sigma_trajectory"):
        raise SystemExit(
            f"{path}: no sigma continuation (run training_length.py with "
            "--sigma-continuation STEPS on a BbH or Bayes by Backprop run)"
        )
    return run


def summarize_run(path: Path, run: dict[str, Any]) -> dict[str, Any]:
    cont = run["sigma_continued"]
    second_half = [p for p in cont["trajectory"] if p["step"] > cont["steps"] / 2]
    tensors = {}
    for name, (_, median, _) in run["sigma_final"].items():
        later = statistics.fmean(p["sigma"][name][1] for p in second_half)
        tensors[name] = {
            "final_median": median,
            "continued_median_mean": round(later, 6),
            "drift": round(later / median, 3),
        }
    return {
        "file": str(path),
        "method": run["method"],
        "multiple": run["multiple"],
        "seed": run["seed"],
        "steps": run["steps"],
        "continued_steps": cont["steps"],
        # the continuation's optimiser: the run's Adam state, or a fresh Adam (older records)
        "continuation_adam": cont.get("adam", "fresh"),
        "temperature": run["options"].get("temperature"),
        "before": {k: run[k] for k in SCORES},
        "after": {k: cont["scores"][k] for k in SCORES},
        "tensors": tensors,
    }


def plot(runs: list[dict[str, Any]], out: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    budgets = sorted({r["multiple"] for r in runs})
    names = list(runs[0]["sigma_final"])
    cols = min(4, len(names))
    per_budget = -(-len(names) // cols)  # rows of panels per budget
    fig, grid = plt.subplots(
        len(budgets) * per_budget, cols, figsize=(3.6 * cols, 2.6 * len(budgets) * per_budget),
        squeeze=False,
    )  # fmt: skip
    # axes[i][j]: budget i, tensor j
    axes = [
        [grid[i * per_budget + j // cols][j % cols] for j in range(len(names))]
        for i in range(len(budgets))
    ]
    for ax in grid.flat[len(names) :] if len(budgets) == 1 else ():
        ax.set_visible(False)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    # one colour per seed, or per run where the runs are of several methods (tags)
    several = len({r["method"] for r in runs}) > 1
    keys = sorted({(r["method"] if several else "", r["seed"]) for r in runs})
    for i, budget in enumerate(budgets):
        for run in (r for r in runs if r["multiple"] == budget):
            key = (run["method"] if several else "", run["seed"])
            colour = colours[keys.index(key) % len(colours)]
            label = f"{key[0]} seed {key[1]}".strip()
            n = run["steps"]
            points = [(p["step"], p["sigma"]) for p in run["sigma_trajectory"]]
            points += [(n + p["step"], p["sigma"]) for p in run["sigma_continued"]["trajectory"]]
            for j, name in enumerate(names):
                ax = axes[i][j]
                steps = [s for s, _ in points]
                for q, style in ((1, "-"), (0, ":"), (2, ":")):
                    ax.plot(steps, [sig[name][q] for _, sig in points], style, color=colour,
                            lw=1.2 if q == 1 else 0.8,
                            label=label if q == 1 else None)  # fmt: skip
                ax.axvline(n, color="grey", ls="--", lw=0.8)
        for j, name in enumerate(names):
            ax = axes[i][j]
            ax.set_yscale("log")
            ax.set_title(f"{name}, {budget:g}x: run | sigma alone", fontsize=8)
            ax.set_xlabel("step", fontsize=8)
            ax.tick_params(labelsize=7)
        axes[i][0].set_ylabel("sigma (median, 10%, 90%)", fontsize=8)
        axes[i][0].legend(fontsize=7)
    fig.tight_layout()
    path = out.with_suffix(".png")
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=110, format="png"))
    plt.close(fig)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", type=Path, nargs="+", help="training_length.py run files")
    parser.add_argument("--out", type=Path, required=True, help="record path (.json)")
    parser.add_argument("--what", default="", help="what the runs are, for the record")
    args = parser.parse_args()
    runs = [load_run(p) for p in args.runs]
    rows = [summarize_run(p, r) for p, r in zip(args.runs, runs, strict=True)]
    write_json(args.out, {"what": args.what, "runs": rows})
    print(f"wrote {args.out} and {plot(runs, args.out)}")
    for row in rows:
        drift = " ".join(f"{n} {t['drift']:.2f}" for n, t in row["tensors"].items())
        change = " ".join(
            f"{k} {row['before'][k]:.4f}->{row['after'][k]:.4f}"
            for k in ("nll", "ece", "ood_auroc")
        )
        print(f"{row['method']} {row['multiple']:g}x seed {row['seed']}: drift {drift} | {change}")


if __name__ == "__main__":
    main()
