"""``bbh evaluate RUN``: the evaluation suite on a saved run, written into the run folder.

Runs ``bbh.evaluation.evaluate`` (the paper's protocol and the extended suite) with the run's
evaluation settings, then, for MNIST-like data, the paper's qualitative studies (its code,
pawni/BayesByHypernet, ``utils.py``): rotations of test images #270 (a 3), #202 (a 1) and
#217 (a 6), the 3-to-8 mixup of #270 and #391, the per-class probability spread, and weight
statistics for methods that have ``sample_weights``. Writes ``evaluation.json`` and
``figures/*.png``.

On the embedded subset the paper's test indices do not exist, so the first test image of the same
digit stands in (recorded in the JSON).
"""

from __future__ import annotations

import os
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

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
from bbh.experiments.builders import RunData, load_run_data
from bbh.experiments.config import ExperimentConfig
from bbh.experiments.runs import RunError, RunFolder, load_with_config, read_json
from bbh.experiments.train import resolve_device, torch_threads, with_data_root

#: attack names for ``--attacks`` -> the AttackConfig switch they turn on
ATTACKS = {"paper-fgsm": "paper_fgsm", "eot-fgsm": "eot_fgsm", "eot-pgd": "eot_pgd"}
#: the digits the paper's test indices show
PAPER_DIGITS = {270: 3, 202: 1, 217: 6, 391: 8}


def parse_attacks(text: str | None) -> tuple[str, ...] | None:
    """``"paper-fgsm,eot-pgd"`` -> names; ``"all"``/None -> None (the config's); ``"none"``: ()."""
    if text is None or text == "all":
        return None
    if text == "none":
        return ()
    names = tuple(t.strip() for t in text.split(",") if t.strip())
    unknown = [n for n in names if n not in ATTACKS]
    if unknown or not names:
        raise ValueError(
            f"unknown attack(s) {unknown or [text]}; allowed: {sorted(ATTACKS)}, 'all' or 'none'"
        )
    return names


def attack_config(cfg: ExperimentConfig, attacks: tuple[str, ...] | None) -> AttackConfig | None:
    """The attacks ``evaluate`` runs for ``cfg``.

    Args:
        cfg: The experiment's config (its ``eval.attacks`` section).
        attacks: Names from ``ATTACKS`` to run; None runs the config's; ``()`` runs none.

    Returns:
        The attack settings, or None when no attack runs.
    """
    a = cfg.eval.attacks
    if not a.enabled or attacks == ():
        return None
    on = {key: getattr(a, key) for key in ATTACKS.values()}
    if attacks is not None:
        on = {key: name in attacks for name, key in ATTACKS.items()}
    return AttackConfig(
        num_images=a.num_images,
        epsilons=tuple(a.epsilons),
        num_grad_samples=a.num_grad_samples,
        attack_samples=a.attack_samples,
        pgd_steps=a.pgd_steps,
        eval_samples=a.eval_samples,
        **on,
    )


