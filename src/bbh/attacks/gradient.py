"""Gradient attacks on any method through ``Method.predict_logits`` (docs/evaluation.md).

- ``fgsm_paper``: the paper's FGSM for stochastic models (its code, pawni/BayesByHypernet,
  ``utils.build_adv_examples``), ``x + eps * mean_r sign(g_r)`` with one
  gradient per fresh weight draw (``predict_logits(x, 1)``), no clipping.
- ``fgsm`` and ``pgd`` (L-infinity): the attacks a reviewer trusts for stochastic models, on the
  expected predictive (expectation over weight samples, EOT): the loss is the NLL of the S-sample
  predictive, ``-log mean_s softmax(logits_s)[y]``, and the result is clipped to ``clip``.

``eps`` is in the units of ``x``. ``input_transform`` (e.g. CIFAR standardisation) is applied to
the attacked input before the model, so the attack happens in pixel space. Gradients are taken
with ``torch.autograd.grad`` with respect to the input only: parameters never accumulate
``.grad``. The returned tensors are detached.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from bbh.metrics._validation import check_labels
from bbh.validation import at_least, check_finite, checked_args, describe

__all__ = [
    "InputTransform",
    "eot_gradient_sign",
    "eot_nll",
    "fgsm",
    "fgsm_paper",
    "fgsm_paper_direction",
    "pgd",
]

#: Maps the attacked input (pixel space) to what the model sees, e.g. standardisation.
InputTransform = Callable[[Tensor], Tensor]


@checked_args(num_samples=at_least(1))
def eot_nll(
    method: Any,
    x: Tensor,
    y: Tensor,
    *,
    num_samples: int,
    input_transform: InputTransform | None = None,
) -> Tensor:
    """Summed NLL of the expected predictive: ``-sum_i log mean_s softmax(f_s(t(x_i)))[y_i]``.

    Args:
        method: A classifier with ``predict_logits``.
        x: Inputs ``[B, ...]`` (differentiable).
        y: Class ids ``[B]``.
        num_samples: S, the weight draws, at least 1.
        input_transform: Maps ``x`` to the model's inputs (``t`` above).

    Returns:
        A scalar tensor.

    Raises:
        ValueError: ``num_samples`` is below 1 or ``y`` does not fit the outputs.
    """
    logits = _logits(method, x, num_samples, input_transform)
    y = check_labels(y, logits.shape[1], logits.shape[2], "y")
    log_p = torch.logsumexp(logits.log_softmax(dim=-1), dim=0) - math.log(logits.shape[0])
    return -log_p.gather(1, y[:, None].to(log_p.device)).sum()


@checked_args(num_samples=at_least(1))
def eot_gradient_sign(
    method: Any,
    x: Tensor,
    y: Tensor,
    *,
    num_samples: int = 10,
    input_transform: InputTransform | None = None,
) -> Tensor:
    """``sign(grad_x eot_nll)``: the FGSM direction on the expected predictive.

    Args:
        method: A classifier with ``predict_logits``.
        x: Inputs ``[B, ...]``, floating.
        y: Class ids ``[B]``.
        num_samples: S, the weight draws, at least 1.
        input_transform: Maps ``x`` to the model's inputs.

    Returns:
        Signs ``[B, ...]`` in ``{-1, 0, 1}``.

    Raises:
        TypeError: ``x`` is not a floating tensor.
        ValueError: ``num_samples`` is below 1, ``x`` has an empty batch or ``y`` does not fit.
    """
    x = _check_x(x)
    g = _input_grad(
        lambda xr: eot_nll(method, xr, y, num_samples=num_samples, input_transform=input_transform),
        x,
    )
    return g.sign()


@checked_args(num_grad_samples=at_least(1))
def fgsm_paper_direction(
    method: Any,
    x: Tensor,
    y: Tensor,
    *,
    num_grad_samples: int = 100,
    input_transform: InputTransform | None = None,
) -> Tensor:
    """``mean_r sign(grad_x CE(f_r(x), y))`` over R weight draws (one per gradient).

    A deterministic method (``stochastic = False``) needs one gradient: all R are equal. A
    method whose ``predict_logits(x, 1)`` still returns M > 1 outputs (a deep ensemble: the
    members) gets the paper's ensemble form instead, the mean of the M members' signs, each
    member's gradient taken on its own copy of ``x`` in a single call.

    Args:
        method: A classifier with ``predict_logits``.
        x: Inputs ``[B, ...]``, floating.
        y: Class ids ``[B]``.
        num_grad_samples: R, at least 1.
        input_transform: Maps ``x`` to the model's inputs.

    Returns:
        The mean sign ``[B, ...]``, in ``[-1, 1]``.

    Raises:
        TypeError: ``x`` is not a floating tensor.
        ValueError: ``num_grad_samples`` is below 1, ``x`` has an empty batch or ``y`` does not
            fit.
    """
    x = _check_x(x)
    _check_int(num_grad_samples, "num_grad_samples")
    reps = num_grad_samples if getattr(method, "stochastic", True) else 1
    total = torch.zeros_like(x)
    for _ in range(reps):
        with torch.enable_grad():
            xr = x.clone().requires_grad_(True)
            logits = _logits(method, xr, 1, input_transform)
            m = logits.shape[0]
            if m > 1:
                return _members_direction(method, x, y, m, input_transform)
            yy = check_labels(y, logits.shape[1], logits.shape[2], "y").to(logits.device)
            loss = torch.nn.functional.cross_entropy(logits[0], yy, reduction="sum")
            g = _grad_of(loss, xr)
        total += g.sign()
    return total / reps


def _members_direction(
    method: Any, x: Tensor, y: Tensor, m: int, input_transform: InputTransform | None
) -> Tensor:
    """``mean_m sign(grad_x CE(f_m(x), y))`` for a method that always returns M outputs."""
    b = x.shape[0]
    with torch.enable_grad():
        xr = x.repeat(m, *([1] * (x.dim() - 1))).requires_grad_(True)  # [M * B, ...]
        logits = _logits(method, xr, 1, input_transform)  # [M, M * B, C]
        if logits.shape[0] != m:
            raise ValueError("method.predict_logits returned a varying number of outputs")
        idx = torch.arange(m, device=logits.device)
        own = logits.view(m, m, b, -1)[idx, idx]  # member m on copy m: [M, B, C]
        yy = check_labels(y, b, own.shape[-1], "y").to(own.device)
        loss = torch.nn.functional.cross_entropy(own.flatten(0, 1), yy.repeat(m), reduction="sum")
        g = _grad_of(loss, xr)
    return g.view(m, *x.shape).sign().mean(0)


@checked_args(num_grad_samples=at_least(1))
def fgsm_paper(
    method: Any,
    x: Tensor,
    y: Tensor,
    eps: float,
    *,
    num_grad_samples: int = 100,
    input_transform: InputTransform | None = None,
) -> Tensor:
    """The paper's FGSM (as its ``utils.build_adv_examples``): ``x + eps * mean_r sign(g_r)``.

    **Not clipped** to the input range, as in the paper's code.

    Args:
        method: A classifier with ``predict_logits``.
        x: Inputs ``[B, ...]``, floating.
        y: Class ids ``[B]``.
        eps: The attack strength, a finite number ``>= 0``.
        num_grad_samples: R, at least 1.
        input_transform: Maps ``x`` to the model's inputs.

    Returns:
        The attacked inputs ``[B, ...]``, detached.

    Raises:
        TypeError: ``eps`` is not a number or ``x`` is not a floating tensor.
        ValueError: ``eps`` or ``num_grad_samples`` is out of range, ``x`` has an empty batch or
            ``y`` does not fit.
    """
    eps = _check_eps(eps)
    direction = fgsm_paper_direction(
        method, x, y, num_grad_samples=num_grad_samples, input_transform=input_transform
    )
    return (x.detach() + eps * direction).detach()


@checked_args(num_samples=at_least(1))
def fgsm(
    method: Any,
    x: Tensor,
    y: Tensor,
    eps: float,
    *,
    num_samples: int = 10,
    clip: tuple[float, float] | None = (0.0, 1.0),
    input_transform: InputTransform | None = None,
) -> Tensor:
    """FGSM on the expected predictive (EOT over ``num_samples`` weight draws), clipped.

    Args:
        method: A classifier with ``predict_logits``.
        x: Inputs ``[B, ...]``, floating, inside ``clip``.
        y: Class ids ``[B]``.
        eps: The attack strength, a finite number ``>= 0``.
        num_samples: The EOT weight draws, at least 1.
        clip: The input range ``(low, high)``; None clips nothing.
        input_transform: Maps ``x`` to the model's inputs.

    Returns:
        The attacked inputs ``[B, ...]``, detached.

    Raises:
        TypeError: ``eps`` is not a number or ``x`` is not a floating tensor.
        ValueError: ``eps`` or ``num_samples`` is out of range, ``x`` has an empty batch or lies
            outside ``clip``, or ``y`` does not fit.
    """
    eps = _check_eps(eps)
    x = _check_x(x, clip)
    direction = eot_gradient_sign(
        method, x, y, num_samples=num_samples, input_transform=input_transform
    )
    return _clip(x + eps * direction, clip).detach()


@checked_args(steps=at_least(1), num_samples=at_least(1))
def pgd(
    method: Any,
    x: Tensor,
    y: Tensor,
    eps: float,
    *,
    steps: int = 10,
    step_size: float | None = None,
    num_samples: int = 10,
    clip: tuple[float, float] | None = (0.0, 1.0),
    random_start: bool = True,
    generator: torch.Generator | None = None,
    input_transform: InputTransform | None = None,
) -> Tensor:
    """L-infinity PGD (Madry et al. 2018) on the expected predictive (EOT), clipped.

    Each step draws fresh weight samples, moves ``step_size`` (default ``2.5 * eps / steps``)
    along the gradient sign, then projects onto the ``eps``-ball around ``x`` and into ``clip``.
    ``random_start`` starts from a uniform point of the ball (drawn with ``generator``).

    Args:
        method: A classifier with ``predict_logits``.
        x: Inputs ``[B, ...]``, floating, inside ``clip``.
        y: Class ids ``[B]``.
        eps: The ball's radius, a finite number ``>= 0``.
        steps: The steps, at least 1.
        step_size: The step's size; None for ``2.5 * eps / steps``.
        num_samples: The EOT weight draws per step, at least 1.
        clip: The input range ``(low, high)``; None clips nothing.
        random_start: Start from a uniform point of the ball.
        generator: Draws the random start (None: torch's global generator).
        input_transform: Maps ``x`` to the model's inputs.

    Returns:
        The attacked inputs ``[B, ...]``, detached.

    Raises:
        TypeError: ``eps`` is not a number or ``x`` is not a floating tensor.
        ValueError: ``eps``, ``steps``, ``step_size`` or ``num_samples`` is out of range, ``x``
            has an empty batch or lies outside ``clip``, or ``y`` does not fit.
    """
    eps = _check_eps(eps)
    x = _check_x(x, clip)
    _check_int(steps, "steps")
    step = 2.5 * eps / steps if step_size is None else float(step_size)
    if not math.isfinite(step) or step < 0:
        raise ValueError(f"step_size must be a finite number >= 0, got {step_size!r}")
    if eps == 0.0:
        return x.clone()
    x_adv = x.clone()
    if random_start:
        noise = torch.rand(x.shape, generator=generator, dtype=x.dtype, device="cpu")
        x_adv = _clip(x + eps * (2 * noise.to(x.device) - 1), clip)
    for _ in range(steps):
        g = _input_grad(
            lambda xr: eot_nll(
                method, xr, y, num_samples=num_samples, input_transform=input_transform
            ),
            x_adv,
        )
        x_adv = x_adv + step * g.sign()
        x_adv = _clip(torch.minimum(torch.maximum(x_adv, x - eps), x + eps), clip)
    return x_adv.detach()


def _logits(
    method: Any, x: Tensor, num_samples: int, input_transform: InputTransform | None
) -> Tensor:
    _check_int(num_samples, "num_samples")
    inp = input_transform(x) if input_transform is not None else x
    logits = method.predict_logits(inp, num_samples)
    if not isinstance(logits, Tensor) or logits.dim() != 3 or logits.shape[1] != x.shape[0]:
        shape = tuple(logits.shape) if isinstance(logits, Tensor) else type(logits).__name__
        raise ValueError(
            f"method.predict_logits must return [S, B, C] with B = {x.shape[0]}, got {shape}"
        )
    return logits


def _input_grad(loss_fn: Callable[[Tensor], Tensor], x: Tensor) -> Tensor:
    with torch.enable_grad():
        xr = x.detach().clone().requires_grad_(True)
        return _grad_of(loss_fn(xr), xr)


def _grad_of(loss: Tensor, xr: Tensor) -> Tensor:
    """``d loss / d xr`` only (parameters accumulate nothing), checked to exist and be finite."""
    if not loss.requires_grad:
        raise RuntimeError(
            "the loss does not depend on the input through a gradient: "
            "method.predict_logits must be differentiable in x (no torch.no_grad inside)"
        )
    (g,) = torch.autograd.grad(loss, xr)
    if not bool(torch.isfinite(g).all()):
        raise FloatingPointError("the input gradient contains NaN or infinite values")
    return g


def _check_eps(eps: float) -> float:
    try:
        value = float(eps)
    except (TypeError, ValueError) as err:
        raise TypeError(f"eps must be a number, got {type(eps).__name__}") from err
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"eps must be a finite number >= 0, got {eps!r}")
    return value


def _check_int(value: int, name: str) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name} must be an int >= 1, got {value!r}")


def _check_x(x: Tensor, clip: tuple[float, float] | None = None) -> Tensor:
    if isinstance(x, Tensor) and not x.is_floating_point() and not x.is_complex():
        raise TypeError(
            f"attacks perturb the input along its gradient, but x holds {x.dtype} (token ids "
            f"or other integers have no gradient and cannot be perturbed); attack float inputs"
        )
    if not isinstance(x, Tensor) or not x.is_floating_point():
        raise TypeError(f"x must be a floating tensor [B, ...], got {describe(x)}")
    if x.dim() < 1 or x.shape[0] < 1:
        raise ValueError(f"x must have a non-empty batch dimension, got {tuple(x.shape)}")
    check_finite(x, "x")
    if clip is not None:
        lo, hi = clip
        if not lo < hi:
            raise ValueError(f"clip must be (low, high) with low < high, got {clip!r}")
        if bool((x < lo - 1e-6).any()) or bool((x > hi + 1e-6).any()):
            raise ValueError(
                f"x must lie in the clip range [{lo}, {hi}] (attack in pixel space and pass "
                "standardisation as input_transform), or pass clip=None"
            )
    return x.detach()


def _clip(x: Tensor, clip: tuple[float, float] | None) -> Tensor:
    return x if clip is None else x.clamp(clip[0], clip[1])
