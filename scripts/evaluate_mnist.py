"""Train a method briefly on MNIST, evaluate it with notMNIST as OOD data, write JSON and figures.

The evaluation is the paper's protocol plus the extended suite (PAPER.md section 9,
``bbh.evaluation.evaluate``), followed by the paper's qualitative MNIST studies: rotations of test
images #270 (a 3), #202 (a 1) and #217 (a 6), the 3-to-8 mixup of #270 and #391, the per-class
probability spread, and weight statistics for methods with ``sample_weights``.

Examples (CPU):

    python scripts/evaluate_mnist.py --method map --steps 300 --out runs/eval-map
    python scripts/evaluate_mnist.py --method mc_dropout --steps 500 --out runs/eval-dropout
    python scripts/evaluate_mnist.py --method bbh --option generator=chunked --steps 500 \
        --out runs/eval-bbh
    python scripts/evaluate_mnist.py --data mnist --data-dir ~/data --method bbh --steps 5000 ...

``--data embedded`` (the default) uses the 2,000/1,000-image MNIST and 1,000-image notMNIST
subsets shipped with ``bbh``: fine for a smoke run, not for results. With 2,000 training images
the ``KL / N`` term of a 431k-weight LeNet dwarfs the likelihood, so weight-posterior methods
collapse to the prior at ``beta = 1``; anneal (``--kl-anneal``) and/or pass ``--num-data 55000``
(the KL pressure per example of full MNIST), and say so when reporting. There the paper's test
indices do not exist, so the first embedded test image of the same digit stands in (recorded in
the JSON). ``--quick`` cuts every sample count (10 weight samples, R = 10, 20 attack images).

Outputs in ``--out``: ``result.json`` and ``reliability.png``, ``entropy_histograms.png``,
``robustness.png``, ``rotation_<idx>.png``, ``mixup.png``, ``class_spread.png`` and, where the
method has weight samples, ``weight_correlation.png`` and ``weight_histograms.png``.
"""

from __future__ import annotations

import argparse
import ast
import sys
import time
from pathlib import Path
from typing import Any

import torch

from bbh.data import load_embedded_mnist, load_mnist
from bbh.evaluation import (
    PAPER_MIXUP,
    PAPER_MIXUP_LAMBDAS,
    PAPER_ROTATIONS,
    AttackConfig,
    evaluate,
    figures,
    mixup_study,
    rotation_study,
    sample_probs,
    weight_statistics,
    write_json,
)
from bbh.methods import available, build
from bbh.nets.lenet import LeNet5
from bbh.training import annealing, constant, fit