def evaluate_run(
    run: str | os.PathLike[str],
    *,
    ood: str | None = None,
    attacks: tuple[str, ...] | None = None,
    data_dir: str | None = None,
    device: str | None = None,
    threads: int | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Evaluate the trained method in ``run``; writes ``evaluation.json`` and ``figures/``.

    ``threads`` overrides the config's ``train.threads`` (CPU threads)."""
    folder = RunFolder.at(run)
    dev = resolve_device(device or "cpu")
    method, cfg = load_with_config(folder.path, dev)
    cfg = with_data_root(cfg, data_dir)
    with torch_threads(threads or cfg.train.threads):
        return _evaluate(folder, method, cfg, dev, ood, attacks, progress)


def _evaluate(
    folder: RunFolder,
    method: Any,
    cfg: ExperimentConfig,
    dev: torch.device,
    ood: str | None,
    attacks: tuple[str, ...] | None,
    progress: bool,
) -> dict[str, Any]:
    if cfg.data.task == "regression":
        raise RunError(
            f"{folder.path}: bbh evaluate covers classification; this regression run's "
            "validation RMSE and NLL per epoch are in its log.jsonl and train.json"
        )
    data = load_run_data(cfg, ood=ood)
    trained_on = folder.meta().get("data_fingerprint") if folder.config_file.is_file() else None
    if data.fingerprint is not None and trained_on not in (None, data.fingerprint):
        raise RunError(
            f"{folder.path}: the data changed since training (fingerprint {trained_on}, now "
            f"{data.fingerprint}): {data.source}"
        )
    attack_cfg = attack_config(cfg, attacks)
    if attack_cfg is not None and data.fingerprint is not None:
        attack_cfg = _own_data_attacks(attack_cfg, data.test.images)
    torch.manual_seed(cfg.seed)
    t0 = time.monotonic()
    test_x = data.test.images.to(dev)
    result = evaluate(
        method,
        test_x,
        data.test.labels.to(dev),
        ood_x=None if data.ood is None else data.ood.images.to(dev),
        num_samples=cfg.eval.num_samples,
        batch_size=cfg.eval.batch_size,
        attacks=attack_cfg,
        input_transform=data.input_transform,
        generator=torch.Generator().manual_seed(cfg.seed),
        progress=progress,
    )
    result["meta"].update(_run_meta(folder, cfg, data, ood))
    out = folder.figures
    written = figures.write_figures(result, out)
    if cfg.eval.studies and tuple(data.test.images.shape[1:]) == (1, 28, 28):
        written.update(_studies(method, cfg, data, result, out, dev))
    written.update(_weights(method, cfg.eval.weight_samples, result, out))
    result["figures"] = {k: str(Path(v).relative_to(folder.path)) for k, v in written.items()}
    result["timing_s"]["evaluate_and_studies"] = time.monotonic() - t0
    write_json(result, folder.evaluation_file)
    folder.mark_done()
    return result


def _own_data_attacks(attack_cfg: AttackConfig, x: torch.Tensor) -> AttackConfig | None:
    """The attacks on the user's own inputs: none on integer inputs (token ids have no
    gradient), clipped to [0, 1] only where the inputs lie there (pixels)."""
    if not x.is_floating_point():
        return None
    inside = bool(x.numel()) and float(x.min()) >= 0.0 and float(x.max()) <= 1.0
    return attack_cfg if inside else replace(attack_cfg, clip=None)


def _run_meta(
    folder: RunFolder, cfg: ExperimentConfig, data: RunData, ood: str | None
) -> dict[str, Any]:
    meta = folder.meta() if folder.config_file.is_file() else {}
    train = read_json(folder.train_file) if folder.train_file.is_file() else {}
    return {
        "run": cfg.name,
        "label": cfg.display_name,
        "method_name": cfg.method.name,
        "method_options": meta.get("method_options", cfg.method.options),
        "config_hash": meta.get("config_hash"),
        "data": data.source,
        "ood_set": cfg.data.ood if ood is None else ood,
        "train_seconds": train.get("seconds"),
        "train_steps": train.get("steps"),
        "train_epochs": train.get("epochs"),
        "train_device": train.get("device"),
        # the KL's temperature chosen on the validation split (temperature="validation")
        "temperature": (train.get("temperature") or {}).get("chosen"),
    }


def _first_kernel_size(method: Any) -> int:
    """Coordinates of the first weight tensor (the paper's first conv kernel: 500 MNIST, 432
    CIFAR), from the method's ``spec`` if it has one; at most 500."""
    entries = getattr(getattr(method, "spec", None), "entries", None)
    return min(int(entries[0].numel), 500) if entries else 500


def _studies(
    method: Any,
    cfg: ExperimentConfig,
    data: RunData,
    result: dict[str, Any],
    out: Path,
    dev: torch.device,
) -> dict[str, str]:
    test = data.test
    samples = cfg.eval.num_samples
    index = _paper_images(test.labels, cfg.data.name == "embedded-mnist")
    studies: dict[str, Any] = {"image_index": {str(k): v for k, v in index.items()}}
    written: dict[str, str] = {}
    images = test.images.to(dev)
    for paper_idx, angles in PAPER_ROTATIONS.items():
        study = rotation_study(method, images[index[paper_idx]], angles, num_samples=samples)
        studies[f"rotation_{paper_idx}"] = study.to_dict()
        written[f"rotation_{paper_idx}"] = str(
            figures.study_strip(study, out / f"rotation_{paper_idx}.png")
        )
    a, b = (images[index[i]] for i in PAPER_MIXUP)
    mix = mixup_study(method, a, b, PAPER_MIXUP_LAMBDAS, num_samples=samples)
    studies["mixup"] = mix.to_dict()
    written["mixup"] = str(figures.study_strip(mix, out / "mixup.png"))
    spread = [images[index[i]] for i in PAPER_ROTATIONS]
    labels = [f"test #{i}" for i in PAPER_ROTATIONS]
    if data.ood is not None:
        spread.append(data.ood.images[0].to(dev))
        labels.append("OOD #0")
    written["class_spread"] = str(
        figures.class_spread_plot(
            sample_probs(method, torch.stack(spread), num_samples=samples),
            out / "class_spread.png",
            title="Per-class probability across weight samples",
            input_labels=labels,
        )
    )
    result["studies"] = studies
    return written


def _weights(method: Any, n: int, result: dict[str, Any], out: Path) -> dict[str, str]:
    """Weight statistics from ``n`` samples (the paper: 1000), for methods with
    ``sample_weights``: ``result["weights"]`` and two figures."""
    sampler = getattr(method, "sample_weights", None)
    if not callable(sampler) or n <= 0:
        return {}
    t0 = time.monotonic()
    with torch.no_grad():
        stats = weight_statistics(
            (sampler(min(100, n - i)).detach().cpu() for i in range(0, n, 100)),
            kernel_size=_first_kernel_size(method),
        )
    result["weights"] = stats.to_dict()
    result["timing_s"]["weights"] = time.monotonic() - t0
    return {
        "weight_correlation": str(
            figures.weight_correlation_map(stats, out / "weight_correlation.png")
        ),
        "weight_histograms": str(figures.weight_histograms(stats, out / "weight_histograms.png")),
    }


def _paper_images(labels: torch.Tensor, embedded: bool) -> dict[int, int]:
    """Paper test index -> index in ``labels`` (itself, or the first image of the same digit)."""
    if not embedded:
        return {i: i for i in PAPER_DIGITS}
    return {i: int((labels == d).nonzero()[0]) for i, d in PAPER_DIGITS.items()}


def check_evaluated(run: RunFolder) -> bool:
    """True if ``run`` has an ``evaluation.json`` for its current model (same config hash)."""
    if not run.evaluation_file.is_file() or not run.config_file.is_file():
        return False
    try:
        meta = read_json(run.evaluation_file).get("meta", {})
        return bool(meta.get("config_hash") == run.meta().get("config_hash"))
    except RunError:
        return False
