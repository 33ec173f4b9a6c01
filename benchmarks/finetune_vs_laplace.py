"""Bayesian fine-tuning of a trained net against laplace-torch's last-layer Laplace on the same net.

    bbh train mnist/map --scale cpu --out runs/ft/map-seed0              # a trained LeNet-5
    python benchmarks/finetune_vs_laplace.py --runs runs/ft/map-seed0 --data-dir DATA --threads 1

The same for the CIFAR ResNet (``bbh train cifar5/map --scale cpu``): Laplace is fitted on the
training images as the net takes them (``plain_inputs``), BbH fine-tunes through the run's
augmentation, and the validation split goes through the run's input transform.

For each trained ``map`` run (one per seed), in one process and in turn:

- ``laplace``: the peer ``bbh.peers`` fits post hoc on the trained net (last layer, KFAC, prior
  precision by marginal likelihood), scored as every row is, by the mean softmax of weight draws
  (here draws of the GLM's Gaussian over the logits: the GLM predictive up to Monte Carlo error);
  its fitting wall time;
- ``laplace (probit)``: the same fit scored by laplace-torch's recommended probit link
  (``LaplacePeer.with_link("probit")``), the closed-form approximation of that predictive;
- ``bbh``: ``bbh.finetune(net, ..., "bbh")`` for one epoch from the trained weights, the KL's
  temperature chosen on the run's validation split (full-length candidates, the default);
- ``bbh (short search)``: the same with each candidate trained for a fifth of the epoch
  (``temperature_steps``), the cheaper search;
- ``bbh (last layer)``: the short search with the net's last ``nn.Linear`` alone Bayesian and
  every other parameter frozen at its trained value (``requires_grad_(False)`` on a copy, which
  leaves those parameters out of the posterior and out of training): Laplace's own setting,
  a posterior on the last layer over the trained features;
- ``bbh (last layer, kronecker)``: the same with the Kronecker-factored generator
  (``generator="kronecker"``: a matrix-normal posterior on the layer, KFAC's family, trained by
  the ELBO with its exact KL);
- ``map``: the trained net itself, for reference.

Each is scored as ``bbh evaluate`` scores a run (the config's weight samples; accuracy, NLL, ECE,
OOD AUROC against the config's OOD set, no attacks); the record holds the scores, the wall times
and their ratios to Laplace's fit. The target (issue: one epoch of BbH beats last-layer Laplace in
NLL and OOD AUROC in at most 3x Laplace's fitting wall time) is printed with each seed's verdict.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bbh
import harness
from bbh.evaluation import evaluate
from bbh.experiments.builders import load_run_data
from bbh.experiments.compare import plain_inputs
from bbh.experiments.runs import load_with_config
from bbh.experiments.train import validation_pair
from bbh.peers import train_peer

ROWS = ("map", "laplace", "laplace (probit)", "bbh", "bbh (short search)", "bbh (last layer)",
        "bbh (last layer, kronecker)")  # fmt: skip
#: the rows every run scores (the trained net and the two predictives of Laplace's one fit)
ALWAYS = ROWS[:3]
#: the fine-tuned rows (each timed against Laplace's fit)
FINETUNED = ROWS[3:]
METRICS = ("accuracy", "nll", "ece", "auroc")


def last_layer_only(net: torch.nn.Module) -> torch.nn.Module:
    """A copy of ``net`` whose parameters are frozen but for its last ``nn.Linear``'s."""
    out = copy.deepcopy(net)
    linears = [m for m in out.modules() if isinstance(m, torch.nn.Linear)]
    if not linears:
        raise SystemExit(f"{type(net).__name__} has no nn.Linear layer to make Bayesian")
    out.requires_grad_(False)
    linears[-1].requires_grad_(True)
    return out


