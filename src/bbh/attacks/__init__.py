"""Adversarial attacks on any method through ``predict_logits`` (docs/evaluation.md, "Attacks").

``fgsm_paper`` is the paper's protocol (its code, pawni/BayesByHypernet,
``utils.build_adv_examples``: the mean of the signs of 100 sampled gradients, unclipped);
``fgsm`` and ``pgd`` attack the expected predictive (expectation over weight samples) with
clipping, the form a reviewer trusts for stochastic models.
``robustness_curve`` evaluates a method under attack for a grid of epsilons.
"""

from bbh.attacks.curve import PAPER_EPSILONS, AttackName, robustness_curve
from bbh.attacks.gradient import (
    InputTransform,
    eot_gradient_sign,
    eot_nll,
    fgsm,
    fgsm_paper,
    fgsm_paper_direction,
    pgd,
)

__all__ = [
    "PAPER_EPSILONS",
    "AttackName",
    "InputTransform",
    "eot_gradient_sign",
    "eot_nll",
    "fgsm",
    "fgsm_paper",
    "fgsm_paper_direction",
    "pgd",
    "robustness_curve",
]
