"""Does sigma forget where it started? Per-tensor sigma quantiles against the step, runs from
two starts overlaid.

Reads run files of ``training_length.py`` (each holds its ``sigma_trajectory``: the 10%, 50%
and 90% quantiles of every generated tensor's sigma at 20 points of the run, and its final
``sigma_final``), groups them by ``--group LABEL RUN_FROM_START_A RUN_FROM_START_B``, and writes
a figure (a row per group, a column per tensor; median solid, 10% and 90% dotted, one colour per
start) and a record with the final quantiles and the ratio of the two starts' final medians::

    python benchmarks/posterior/sigma_stationarity.py --out benchmarks/results/NAME.json \\
        --group "per weight" runs/a_01.json runs/a_05.json \\
        --group "shared tensor scale" runs/b_01.json runs/b_05.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from bbh.io import atomic_write, write_json


def load_run(path: Path) -> dict[str, Any]:
    run = json.loads(path.read_text())
    if not run.get("sigma_trajectory") or not run.get("sigma_final"):
        raise SystemExit(f"{path}: no sigma trajectory (not a semi-implicit BbH/BbB run)")
    return run


def start_of(run: dict[str, Any]) -> float:
    """The initial sigma of a run (``weight_noise``; the recommended 0.01 where not given)."""
    return float(run.get("options", {}).get("weight_noise", 0.01))


def compare(groups: list[tuple[str, list[Path]]]) -> dict[str, Any]:
    record: dict[str, Any] = {"groups": []}
    for label, paths in groups:
        runs = [load_run(p) for p in paths]
        a, b = runs
        ratio = {
            name: round(b["sigma_final"][name][1] / a["sigma_final"][name][1], 3)
            for name in a["sigma_final"]
        }
        record["groups"].append(
            {
                "label": label,
                "runs": [
                    {
                        "file": str(p),
                        "start": start_of(r),
                        "method": r["method"],
                        "options": r["options"],
                        "steps": r["steps"],
                        "metrics": {
                            k: r[k]
                            for k in ("accuracy", "nll", "ece", "confidence_minus_accuracy")
                            if k in r
                        }
                        | {"ood_auroc": r.get("ood_auroc")},
                        "sigma_final": r["sigma_final"],
                        "marginal_std_final": r.get("marginal_std_final"),
                        # sigma after STEPS more steps of sigma alone (--sigma-continuation)
                        "sigma_continued": r.get("sigma_continued"),
                    }
                    for p, r in zip(paths, runs, strict=True)
                ],
                "final_median_ratio": ratio,
            }
        )
        record["groups"][-1]["_trajectories"] = [r["sigma_trajectory"] for r in runs]
    return record


def plot(record: dict[str, Any], out: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = record["groups"]
    names = list(groups[0]["runs"][0]["sigma_final"])
    fig, axes = plt.subplots(
        len(groups), len(names), figsize=(3.2 * len(names), 2.6 * len(groups)), squeeze=False
    )
    colours = ("tab:blue", "tab:red")
    for row, group in enumerate(groups):
        for col, name in enumerate(names):
            ax = axes[row][col]
            for run, traj, colour in zip(
                group["runs"], group["_trajectories"], colours, strict=True
            ):
                steps = [p["step"] for p in traj]
                q = [p["sigma"][name] for p in traj]
                ax.plot(steps, [v[1] for v in q], color=colour, label=f"from {run['start']:g}")
                for i in (0, 2):
                    ax.plot(steps, [v[i] for v in q], color=colour, ls=":", lw=0.9)
            ax.set_yscale("log")
            ax.set_title(f"{name}\n{group['label']}", fontsize=8)
            if row == len(groups) - 1:
                ax.set_xlabel("step")
            if col == 0:
                ax.set_ylabel("sigma (10/50/90%)")
                ax.legend(fontsize=7)
    fig.tight_layout()
    path = out.with_suffix(".png")
    atomic_write(path, lambda p: fig.savefig(p, dpi=100, bbox_inches="tight", format="png"))
    plt.close(fig)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--group",
        nargs=3,
        action="append",
        metavar=("LABEL", "RUN_A", "RUN_B"),
        required=True,
        help="a label and two run files of training_length.py, from two starts",
    )
    parser.add_argument("--out", type=Path, required=True, help="record path (.json)")
    parser.add_argument("--what", default="", help="what the runs are, for the record")
    args = parser.parse_args()
    record = compare([(label, [Path(a), Path(b)]) for label, a, b in args.group])
    record["what"] = args.what
    figure = plot(record, args.out)
    for group in record["groups"]:
        group["trajectories"] = group.pop("_trajectories")
        print(group["label"], "final median ratio:", group["final_median_ratio"])
    write_json(args.out, record)
    print(f"wrote {args.out} and {figure}")


if __name__ == "__main__":
    main()
