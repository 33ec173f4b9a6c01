"""Robustness curves: accuracy and uncertainty of a method under attack, per epsilon.

For each epsilon the attacked inputs are evaluated with the method's predictive (``num_samples``
weight draws; one for a deterministic method) and the curve records accuracy, mean predictive
entropy, the paper's entropy-CDF area and, when ``uncertainty_threshold`` is given, the share of
inputs whose entropy exceeds it ("flagged as uncertain"). ``bbh.evaluation.evaluate`` sets the
threshold to the 95th percentile of the clean in-distribution test entropies, so about 5% of clean
inputs are flagged and a robust model flags more as epsilon grows.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from bbh.attacks.gradient import (
    InputTransform,
    _check_eps,
    _check_int,
    _check_x,
    _clip,
    eot_gradient_sign,
    fgsm_paper_direction,
    pgd,
)
from bbh.enums import AttackName
from bbh.metrics._validation import check_labels
from bbh.metrics.uncertainty import EntropyForm, entropy_cdf_area, predictive_entropy
from bbh.options import parse_enum
from bbh.progress import Progress
from bbh.validation import at_least, checked_args

__all__ = ["PAPER_EPSILONS", "AttackName", "robustness_curve"]

#: The paper's grid, ``np.linspace(0, 0.4, 9)`` (its code, pawni/BayesByHypernet, ``utils.py``).
PAPER_EPSILONS: tuple[float, ...] = tuple(round(0.05 * i, 2) for i in range(9))


@checked_args(
    num_samples=at_least(1),
    attack_samples=at_least(1),
    num_grad_samples=at_least(1),
    steps=at_least(1),
    batch_size=at_least(1),
)
def robustness_curve(
    method: Any,
    x: Tensor,
    y: Tensor,
    epsilons: Sequence[float] = PAPER_EPSILONS,
    *,
    attack: AttackName | str = AttackName.FGSM_PAPER,
    num_samples: int = 100,
    attack_samples: int = 10,
    num_grad_samples: int = 100,
    steps: int = 10,
    step_size: float | None = None,
    random_start: bool = True,
    generator: torch.Generator | None = None,
    clip: tuple[float, float] | None = (0.0, 1.0),
    input_transform: InputTransform | None = None,
    uncertainty_threshold: float | None = None,
    entropy_form: EntropyForm | str = EntropyForm.CLEAN,
    batch_size: int = 100,
    progress: bool = False,
) -> dict[str, Any]:
    """Attack ``x`` at every epsilon and evaluate; returns a JSON-ready dict of per-epsilon lists.

    ``attack_samples`` is the EOT sample count for ``fgsm``/``pgd``; ``num_grad_samples`` the R
    of ``fgsm_paper``. ``clip`` applies to ``fgsm``/``pgd`` only (the paper's FGSM is unclipped).
    The FGSM direction does not depend on epsilon, so it is computed once per batch.

    Args:
        method: A classifier with ``predict_logits``.
        x: Inputs ``[N, ...]``, floating.
        y: Class ids ``[N]``.
        epsilons: The attack strengths.
        attack: ``fgsm_paper``, ``fgsm`` or ``pgd`` (``AttackName``).
        num_samples: Weight draws that evaluate the attacked inputs.
        attack_samples: The EOT draws per gradient of ``fgsm`` and ``pgd``.
        num_grad_samples: The R of ``fgsm_paper``.
        steps: PGD's steps.
        step_size: PGD's step size (None: its default).
        random_start: PGD starts from a random point of the ball.
        generator: Draws PGD's random starts.
        clip: The input range for ``fgsm`` and ``pgd``.
        input_transform: Maps the inputs to the model's.
        uncertainty_threshold: An entropy above which an input counts as flagged uncertain
            (``flagged_uncertain``); None: not counted.
        entropy_form: ``clean`` or ``paper`` (``bbh.metrics.EntropyForm``).
        batch_size: Inputs attacked at once.
        progress: Show a progress bar.

    Returns:
        ``attack``, ``epsilons`` and per epsilon ``accuracy``, ``mean_entropy``,
        ``entropy_cdf_area`` and ``flagged_uncertain``, with the settings used.

    Raises:
        ValueError: ``attack`` is unknown, ``epsilons`` is empty or holds a negative or
            non-finite value, ``y`` is not ``[N]``, or another argument is out of range.
        TypeError: ``x`` is not a floating tensor.
    """
    attack = parse_enum(AttackName, attack, "attack")
    form = EntropyForm(entropy_form)
    eps_list = [_check_eps(e) for e in epsilons]
    if not eps_list:
        raise ValueError("epsilons must not be empty")
    _check_int(batch_size, "batch_size")
    _check_int(num_samples, "num_samples")
    x = _check_x(x, clip if attack is not AttackName.FGSM_PAPER else None)
    y = torch.as_tensor(y)
    if y.dim() != 1 or y.shape[0] != x.shape[0]:
        raise ValueError(f"y must have shape [{x.shape[0]}], got {tuple(y.shape)}")
    if uncertainty_threshold is not None and not math.isfinite(float(uncertainty_threshold)):
        raise ValueError(f"uncertainty_threshold must be finite, got {uncertainty_threshold!r}")
    eval_samples = num_samples if getattr(method, "stochastic", True) else 1

    n = x.shape[0]
    correct = torch.zeros(len(eps_list), n, dtype=torch.bool)
    entropy = torch.zeros(len(eps_list), n, dtype=torch.float64)
    num_batches = math.ceil(n / batch_size)
    bar = Progress(num_batches * len(eps_list), f"attack {attack.value}", enabled=progress)
    for start in range(0, n, batch_size):
        xb, yb = x[start : start + batch_size], y[start : start + batch_size]
        direction = torch.zeros_like(xb)  # used by the FGSM attacks only
        if attack is AttackName.FGSM_PAPER:
            direction = fgsm_paper_direction(
                method,
                xb,
                yb,
                num_grad_samples=num_grad_samples,
                input_transform=input_transform,
            )
        elif attack is AttackName.FGSM:
            direction = eot_gradient_sign(
                method, xb, yb, num_samples=attack_samples, input_transform=input_transform
            )
        for k, eps in enumerate(eps_list):
            if attack is AttackName.PGD:
                x_adv = pgd(
                    method,
                    xb,
                    yb,
                    eps,
                    steps=steps,
                    step_size=step_size,
                    num_samples=attack_samples,
                    clip=clip,
                    random_start=random_start,
                    generator=generator,
                    input_transform=input_transform,
                )
            elif attack is AttackName.FGSM:
                x_adv = _clip(xb + eps * direction, clip)
            else:
                x_adv = xb + eps * direction
            with torch.no_grad():
                inp = input_transform(x_adv) if input_transform is not None else x_adv
                logits = method.predict_logits(inp, eval_samples)
                labels = check_labels(yb, logits.shape[1], logits.shape[2], "y")
                probs = logits.double().softmax(-1).mean(0)
                correct[k, start : start + len(yb)] = probs.argmax(-1).cpu() == labels.cpu()
                entropy[k, start : start + len(yb)] = predictive_entropy(probs, form=form).cpu()
                num_classes = logits.shape[2]
                drawn = logits.shape[0]
            bar.update()
    bar.close()
    result: dict[str, Any] = {
        "attack": attack.value,
        "epsilons": eps_list,
        "accuracy": correct.double().mean(dim=1).tolist(),
        "mean_entropy": entropy.mean(dim=1).tolist(),
        "entropy_cdf_area": [entropy_cdf_area(e, num_classes) for e in entropy],
        "flagged_uncertain": None
        if uncertainty_threshold is None
        else (entropy > float(uncertainty_threshold)).double().mean(dim=1).tolist(),
        "uncertainty_threshold": None
        if uncertainty_threshold is None
        else float(uncertainty_threshold),
        "entropy_form": form.value,
        "num_inputs": n,
        "num_samples": drawn,  # as returned (an ensemble returns its M members)
    }
    if attack is AttackName.FGSM_PAPER:
        result.update(num_grad_samples=num_grad_samples, clip=None)
    else:
        result.update(attack_samples=attack_samples, clip=None if clip is None else list(clip))
    if attack is AttackName.PGD:
        result.update(steps=steps, step_size=step_size, random_start=random_start)
    return result