PAPER_DIGITS = {270: 3, 202: 1, 217: 6, 391: 8}  # the digits the paper's test indices show


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    torch.manual_seed(args.seed)
    out = Path(args.out)
    if args.data == "embedded":
        data = load_embedded_mnist(with_ood=True)
    else:
        data = load_mnist(args.data_dir, with_ood=True)
    assert data.ood is not None
    train, test, ood = data.train, data.test, data.ood
    options = dict(_option(o) for o in args.option)
    method = build(args.method, LeNet5(), **options)
    print(f"training {args.method} {options} on {len(train.images)} images", file=sys.stderr)
    if args.kl_anneal:
        start, length = (int(v) for v in args.kl_anneal.split(","))
        schedule = annealing(start, length)
    else:
        schedule = constant(args.kl_weight)
    fitted = fit(
        method,
        train.images,
        train.labels,
        steps=args.steps,
        batch_size=args.batch_size,
        lr=args.lr,
        seed=args.seed,
        kl_schedule=schedule,
        num_data=args.num_data,
        verbose=True,
        log_every=max(args.steps // 5, 1),
    )
    method.eval()

    samples = 10 if args.quick else args.num_samples
    attacks = AttackConfig(
        num_images=20 if args.quick else 100,
        num_grad_samples=10 if args.quick else 100,
        attack_samples=5 if args.quick else 10,
    )
    t0 = time.monotonic()
    result = evaluate(
        method,
        test.images,
        test.labels,
        ood_x=ood.images,
        num_samples=samples,
        batch_size=args.eval_batch_size,
        attacks=attacks,
        generator=torch.Generator().manual_seed(args.seed),
    )
    result["meta"].update(
        data=data.source or data.name,
        method_name=args.method,
        method_options={k: repr(v) for k, v in options.items()},
        train_steps=args.steps,
        kl_weight=args.kl_weight,
        kl_anneal=args.kl_anneal,
        num_data=args.num_data or len(train.images),
        train_seconds=fitted.seconds,
        train_log=fitted.logs,
    )

    # qualitative studies (PAPER.md section 9)
    index = _paper_images(test.labels, args.data == "embedded")
    result["studies"] = {"image_index": {str(k): v for k, v in index.items()}}
    written = figures.write_figures(result, out)
    for paper_idx, angles in PAPER_ROTATIONS.items():
        study = rotation_study(method, test.images[index[paper_idx]], angles, num_samples=samples)
        result["studies"][f"rotation_{paper_idx}"] = study.to_dict()
        written[f"rotation_{paper_idx}"] = str(
            figures.study_strip(study, out / f"rotation_{paper_idx}.png")
        )
    a, b = (test.images[index[i]] for i in PAPER_MIXUP)
    mix = mixup_study(method, a, b, PAPER_MIXUP_LAMBDAS, num_samples=samples)
    result["studies"]["mixup"] = mix.to_dict()
    written["mixup"] = str(figures.study_strip(mix, out / "mixup.png"))
    spread_x = torch.stack([test.images[index[i]] for i in PAPER_ROTATIONS] + [ood.images[0]])
    written["class_spread"] = str(
        figures.class_spread_plot(
            sample_probs(method, spread_x, num_samples=samples),
            out / "class_spread.png",
            title="Per-class probability across weight samples",
            input_labels=[f"test #{i}" for i in PAPER_ROTATIONS] + ["notMNIST #0"],
        )
    )
    sampler = getattr(method, "sample_weights", None)
    if callable(sampler):  # the paper: 1000 weight samples, first conv kernel = 500 parameters
        n = 100 if args.quick else 1000
        with torch.no_grad():
            stats = weight_statistics(
                sampler(min(n, 100)).detach() for _ in range(max(n // 100, 1))
            )
        result["weights"] = stats.to_dict()
        written["weight_correlation"] = str(
            figures.weight_correlation_map(stats, out / "weight_correlation.png")
        )
        written["weight_histograms"] = str(
            figures.weight_histograms(stats, out / "weight_histograms.png")
        )
    result["figures"] = written
    result["timing_s"]["evaluate_and_studies"] = time.monotonic() - t0
    path = write_json(result, out / "result.json")
    _summary(result)
    print(f"wrote {path} and {len(written)} figures", file=sys.stderr)
    return 0


def _paper_images(labels: torch.Tensor, embedded: bool) -> dict[int, int]:
    """Paper test index -> index in ``labels`` (itself, or the first image of the same digit)."""
    if not embedded:
        return {i: i for i in PAPER_DIGITS}
    return {i: int((labels == d).nonzero()[0]) for i, d in PAPER_DIGITS.items()}


def _summary(result: dict[str, Any]) -> None:
    p, e = result["paper_protocol"], result["extended"]
    lines = [
        f"accuracy {p['accuracy']:.4f}  nll {e['nll']:.4f}  brier {e['brier']:.4f}  "
        f"ece {e['ece']:.4f}",
        f"entropy-CDF area: in {p['entropy_cdf_area_in']:.3f}  "
        f"out {p.get('entropy_cdf_area_out', float('nan')):.3f}",
    ]
    for score, m in e.get("ood", {}).items():
        lines.append(
            f"OOD {score}: AUROC {m['auroc']:.3f}  AUPR {m['aupr']:.3f}  "
            f"FPR95 {m['fpr_at_95_tpr']:.3f}"
        )
    for name, c in (("FGSM paper", p.get("fgsm")), ("FGSM EOT", e.get("fgsm_eot")),
                    ("PGD EOT", e.get("pgd_eot"))):  # fmt: skip
        if c is not None:
            acc = " ".join(f"{v:.2f}" for v in c["accuracy"])
            lines.append(f"{name} accuracy by eps {c['epsilons'][0]}..{c['epsilons'][-1]}: {acc}")
    print("\n".join(lines))


def _option(text: str) -> tuple[str, Any]:
    key, sep, value = text.partition("=")
    if not sep:
        raise SystemExit(f"--option must be key=value, got {text!r}")
    try:
        return key, ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return key, value


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--method", default="mc_dropout", choices=available())
    p.add_argument("--option", action="append", default=[], help="method option key=value")
    p.add_argument("--data", choices=["embedded", "mnist"], default="embedded")
    p.add_argument("--data-dir", default=None, help="data root for --data mnist")
    p.add_argument("--steps", type=int, default=500)
    p.add_argument("--batch-size", type=int, default=100)
    p.add_argument(
        "--lr",
        type=float,
        default=None,
        help="Adam learning rate (default: the method's default_lr)",
    )
    p.add_argument("--kl-weight", type=float, default=1.0, help="constant KL weight beta")
    p.add_argument(
        "--kl-anneal", default=None, metavar="START,LENGTH",
        help="the paper's annealing in steps: beta 0 until START, then a ramp to 1 over LENGTH",
    )  # fmt: skip
    p.add_argument(
        "--num-data", type=int, default=None,
        help="N in KL/N (default: the training-set size; 55000 gives full MNIST's KL pressure)",
    )  # fmt: skip
    p.add_argument("--num-samples", type=int, default=100, help="weight samples per input")
    p.add_argument("--eval-batch-size", type=int, default=500)
    p.add_argument("--quick", action="store_true", help="small sample counts for a smoke run")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True)
    return p


if __name__ == "__main__":
    raise SystemExit(main())
