"""``evaluate``: every number of the paper's protocol (arXiv 1711.01297; the paper's code,
pawni/BayesByHypernet, ``utils.build_result_dict``) and the extended suite, for any method, as one
plain JSON-ready dict.

``result["paper_protocol"]`` holds what the authors computed: accuracy of the mean of the
softmaxes, mean predictive entropy in the authors' form, the entropy-CDF area ("entropy AUC") in
and out of distribution, their degenerate calibration output, and the sign-averaged, unclipped
FGSM curve on the first 100 test images. ``result["extended"]`` holds what a reviewer adds: NLL,
Brier, ECE with reliability bins, entropy and mutual information, OOD AUROC/AUPR/FPR95 per score,
and EOT FGSM/PGD curves clipped to the input range.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from enum import Enum
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from bbh import io as bbh_io
from bbh.attacks.curve import PAPER_EPSILONS, robustness_curve
from bbh.attacks.gradient import InputTransform
from bbh.inputs import Inputs, named_tensors, split
from bbh.inputs import batch_size as rows
from bbh.metrics._validation import check_labels
from bbh.metrics.classification import (
    accuracy,
    bootstrap_interval,
    brier_score,
    expected_calibration_error,
    nll,
    reliability_bins,
    true_class_confidence_bins,
)
from bbh.metrics.ood import ood_detection
from bbh.metrics.uncertainty import (
    EntropyForm,
    entropy_cdf_area,
    floor_roundoff,
    predictive_entropy,
)
from bbh.progress import Progress
from bbh.validation import (
    at_least,
    check_finite,
    checked_args,
    describe,
    in_range,
    values_checked_here,
    values_prechecked,
)

__all__ = [
    "AttackConfig",
    "Predictions",
    "evaluate",
    "predict_batched",
    "to_jsonable",
    "write_json",
]


@dataclass(frozen=True)
class AttackConfig:
    """Which attacks ``evaluate`` runs, on the first ``num_images`` test inputs.

    The paper's FGSM uses ``num_grad_samples`` single-draw gradients (R = 100 in the paper);
    EOT FGSM and PGD use ``attack_samples`` weight draws per gradient and clip to ``clip``.
    ``eval_samples`` (default: ``evaluate``'s ``num_samples``) is the number of draws used to
    evaluate the attacked inputs.

    Args:
        num_images: The test inputs attacked.
        epsilons: The attack strengths (in pixel space).
        paper_fgsm: Run the paper's FGSM.
        num_grad_samples: The paper's FGSM's single-draw gradients.
        eot_fgsm: Run FGSM on the expectation over weight draws (EOT).
        eot_pgd: Run PGD with EOT gradients.
        attack_samples: Weight draws per EOT gradient.
        pgd_steps: PGD's steps.
        pgd_step_size: PGD's step size; None takes ``bbh.attacks.pgd``'s default.
        random_start: PGD starts at a random point of the epsilon-ball.
        clip: The pixel range the attacked inputs are clipped to; None clips nothing.
        eval_samples: Draws that evaluate the attacked inputs; None takes ``evaluate``'s
            ``num_samples``.
    """

    num_images: int = 100
    epsilons: tuple[float, ...] = PAPER_EPSILONS
    paper_fgsm: bool = True
    num_grad_samples: int = 100
    eot_fgsm: bool = True
    eot_pgd: bool = True
    attack_samples: int = 10
    pgd_steps: int = 10
    pgd_step_size: float | None = None
    random_start: bool = True
    clip: tuple[float, float] | None = (0.0, 1.0)
    eval_samples: int | None = None


@dataclass(frozen=True)
class Predictions:
    """Predictive probabilities ``[N, C]`` and the mean per-sample entropy ``[N]`` (float64).

    Args:
        probs: Predictive probabilities ``[N, C]``.
        expected_entropy: The mean per-sample entropy ``[N]``.
        num_samples: The draws per input.
    """

    probs: Tensor
    expected_entropy: Tensor
    num_samples: int

    @property
    def entropy(self) -> Tensor:
        """The predictive entropy ``H[mean_s p_s]`` per input, ``[N]``."""
        return predictive_entropy(self.probs)

    @property
    def mutual_information(self) -> Tensor:
        """The mutual information (entropy minus expected entropy) per input, ``[N]``, with
        round-off below ``MI_ROUNDOFF`` set to 0.
        """
        return floor_roundoff(self.entropy - self.expected_entropy)


@checked_args(num_samples=at_least(1), batch_size=at_least(1))
def predict_batched(
    method: Any,
    x: Inputs,
    *,
    num_samples: int = 100,
    batch_size: int = 500,
    input_transform: InputTransform | None = None,
    progress: Progress | None = None,
) -> Predictions:
    """Run ``method.predict_logits`` over ``x`` in batches without keeping ``[S, N, C]``.

    A deterministic method (``stochastic = False``) is run with one sample (the paper's code:
    MAP uses one pass). A method with posterior draws that fit any batch (``draw_predictive``: BbH,
    Bayes by Backprop) predicts every batch with the same S draws, made ``sample_batch`` at a
    time, so that its weights are generated S times in all rather than S times per batch; the
    others draw fresh noise with each batch. Either way each input's prediction averages S
    independent draws. A floating ``x`` has its values checked once, here, not by the method
    on every call (a check per batch and group of draws cost 3% of LeNet-5's prediction), and
    not at all inside ``values_prechecked()`` (``evaluate`` checks its inputs first).

    Args:
        method: A trained method (``bbh.Method``, or anything with ``predict_logits``).
        x: Inputs ``[N, ...]`` (a tensor, or a tuple, list or dict of them).
        num_samples: S, weight draws per input, at least 1.
        batch_size: Inputs per ``predict_logits`` call, at least 1.
        input_transform: Maps the inputs to the model's (e.g. CIFAR standardisation).
        progress: A progress bar to advance by each batch's size.

    Returns:
        The predictive probabilities and the expected entropy (``Predictions``).

    Raises:
        ValueError: ``num_samples`` or ``batch_size`` is below 1, or ``x`` fails the method's
            input checks.
    """
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    floating = [
        (n, t) for n, t in named_tensors(x) if isinstance(t, Tensor) and t.is_floating_point()
    ]
    if floating and values_checked_here():
        for name, t in floating:
            check_finite(t, name)
        with values_prechecked():
            return _predict_batched(method, x, num_samples, batch_size, input_transform, progress)
    return _predict_batched(method, x, num_samples, batch_size, input_transform, progress)


def _predict_batched(
    method: Any,
    x: Inputs,
    num_samples: int,
    batch_size: int,
    input_transform: InputTransform | None,
    progress: Progress | None,
) -> Predictions:
    s = num_samples if getattr(method, "stochastic", True) else 1
    batches = split(x, batch_size)

    transform: Callable[[Any], Any] | None = input_transform  # a structure goes as it is

    def logits_of(xb: Inputs, run: Callable[[Inputs], Tensor]) -> Tensor:
        inp = transform(xb) if transform is not None else xb
        logits = run(inp)
        if logits.dim() != 3 or logits.shape[1] != rows(xb):
            raise ValueError(
                f"method.predict_logits must return [S, B, C] with B = {rows(xb)}, "
                f"got {tuple(logits.shape)}"
            )
        if not bool(torch.isfinite(logits).all()):
            raise ValueError("method.predict_logits returned NaN or infinite logits")
        return logits

    with torch.no_grad():
        group = min(s, int(getattr(method, "sample_batch", s)))
        draws = (
            method.draw_predictive(group) if s > 1 and hasattr(method, "draw_predictive") else None
        )
        if draws is not None:
            return _predict_with_shared_draws(method, batches, s, draws, logits_of, progress)
        probs, exp_ent, drawn = [], [], s
        for xb in batches:
            logits = logits_of(xb, lambda inp: method.predict_logits(inp, s))
            drawn = logits.shape[0]  # an ensemble returns its M members whatever S is
            prob_sum, ent_sum = _sums_over_draws(logits)
            probs.append(prob_sum / drawn)
            exp_ent.append(ent_sum / drawn)
            if progress is not None:
                progress.update(rows(xb))
    return Predictions(torch.cat(probs), torch.cat(exp_ent), drawn)


def _sums_over_draws(logits: Tensor) -> tuple[Tensor, Tensor]:
    """Sums over the draws of ``logits [S, B, C]``, in float64 on the CPU: of the softmax
    ``[B, C]`` and of its entropy ``[B]``."""
    log_p = logits.double().log_softmax(dim=-1)
    p = log_p.exp()
    return p.sum(0).cpu(), (-(p * log_p).sum(-1)).sum(0).cpu()


def _predict_with_shared_draws(
    method: Any,
    batches: list[Inputs],
    num_samples: int,
    first: Tensor,
    logits_of: Callable[[Inputs, Callable[[Inputs], Tensor]], Tensor],
    progress: Progress | None,
) -> Predictions:
    """``predict_batched`` for methods with ``draw_predictive``: the outer loop over groups of
    draws (``first`` is the first group), the inner over the batches; sums in float64."""
    n = sum(rows(xb) for xb in batches)
    prob_sum: Tensor | None = None
    ent_sum = torch.zeros(n, dtype=torch.float64)
    done, reported, draws = 0, 0, first
    while True:
        g = draws.shape[0]
        start = 0
        for xb in batches:
            batch_probs, batch_ent = _sums_over_draws(
                logits_of(xb, partial(method.predict_logits_with, draws))
            )
            if prob_sum is None:
                prob_sum = torch.zeros(n, batch_probs.shape[-1], dtype=torch.float64)
            prob_sum[start : start + rows(xb)] += batch_probs
            ent_sum[start : start + rows(xb)] += batch_ent
            start += rows(xb)
            if progress is not None:  # progress counts inputs: n in all, over every group
                units = ((done * n + g * start) // num_samples) - reported
                progress.update(units)
                reported += units
        done += g
        if done >= num_samples:
            break
        draws = method.draw_predictive(min(g, num_samples - done))
    assert prob_sum is not None
    return Predictions(prob_sum / num_samples, ent_sum / num_samples, num_samples)


@checked_args(
    num_samples=at_least(1),
    batch_size=at_least(1),
    ece_bins=at_least(1),
    flag_quantile=in_range(0, 1, low_open=True, high_open=True),
    histogram_bins=at_least(1),
    weight_samples=at_least(0),
    weight_chunk=at_least(1),
    kernel_size=at_least(1),
)
def evaluate(
    method: Any,
    test_x: Tensor,
    test_y: Tensor,
    *,
    ood_x: Tensor | None = None,
    num_samples: int = 100,
    batch_size: int = 500,
    attacks: AttackConfig | None = AttackConfig(),
    input_transform: InputTransform | None = None,
    ece_bins: int = 15,
    flag_quantile: float = 0.95,
    histogram_bins: int = 50,
    weight_samples: int = 0,
    weight_chunk: int = 100,
    kernel_size: int = 500,
    generator: torch.Generator | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Evaluate ``method`` on ``(test_x, test_y)`` (and ``ood_x``); returns a JSON-ready dict.

    Args:
        method: A trained classifier (``bbh.Method``, or anything with ``predict_logits``).
        test_x: Test inputs ``[N, ...]``, a non-empty floating tensor with finite values.
        test_y: Class ids ``[N]``.
        ood_x: Out-of-distribution inputs with the per-example shape of ``test_x``, for the
            OOD-detection scores and the entropy histograms; None: none.
        num_samples: Weight draws per input (100 in the paper; 1 for deterministic methods).
        batch_size: Inputs per ``predict_logits`` call.
        attacks: Which adversarial attacks run (``AttackConfig``); None runs none.
        input_transform: Maps pixel-space inputs to the model's (e.g. CIFAR
            standardisation), so that attacks and clipping act in pixel space.
        ece_bins: Equal-width confidence bins of the calibration error.
        flag_quantile: In ``(0, 1)``; the "uncertain" threshold of the attack curves is this
            quantile of the clean in-distribution entropies.
        histogram_bins: Equal-width bins on ``[0, ln C]`` of the entropy histograms.
        weight_samples: With ``weight_samples > 0`` and a method with
            ``sample_weights(n) -> [n, D]``, weight statistics of that many draws (the paper
            used 1000).
        weight_chunk: Weight draws per ``sample_weights`` call.
        kernel_size: The weight correlation covers the first ``kernel_size`` coordinates.
        generator: The random numbers of PGD's random starts (None: torch's global generator).
        progress: Show progress bars.

    Returns:
        A dict of ``meta`` (the method, sample and data sizes), ``paper_protocol`` (the paper's
        metrics), ``extended`` (NLL, Brier score, calibration, OOD detection, attack curves,
        bootstrap intervals), ``weights`` (or None) and ``timing_s``.

    Raises:
        ValueError: The method's likelihood is not categorical
            (``evaluate_regression`` scores regression), the inputs are not floating
            ``[N, ...]`` with finite values, ``test_y`` is not integer ``[N]`` with ids in
            range, or ``flag_quantile`` is not in ``(0, 1)``.

    Example:
        >>> import torch, bbh
        >>> from bbh.nets import MLP
        >>> from bbh.evaluation import evaluate
        >>> model = bbh.build("mc_dropout", MLP(4, [16], 3))
        >>> x, y = torch.randn(64, 4), torch.randint(0, 3, (64,))
        >>> out = evaluate(model, x, y, ood_x=torch.randn(32, 4) * 3, num_samples=5,
        ...                attacks=None, progress=False)
        >>> sorted(out)
        ['extended', 'meta', 'paper_protocol', 'timing_s', 'weights']
        >>> 0.0 <= out["paper_protocol"]["accuracy"] <= 1.0
        True
    """
    t0 = time.monotonic()
    likelihood = getattr(method, "likelihood", None)
    if likelihood is not None and getattr(likelihood, "name", "categorical") != "categorical":
        raise ValueError(
            f"evaluate scores classifiers; for likelihood={likelihood.name!r} use "
            "bbh.evaluation.evaluate_regression(method, test_x, test_y)"
        )
    _check_inputs(test_x, "test_x")
    if ood_x is not None:
        _check_inputs(ood_x, "ood_x", test_x)
    y0 = torch.as_tensor(test_y)
    if y0.dim() != 1 or y0.shape[0] != test_x.shape[0] or y0.is_floating_point():
        raise ValueError(
            f"test_y must be integer labels [N] with N = {test_x.shape[0]}, "
            f"got {y0.dtype} {tuple(y0.shape)}"
        )
    if not 0.0 < flag_quantile < 1.0:
        raise ValueError(f"flag_quantile must be in (0, 1), got {flag_quantile!r}")
    total = test_x.shape[0] + (0 if ood_x is None else ood_x.shape[0])
    timing: dict[str, float] = {}

    bar = Progress(total, "predict", enabled=progress)
    with values_prechecked():  # by _check_inputs above
        pred_in = predict_batched(
            method,
            test_x,
            num_samples=num_samples,
            batch_size=batch_size,
            input_transform=input_transform,
            progress=bar,
        )
        pred_out = None
        if ood_x is not None:
            pred_out = predict_batched(
                method,
                ood_x,
                num_samples=num_samples,
                batch_size=batch_size,
                input_transform=input_transform,
                progress=bar,
            )
    bar.close()
    timing["predict"] = time.monotonic() - t0
    num_classes = pred_in.probs.shape[1]
    y = check_labels(test_y, test_x.shape[0], num_classes, "test_y")

    ent_in = pred_in.entropy
    ent_in_paper = predictive_entropy(pred_in.probs, form=EntropyForm.PAPER)
    paper: dict[str, Any] = {
        "accuracy": accuracy(pred_in.probs, y),
        "mean_entropy_in": float(ent_in_paper.mean()),
        "entropy_cdf_area_in": entropy_cdf_area(ent_in_paper, num_classes),
        "calibration_true_class_confidence": true_class_confidence_bins(pred_in.probs, y),
    }
    bins = reliability_bins(pred_in.probs, y, num_bins=ece_bins)
    ext: dict[str, Any] = {
        "accuracy": paper["accuracy"],
        "nll": nll(pred_in.probs, y),
        "brier": brier_score(pred_in.probs, y),
        "ece": bins.ece,
        "ece_bins": ece_bins,
        "reliability": bins.to_dict(),
        "mean_entropy_in": float(ent_in.mean()),
        "mean_mutual_information_in": float(pred_in.mutual_information.mean()),
        "mean_max_probability_in": float(pred_in.probs.max(-1).values.mean()),
        # how much each moves with which test examples were drawn (95%, 200 resamples)
        "intervals": {
            "accuracy": bootstrap_interval(accuracy, pred_in.probs, y),
            "nll": bootstrap_interval(nll, pred_in.probs, y),
            "ece": bootstrap_interval(
                lambda p, t: expected_calibration_error(p, t, num_bins=ece_bins), pred_in.probs, y
            ),
        },
    }
    hist_edges = np.linspace(0.0, math.log(num_classes), histogram_bins + 1)
    hist = {
        "edges": hist_edges.tolist(),
        "in": np.histogram(ent_in.clamp(0, math.log(num_classes)).numpy(), hist_edges)[0].tolist(),
        "out": None,
    }
    if pred_out is not None:
        ent_out_paper = predictive_entropy(pred_out.probs, form=EntropyForm.PAPER)
        paper["mean_entropy_out"] = float(ent_out_paper.mean())
        paper["entropy_cdf_area_out"] = entropy_cdf_area(ent_out_paper, num_classes)
        ent_out = pred_out.entropy
        ext["mean_entropy_out"] = float(ent_out.mean())
        ext["mean_mutual_information_out"] = float(pred_out.mutual_information.mean())
        ext["mean_max_probability_out"] = float(pred_out.probs.max(-1).values.mean())
        hist["out"] = np.histogram(ent_out.clamp(0, math.log(num_classes)).numpy(), hist_edges)[
            0
        ].tolist()
        ext["ood"] = ood_detection(_scores(pred_in), _scores(pred_out))
    ext["entropy_histogram"] = hist

    if attacks is not None:
        t1 = time.monotonic()
        _run_attacks(
            method, test_x, y, attacks, paper, ext,
            num_samples=num_samples,
            thresholds=(
                float(torch.quantile(ent_in_paper, flag_quantile)),
                float(torch.quantile(ent_in, flag_quantile)),
            ),
            flag_quantile=flag_quantile,
            input_transform=input_transform,
            generator=generator,
            progress=progress,
        )  # fmt: skip
        timing["attacks"] = time.monotonic() - t1

    weights = None
    sampler = getattr(method, "sample_weights", None)
    if weight_samples > 0 and callable(sampler):
        from bbh.evaluation.studies import weight_statistics

        t2 = time.monotonic()
        weights = weight_statistics(
            _weight_chunks(sampler, weight_samples, weight_chunk), kernel_size=kernel_size
        ).to_dict()
        timing["weights"] = time.monotonic() - t2
    timing["total"] = time.monotonic() - t0

    return {
        "meta": {
            "method": type(method).__name__,
            "stochastic": bool(getattr(method, "stochastic", True)),
            "num_samples": pred_in.num_samples,
            "num_test": int(test_x.shape[0]),
            "num_ood": None if ood_x is None else int(ood_x.shape[0]),
            "num_classes": int(num_classes),
            "attacks": None if attacks is None else asdict(attacks),
        },
        "paper_protocol": paper,
        "extended": ext,
        "weights": weights,
        "timing_s": timing,
    }


def to_jsonable(obj: Any) -> Any:
    """Tensors, numpy values, enums, paths and tuples as plain JSON types; NaN/inf as None.

    Args:
        obj: A value, or nested dicts, lists and tuples of them.

    Returns:
        The value with plain JSON types.
    """
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, Tensor):
        return to_jsonable(obj.detach().cpu().tolist())
    if isinstance(obj, np.ndarray):
        return to_jsonable(obj.tolist())
    if isinstance(obj, np.generic):
        return to_jsonable(obj.item())
    if isinstance(obj, Enum):
        return to_jsonable(obj.value)
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def write_json(result: dict[str, Any], path: str | os.PathLike[str]) -> Path:
    """Write ``result`` as indented JSON atomically (``bbh.io.write_json``; NaN/inf as null).

    Args:
        result: The dict to write (``to_jsonable`` converts it).
        path: The file.

    Returns:
        The file's path.
    """
    return bbh_io.write_json(path, to_jsonable(result))


def _check_inputs(x: Any, name: str, like: Tensor | None = None) -> None:
    """A non-empty floating tensor ``[N, ...]`` (per-example shape of ``like``), all finite."""
    if not isinstance(x, Tensor) or not x.is_floating_point() or x.dim() < 2 or x.shape[0] == 0:
        raise ValueError(f"{name} must be a non-empty floating tensor [N, ...], got {describe(x)}")
    if like is not None and x.shape[1:] != like.shape[1:]:
        raise ValueError(
            f"{name} must have the per-example shape of test_x {list(like.shape[1:])}, "
            f"got {list(x.shape)}"
        )
    check_finite(x, name)


def _scores(pred: Predictions) -> dict[str, Tensor]:
    return {
        "entropy": pred.entropy,
        "mutual_information": pred.mutual_information,
        "max_probability": 1.0 - pred.probs.max(-1).values,
    }


def _weight_chunks(sampler: Any, total: int, chunk: int) -> Any:
    done = 0
    while done < total:
        n = min(chunk, total - done)
        with torch.no_grad():
            yield sampler(n).detach()
        done += n


def _run_attacks(
    method: Any,
    test_x: Tensor,
    y: Tensor,
    cfg: AttackConfig,
    paper: dict[str, Any],
    ext: dict[str, Any],
    *,
    num_samples: int,
    thresholds: tuple[float, float],
    flag_quantile: float,
    input_transform: InputTransform | None,
    generator: torch.Generator | None,
    progress: bool,
) -> None:
    xa, ya = test_x[: cfg.num_images], y[: cfg.num_images]
    common: dict[str, Any] = {
        "epsilons": cfg.epsilons,
        "num_samples": cfg.eval_samples or num_samples,
        "input_transform": input_transform,
        "batch_size": cfg.num_images,
        "progress": progress,
    }
    note = f"entropy above the {flag_quantile:.0%} quantile of clean test entropies"
    if cfg.paper_fgsm:
        paper["fgsm"] = robustness_curve(
            method, xa, ya,
            attack="fgsm_paper",
            num_grad_samples=cfg.num_grad_samples,
            uncertainty_threshold=thresholds[0],
            entropy_form=EntropyForm.PAPER,
            **common,
        )  # fmt: skip
        paper["fgsm"]["flagged_means"] = note
    eot: dict[str, Any] = {
        "attack_samples": cfg.attack_samples,
        "clip": cfg.clip,
        "uncertainty_threshold": thresholds[1],
    }
    if cfg.eot_fgsm:
        ext["fgsm_eot"] = robustness_curve(method, xa, ya, attack="fgsm", **eot, **common)
        ext["fgsm_eot"]["flagged_means"] = note
    if cfg.eot_pgd:
        ext["pgd_eot"] = robustness_curve(
            method, xa, ya,
            attack="pgd",
            steps=cfg.pgd_steps,
            step_size=cfg.pgd_step_size,
            random_start=cfg.random_start,
            generator=generator,
            **eot,
            **common,
        )  # fmt: skip
        ext["pgd_eot"]["flagged_means"] = note
