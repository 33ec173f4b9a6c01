"""Bayesian fine-tuning of a trained network: a trained ``nn.Module`` in, a Bayesian method out.

``start_from(net, "bbh")`` builds the method around the trained net so that, before any step,
its predictive is the trained net's (up to the posterior's initial spread);
``finetune(net, x, y, "bbh", steps=...)`` then trains the posterior for a short budget with
``bbh.training.fit``. What starts where (``FINETUNE_STARTS``):

- ``bbh``: the generator's per-weight means (the chunked generator's offset, the layer-wise
  generators' output biases) at the trained weights; the generated spread around them scaled
  down to at most ``init_sigma`` (0.01 with the purely implicit posterior) and its mean over
  the noise put back on the trained weights; the semi-implicit ``sigma`` at ``init_sigma``;
- ``bbb``: the Gaussian means at the trained weights, ``sigma = exp(init_log_var / 2)`` (0.011);
- ``mc_dropout``: the trained net with dropout (``p``, default 0.5) kept on: the masks change the
  function from the first prediction (a small ``p`` keeps it closer);
- ``map``: the trained net itself (further training of the point estimate, a control).

A BatchNorm layer whose parameters are all frozen (``requires_grad=False``: a frozen trunk, as
in a last-layer fine-tune) stays in eval mode while the method trains (``frozen_norms="eval"``,
the default): its running statistics are frozen with its parameters, so the trunk computes in
training what it computes in predictions, and the fine-tune's batches (augmented, say) do not
shift them. ``frozen_norms="train"`` leaves them to PyTorch's default (batch statistics in
training, running statistics updated).

``ensemble`` is refused: its members start from their own initialisations, so it is not a
fine-tuning method (train it with ``bbh.build("ensemble", net)``). ``mnf`` is refused: its
multiplicative noise and flows start at their own initialisation, far from the trained function.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, cast

import torch
from torch import Tensor, nn

from bbh.hypernets import ChunkedGenerator, LayerwiseGenerator
from bbh.inputs import Inputs
from bbh.inputs import batch_size as rows
from bbh.methods import Method, available, build
from bbh.training.loop import fit

#: The methods ``start_from`` and ``finetune`` take, and where each starts.
FINETUNE_STARTS: dict[str, str] = {
    "bbh": "the generator's means at the trained weights, its spread at most init_sigma",
    "bbb": "the Gaussian means at the trained weights, sigma from init_log_var",
    "mc_dropout": "the trained net with dropout kept on (p): the masks change the function",
    "map": "the trained net itself (the point estimate trains on)",
}

#: Methods that cannot fine-tune a trained net, and why (one line each).
NOT_FINETUNABLE: dict[str, str] = {
    "ensemble": "a deep ensemble is not a fine-tuning method: its members start from their "
    "own initialisations (train it from scratch with bbh.build('ensemble', net))",
    "mnf": "mnf cannot fine-tune a trained net: its multiplicative noise and flows start at "
    "their own initialisation, far from the trained function",
}

#: ``frozen_norms``'s choices: what a BatchNorm layer with frozen parameters does in training
FROZEN_NORMS = ("eval", "train")

#: The fraction of a fine-tune over which the rate rises from near 0 (``fit``'s ``lr_warmup``):
#: a fresh Adam's first steps at the full rate throw the trained net off its minimum (measured
#: in docs/finetune.md, "Cost and warm-up")
FINETUNE_WARMUP = 0.1

#: Draws of the generator's noise that ``start_from`` centres BbH's posterior with.
CENTRE_DRAWS = 128


def check_finetune_method(method: str) -> None:
    """Raise a one-line error unless ``method`` can fine-tune a trained net.

    Args:
        method: A method name of the registry.

    Raises:
        ValueError: ``method`` is refused (``NOT_FINETUNABLE`` says why), not registered, or
            registered but without a known start at a trained net.
    """
    if method in NOT_FINETUNABLE:
        raise ValueError(NOT_FINETUNABLE[method])
    if method not in FINETUNE_STARTS:
        known = "unknown method" if method not in available() else "no fine-tuning start for"
        raise ValueError(f"{known} {method!r}; fine-tuning takes {sorted(FINETUNE_STARTS)}")


def frozen_batchnorms(net: nn.Module) -> list[str]:
    """The names of ``net``'s BatchNorm layers whose affine parameters are all frozen.

    A layer without affine parameters (``affine=False``) is not counted: nothing says whether
    it belongs to a frozen part of the net.

    Args:
        net: A network.

    Returns:
        Module names, in ``named_modules`` order.
    """
    out = []
    for name, module in net.named_modules():
        params = list(module.parameters(recurse=False))
        norm = isinstance(module, nn.modules.batchnorm._BatchNorm)
        if norm and params and not any(p.requires_grad for p in params):
            out.append(name)
    return out


def start_from(
    net: nn.Module, method: str = "bbh", *, frozen_norms: str = "eval", **options: Any
) -> Method:
    """The method ``method`` around a trained ``net``, untrained, starting at its function.

    ``net`` is copied, not changed. See the module docstring for what starts where.

    Args:
        net: The trained network (any ``nn.Module``; its current parameters and buffers are
            the start).
        method: ``bbh``, ``bbb``, ``mc_dropout`` or ``map`` (``FINETUNE_STARTS``).
        frozen_norms: ``"eval"`` (default): BatchNorm layers whose parameters are all frozen
            (``frozen_batchnorms``) stay in eval mode when the method trains
            (``Method.frozen_in_eval``); ``"train"``: PyTorch's default.
        **options: The method's options (as for ``bbh.build``).

    Returns:
        The method, in training mode, whose predictions before any step are close to ``net``'s.

    Raises:
        ValueError: ``method`` cannot fine-tune (``check_finetune_method``), an option is
            not one of the method's, or ``frozen_norms`` is not one of ``FROZEN_NORMS``.
    """
    check_finetune_method(method)
    if frozen_norms not in FROZEN_NORMS:
        raise ValueError(f"frozen_norms must be one of {FROZEN_NORMS}, got {frozen_norms!r}")
    frozen = frozen_batchnorms(net) if frozen_norms == "eval" else []
    model = build(method, net, **options)
    if method == "bbh":
        _centre_generator(model, net)
    copy_of_net = cast(nn.Module, model.net)  # the method's copy of net: the same names
    copies = dict(copy_of_net.named_modules())
    model.frozen_in_eval = tuple(copies[name] for name in frozen)
    return model.train()


def finetune(
    net: nn.Module,
    x: Inputs,
    y: Tensor,
    method: str = "bbh",
    *,
    steps: int | None = None,
    batch_size: int = 100,
    validation: tuple[Inputs, Tensor] | None = None,
    lr: float | None = None,
    seed: int = 0,
    fit_options: Mapping[str, Any] | None = None,
    frozen_norms: str = "eval",
    **options: Any,
) -> Method:
    """Bayesian fine-tuning: ``start_from(net, method)`` trained on ``(x, y)`` for a short budget.

    A method built with ``temperature="validation"`` (BbH's recommended preset, Bayes by
    Backprop's default) chooses its KL temperature on ``validation``: each candidate trains
    from the trained start for ``steps`` steps before the final run, so the search costs a few
    times the run (``fit_options={"temperature_steps": ...}`` shortens it; a fixed
    ``temperature=`` skips it).

    Args:
        net: The trained network (copied, not changed).
        x: Training inputs ``[N, ...]`` (or a batch structure, as ``bbh.fit`` takes).
        y: Training targets ``[N]`` (class ids) or ``[N, C]`` (regression).
        method: ``bbh`` (default), ``bbb``, ``mc_dropout`` or ``map``.
        steps: Optimiser steps; None: one epoch (``N // batch_size``, at least 1).
        batch_size: Examples per step.
        validation: Held-out ``(x, y)`` for the temperature search (see above).
        lr: The learning rate; None: the method's default.
        seed: Seeds the data order (and, through torch's global generator when called after
            ``torch.manual_seed``, nothing else: seed that yourself for repeatable noise).
        fit_options: Further keyword arguments of ``bbh.fit`` (``kl_schedule``, ``num_data``,
            ``transform``, ``hooks``, ``verbose``, ``temperature_steps``, ...); ``lr_warmup``
            defaults to ``FINETUNE_WARMUP`` here.
        frozen_norms: What BatchNorm layers with frozen parameters do in training: ``"eval"``
            (default: their statistics frozen too) or ``"train"`` (``start_from``).
        **options: The method's options (as for ``bbh.build``).

    Returns:
        The fine-tuned method, in training mode (call ``.eval()`` before predicting with a net
        that has BatchNorm or dropout layers of its own).

    Raises:
        ValueError: ``method`` cannot fine-tune, an option is not the method's, or ``steps``,
            ``batch_size`` or the data are out of range (``bbh.fit``'s checks).

    Example:
        >>> import torch, bbh
        >>> from bbh.nets import MLP
        >>> x, y = torch.randn(200, 4), torch.randint(0, 3, (200,))
        >>> point = bbh.build("map", MLP(4, [16], 3))
        >>> _ = bbh.fit(point, x, y, steps=20, batch_size=50)
        >>> trained = point.net  # any trained nn.Module
        >>> model = bbh.finetune(trained, x, y, "bbh", steps=10, batch_size=50, temperature=1.0)
        >>> model.predict(x[:8], num_samples=10).shape
        torch.Size([8, 3])
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be an int >= 1, got {batch_size!r}")
    model = start_from(net, method, frozen_norms=frozen_norms, **options)
    if steps is None:
        steps = max(1, rows(x) // batch_size)
    fit(
        model,
        x,
        y,
        steps=steps,
        batch_size=batch_size,
        lr=lr,
        seed=seed,
        validation=validation,
        **{"lr_warmup": FINETUNE_WARMUP, **dict(fit_options or {})},
    )
    return model


@torch.no_grad()
def _centre_generator(model: Method, net: nn.Module) -> None:
    """Put BbH's generated means on ``net``'s trained weights with a spread of at most sigma0.

    The chunked generator's offset and the affine generator's biases start at the net's values
    already, but the chunked generator's noise path adds a spread (and, through its LeakyReLUs,
    a mean) of its own, and the paper's layer-wise generators start at zero means: this scales
    the output layers' weights (the only path of the noise into the weights) so that the RMS
    spread of ``G(z)`` is at most ``init_sigma`` (0.01 without one), then shifts the offsets
    (biases) so that the mean of ``G(z)`` over ``CENTRE_DRAWS`` draws is the trained weights.
    """
    posterior = getattr(model, "posterior", None)
    gen = getattr(posterior, "generator", None)
    spec = getattr(model, "spec", None)
    if gen is None or spec is None:
        return
    target = spec.from_module_values(net)[0].to(next(gen.parameters()).device)
    # init_sigma, which the options in force write under its old name
    sigma0 = getattr(model, "resolved_options", {}).get("weight_noise") or 0.01
    outputs: list[nn.Linear]
    if isinstance(gen, ChunkedGenerator):
        outputs = [cast(nn.Linear, gen.net[-1])]
    elif isinstance(gen, LayerwiseGenerator):
        outputs = [cast(nn.Linear, cast(nn.Sequential, g)[-1]) for g in gen.generators]
    else:  # a generator of the user's: left as built
        return
    draws = torch.Generator(device=target.device).manual_seed(0)
    z = gen.draw_noise(CENTRE_DRAWS, generator=draws)
    mean, sq = _moments(gen, z)
    rms = math.sqrt(max(float((sq - mean.pow(2)).clamp_min(0).mean()), 0.0))
    if rms > sigma0:
        for layer in outputs:
            layer.weight.mul_(sigma0 / rms)
        mean, _ = _moments(gen, z)
    shift = target - mean
    if isinstance(gen, ChunkedGenerator):
        gen.offset.add_(shift)
    else:
        for layer, e in zip(outputs, spec, strict=True):
            layer.bias.add_(shift[e.offset : e.offset + e.numel])


def _moments(gen: Any, z: Tensor, batch: int = 16) -> tuple[Tensor, Tensor]:
    """The mean and mean square ``[D]`` of ``gen.generate`` over the draws ``z``, in batches."""
    total = sq = None
    for part in z.split(batch):
        w = gen.generate(part)
        total = w.sum(0) if total is None else total + w.sum(0)
        sq = w.pow(2).sum(0) if sq is None else sq + w.pow(2).sum(0)
    assert total is not None and sq is not None
    return total / len(z), sq / len(z)
