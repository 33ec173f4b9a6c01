"""What the KL's temperature trades: in-distribution NLL against calibration under rotation.

    python benchmarks/temperature_under_shift.py --map-run runs/compare-mnist/runs/map-seed0 \\
        --data-dir DATA --temperatures 0.03 0.1 0.3 1 --out-runs runs/temperature-shift

The recommended BbH chooses its temperature by the validation NLL, an in-distribution score.
On rotated MNIST (``bbh compare mnist``) MC dropout is better calibrated than it, with a worse
in-distribution NLL. This trains the recommended BbH (``mnist/bbh`` at the cpu scale, the MAP
run's seed) at each fixed temperature into ``--out-runs`` (a finished run is reused) and scores
each as ``bbh compare`` scores a row (``score_method``: accuracy, NLL, ECE, notMNIST AUROC, and
the means over the rotations 0-180 degrees in steps of 15; no attacks), with the MAP run as the
prediction-time reference. The record holds each temperature's numbers.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

import harness
from bbh.data.shift import rotation_shifts
from bbh.experiments.builders import load_run_data
from bbh.experiments.compare import score_method
from bbh.experiments.config import load_config
from bbh.experiments.runs import load_with_config
from bbh.experiments.train import train_run, with_data_root

METRICS = ("accuracy", "nll", "ece", "auroc", "shift_accuracy", "shift_nll", "shift_ece")


def one_temperature(
    temperature: float,
    map_run: Path,
    out_runs: Path,
    data_dir: str | None,
    config: str,
    extra: list[str],
) -> dict[str, Any]:
    """Train (or reuse) ``config`` at ``temperature`` (with the ``extra`` overrides) and score
    it against ``map_run``'s MAP."""
    map_method, map_cfg = load_with_config(map_run)
    if data_dir is not None:
        map_cfg = with_data_root(map_cfg, data_dir)
    overrides = [f"seed={map_cfg.seed}", f"method.options.temperature={temperature}", *extra]
    cfg = with_data_root(load_config(config, scale="cpu", overrides=overrides), data_dir)
    run = out_runs / f"T{temperature:g}"
    outcome = train_run(cfg, run, resume=None, progress=False)
    method, _ = load_with_config(run)
    record = score_method(
        method, map_method, load_run_data(map_cfg), map_cfg, attacks=None,
        shifts=rotation_shifts(), ood2=None, seed=map_cfg.seed,
        batch_size=map_cfg.eval.batch_size,
    )  # fmt: skip
    scores = {m: record["metrics"][m] for m in METRICS}
    print(f"T {temperature:g}: " + " ".join(f"{m} {v:.4f}" for m, v in scores.items()),
          file=sys.stderr)  # fmt: skip
    return {"temperature": temperature, "run": str(run), "status": outcome.status, **scores}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--map-run", type=Path, required=True, help="a trained mnist/map run folder")
    ap.add_argument("--data-dir", help="data root (default: the run's own)")
    ap.add_argument("--temperatures", type=float, nargs="+", default=[0.03, 0.1, 0.3, 1.0])
    ap.add_argument("--config", default="mnist/bbh", help="the config trained at each temperature")
    ap.add_argument("--out-runs", type=Path, default=Path("runs/temperature-shift"))
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                    help="override a value of the trained config (repeatable)")  # fmt: skip
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument(
        "--out", type=Path, default=Path("benchmarks/results/temperature_under_shift_mnist.json")
    )
    args = ap.parse_args(argv)
    if any(t <= 0 for t in args.temperatures):
        ap.error(f"--temperatures must be positive, got {args.temperatures}")
    torch.set_num_threads(args.threads)
    load = harness.load_guard(allow_busy=True)  # scores, not times
    rows = [
        one_temperature(t, args.map_run, args.out_runs, args.data_dir, args.config, args.overrides)
        for t in args.temperatures
    ]
    record = {"benchmark": "temperature_under_shift", "map_run": str(args.map_run), "rows": rows}
    harness.write_record(args.out, record, device=torch.device("cpu"), load=load)
    return 0


if __name__ == "__main__":
    sys.exit(main())