def one_seed(
    run: Path, data_dir: str | None, rows: tuple[str, ...] = ROWS, num_samples: int | None = None
) -> dict[str, Any]:
    """Fit, fine-tune and score ``rows`` (``map`` and ``laplace`` always) on ``run``'s net, with
    ``num_samples`` weight draws per test input (None: the run config's)."""
    trained, cfg = load_with_config(run)
    if data_dir is not None:
        cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, root=data_dir))
    data = load_run_data(cfg)
    val = validation_pair(data, torch.device("cpu"))  # as the model takes it (CIFAR: cropped)
    if val is None:
        raise SystemExit(f"{run}: its config holds out no validation split (data.validation_size)")
    x, y = data.train_x, data.train_y
    plain = plain_inputs(data)  # CIFAR: uint8 images as the net takes them, for Laplace's fit
    net = trained.net
    batch, seed = cfg.train.batch_size, cfg.seed
    epoch = len(y) // batch
    models: dict[str, Any] = {"map": trained}
    seconds: dict[str, float] = {}

    clock = time.perf_counter()
    models["laplace"] = train_peer("laplace", net, plain, y, steps=1, batch_size=batch, seed=seed,
                                   pretrained=True)  # fmt: skip
    seconds["laplace"] = time.perf_counter() - clock
    models["laplace (probit)"] = models["laplace"].with_link("probit")
    augment = {"transform": data.train_transform} if data.train_transform is not None else {}
    short = {**augment, "temperature_steps": max(1, epoch // 5)}
    kronecker = {"generator": "kronecker"}
    starts = {"bbh": (net, augment, {}), "bbh (short search)": (net, short, {}),
              "bbh (last layer)": (last_layer_only(net), short, {}),
              "bbh (last layer, kronecker)": (last_layer_only(net), short, kronecker)}  # fmt: skip
    for row in FINETUNED:
        if row not in rows:
            continue
        start, options, method_options = starts[row]
        torch.manual_seed(seed)
        clock = time.perf_counter()
        models[row] = bbh.finetune(start, x, y, "bbh", steps=epoch, batch_size=batch,
                                   validation=val, seed=seed, fit_options=options,
                                   **method_options)  # fmt: skip
        seconds[row] = time.perf_counter() - clock

    scores: dict[str, dict[str, float]] = {}
    evaluate_seconds: dict[str, float] = {}
    draws = cfg.eval.num_samples if num_samples is None else num_samples
    for row, model in models.items():
        torch.manual_seed(seed)
        clock = time.perf_counter()
        ext = evaluate(
            model.eval(), data.test.images, data.test.labels, ood_x=data.ood.images,
            num_samples=draws, batch_size=cfg.eval.batch_size, attacks=None,
            input_transform=data.input_transform, progress=False,
            generator=torch.Generator().manual_seed(seed),
        )["extended"]  # fmt: skip
        evaluate_seconds[row] = time.perf_counter() - clock
        scores[row] = {"accuracy": ext["accuracy"], "nll": ext["nll"], "ece": ext["ece"],
                       "auroc": ext["ood"]["entropy"]["auroc"]}  # fmt: skip
        print(f"{run.name} {row:20s} " + " ".join(f"{m} {scores[row][m]:.4f}" for m in METRICS)
              + (f"  {seconds[row]:.1f} s" if row in seconds else ""), file=sys.stderr)  # fmt: skip
    ratios = {row: seconds[row] / seconds["laplace"] for row in seconds}
    temperature = {row: float(models[row].temperature) for row in seconds if row != "laplace"}
    return {"run": str(run), "seed": seed, "steps": epoch, "num_samples": draws,
            "scores": scores, "seconds": seconds, "seconds_over_laplace_fit": ratios,
            "evaluate_seconds": evaluate_seconds,
            "temperature": temperature}  # fmt: skip


def verdict(row: dict[str, Any], name: str, laplace: str = "laplace") -> dict[str, bool]:
    """The target's three parts for row ``name`` against Laplace (the row ``laplace``) in one
    seed."""
    s, lap = row["scores"][name], row["scores"][laplace]
    return {
        "nll_below_laplace": s["nll"] < lap["nll"],
        "auroc_above_laplace": s["auroc"] > lap["auroc"],
        "within_3x_laplace_fit": row["seconds_over_laplace_fit"][name] <= 3.0,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=Path, nargs="+", required=True, help="trained map run folders")
    ap.add_argument("--data-dir", help="data root (default: the runs' own)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--num-samples", type=int, default=None,
                    help="weight draws per test input for every sampled row, Laplace's GLM samples"
                    " included (default: the run config's eval.num_samples)")  # fmt: skip
    ap.add_argument("--rows", nargs="+", choices=FINETUNED, default=list(FINETUNED),
                    help="fine-tuned rows (default: all; map and Laplace always)")  # fmt: skip
    ap.add_argument(
        "--out", type=Path, default=Path("benchmarks/results/finetune_vs_laplace_mnist.json")
    )
    args = ap.parse_args(argv)  # fmt: skip
    torch.set_num_threads(args.threads)
    load = harness.load_guard(allow_busy=True)  # the times are ratios within one process
    chosen = tuple(r for r in ROWS if r in (*ALWAYS, *args.rows))
    rows = [one_seed(run, args.data_dir, chosen, args.num_samples) for run in args.runs]
    means = {
        name: {m: statistics.fmean(r["scores"][name][m] for r in rows) for m in METRICS}
        for name in chosen
    }
    for name in chosen[len(ALWAYS) :]:
        ratio = statistics.fmean(r["seconds_over_laplace_fit"][name] for r in rows)
        means[name]["seconds_over_laplace_fit"] = ratio
        for laplace in ALWAYS[1:]:
            verdicts = [verdict(r, name, laplace) for r in rows]
            print(f"{name} against {laplace}: mean time {ratio:.2f}x Laplace's fit; per seed "
                  f"{verdicts}", file=sys.stderr)  # fmt: skip
    record = {"benchmark": "finetune_vs_laplace", "rows": rows, "means": means}
    harness.write_record(args.out, record, device=torch.device("cpu"),
                         load=load)  # fmt: skip

    return 0


if __name__ == "__main__":
    sys.exit(main())
