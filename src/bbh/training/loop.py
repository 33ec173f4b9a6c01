"""One training loop for every method, on tensors held in memory.

Each step draws a minibatch (``ShuffleSampler``), calls
``method.loss(x, y, num_data=N, kl_weight=beta_t)`` and takes an optimiser step. Logs are
detached tensors collected every ``log_every`` steps (one host sync per log, not per step). The
data are checked once up front (``bbh.validation``), so the steps skip the value checks; a
``TrainingGuard`` (``bbh.training.guards``) catches a non-finite loss or gradient at the step it
happens and warns when the KL or the NLL look wrong.

What a run around the loop needs plugs in through ``FitHooks``: log rows, the end of each
epoch (validation; run under a forked RNG so it never changes the training's random stream),
checkpoints every ``checkpoint_every`` steps and a stop request (SIGINT). ``resume=`` a
``TrainState`` continues a run exactly: the same batches, noise and optimiser state, so on
the CPU the weights end bit-identical to those of an uninterrupted run.

When a ``torch.distributed`` process group of several processes is initialised (``torchrun``),
the same call trains data-parallel with DDP: each rank its share of every global batch, its own
noise, gradients averaged; see ``bbh.training.distributed`` for what that means exactly.
"""

from __future__ import annotations

import copy
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from bbh.inputs import (
    Inputs,
    first_tensor,
    index,
    is_structure,
    named_tensors,
    shape_key,
)
from bbh.inputs import batch_size as rows
from bbh.methods.base import Method
from bbh.methods.temperature import START_TEMPERATURE
from bbh.training import distributed as ddp_tools
from bbh.training.checkpoint import TrainState
from bbh.training.distributed import DDPSettings, Ranks, StepAgreement, current_ranks
from bbh.training.guards import TrainingGuard, TrainingWarning
from bbh.training.rng import rng_state, set_rng_state
from bbh.training.sampler import ShuffleSampler
from bbh.training.schedules import LR_SCHEDULES, KLSchedule, constant, lr_factor
from bbh.training.temperature import (
    TEMPERATURE_PATIENCE,
    TemperatureSearch,
    choose_temperature,
    validation_nll,
)
from bbh.validation import at_least, check_finite, checked_args, positive, values_prechecked

#: ``transform(batch, generator) -> batch``: a tensor, or a batch structure (``bbh.inputs``)
BatchTransform = Callable[[Any, torch.Generator], Any]

#: ``temperature="validation"``: each candidate's run, as a fraction of the run's steps (full runs:
#: shorter ones ranked the temperatures differently on the demo, docs/methods.md)
TEMPERATURE_RUN_FRACTION = 1.0


@dataclass
class FitResult:
    """What ``fit`` returns: the logged rows, the wall time, the steps taken and, with
    ``temperature="validation"``, the temperature search.

    Args:
        logs: The rows logged by this call (``FitHooks.on_log``): every ``log_every`` steps and
            at the last.
        seconds: The training's wall time in seconds (with a resumed state's before it).
        steps: The steps trained to (``fit``'s ``steps``; a resumed run counts from its start).
        temperature: With ``temperature="validation"``, what the search tried and chose (None
            on a resume).
    """

    logs: list[dict[str, float]] = field(default_factory=list)
    seconds: float = 0.0
    steps: int = 0
    #: with ``temperature="validation"``: what the search tried and chose (None on a resume)
    temperature: TemperatureSearch | None = None


class TrainingInterrupted(Exception):
    """``fit`` stopped at a step boundary because ``hooks.should_stop()`` said so.

    Args:
        step: The steps done when it stopped (kept as ``self.step``).
    """

    def __init__(self, step: int):
        super().__init__(f"training stopped at step {step}")
        self.step = step


class FitHooks:
    """Callbacks of ``fit``; every one is optional (this base class does nothing).

    ``checkpoint_every``: call ``on_checkpoint(state)`` every that many steps, at the end and on a
    stop. Under DDP ``on_log`` and ``on_checkpoint`` run on rank 0 only (log rows hold means
    over the ranks), the others on every rank; a stop request of any rank stops all of them.
    """

    checkpoint_every: int | None = None

    def on_log(self, row: dict[str, float]) -> None:
        """A log row: step, epoch, kl_weight, examples_per_s and the method's logs.

        Args:
            row: The logged values by name.
        """

    def on_step(self, step: int) -> None:
        """After each step (``step`` counts from 1); keep it cheap (no host sync).

        Args:
            step: The steps done so far.
        """

    def on_epoch_end(self, method: Method, epoch: int, step: int) -> None:
        """After the last step of each epoch; runs under a forked RNG, in ``eval`` mode.

        Args:
            method: The method being trained.
            epoch: The epochs done so far.
            step: The steps done so far.
        """

    def on_temperature_candidate(self, temperature: float, val_nll: float | None) -> None:
        """``temperature="validation"``: before a candidate trains (``val_nll`` None) and after
        it is scored.

        Args:
            temperature: The candidate.
            val_nll: Its validation NLL, or None before it trains.
        """

    def scored_temperatures(self) -> dict[float, float]:
        """``temperature="validation"``: candidates already scored by an earlier, interrupted
        search of this same run (``bbh train --resume`` reads them from the run log), reused
        instead of trained again. Called once, on rank 0 under DDP.

        Returns:
            The validation NLL by temperature; empty by default.
        """
        return {}

    def on_checkpoint(self, state: TrainState) -> None:
        """Save ``state`` (its tensors are the live ones: save, do not keep).

        Args:
            state: The training state to save.
        """

    def should_stop(self) -> bool:
        """Called at each step boundary; True stops training with ``TrainingInterrupted``.

        Returns:
            False (never stop) unless a subclass says otherwise.
        """
        return False


def make_optimizer(
    params: list[torch.nn.Parameter] | list[dict[str, Any]], name: str, lr: float, **options: float
) -> torch.optim.Optimizer:
    """``adam`` (fused where available: about 2x faster for big hypernets on a CPU) or ``rmsprop``.

    ``rmsprop`` follows the paper's TF1 settings where PyTorch allows (alpha 0.9, eps 1e-5) and
    updates all tensors at once (``foreach``; PyTorch has no fused RMSprop).

    Args:
        params: Parameters, or parameter groups (``Method.optimizer_groups``).
        name: ``"adam"`` or ``"rmsprop"``.
        lr: The learning rate.
        **options: ``eps`` (default 1e-8 for Adam, 1e-5 for RMSprop).

    Returns:
        The optimiser.

    Raises:
        ValueError: ``name`` is neither.
    """
    if name == "adam":
        eps = options.get("eps", 1e-8)
        try:
            return torch.optim.Adam(params, lr=lr, eps=eps, fused=True)
        except (RuntimeError, TypeError):
            return torch.optim.Adam(params, lr=lr, eps=eps)
    if name == "rmsprop":
        eps = options.get("eps", 1e-5)
        return torch.optim.RMSprop(params, lr=lr, alpha=0.9, eps=eps, foreach=True)
    raise ValueError(f"unknown optimizer {name!r}; allowed: ['adam', 'rmsprop']")


@checked_args(
    steps=at_least(1),
    batch_size=at_least(1),
    lr=positive(),
    num_data=at_least(1),
    log_every=at_least(1),
    val_samples=at_least(1),
    temperature_patience=at_least(1),
)
def fit(
    method: Method,
    x: Inputs,
    y: Tensor,
    *,
    steps: int,
    batch_size: int,
    lr: float | None = None,
    kl_schedule: KLSchedule | None = None,
    optimizer: str = "adam",
    seed: int = 0,
    num_data: int | None = None,
    transform: BatchTransform | None = None,
    log_every: int = 100,
    verbose: bool = False,
    hooks: FitHooks | None = None,
    resume: TrainState | None = None,
    ddp: DDPSettings | None = None,
    validation: tuple[Inputs, Tensor] | None = None,
    val_samples: int = 20,
    temperature_steps: int | None = None,
    temperature_patience: int = TEMPERATURE_PATIENCE,
    lr_schedule: str = "cooldown",
    lr_warmup: float = 0.0,
) -> FitResult:
    """Train ``method`` on ``(x, y)`` for ``steps`` minibatch steps; reshuffles every epoch.

    Under DDP (an initialised process group of several processes) every rank passes the same
    ``(x, y)`` and arguments; see ``bbh.training.distributed``. ``hooks`` and ``resume``: see
    the module docstring.

    The loss and the gradients are checked for NaN and infinite values at each log and before
    each checkpoint, so a checkpoint never holds them; warns (``TrainingWarning``) when the KL
    term swamps the likelihood, the KL estimate goes negative or the NLL climbs.

    Args:
        method: The method to train (``bbh.build``), in place.
        x: Training inputs: a tensor ``[N, ...]`` or a tuple, list or dict of them
            (``bbh.inputs``: token ids, several inputs), indexed together for each minibatch.
        y: Training targets ``[N]`` (class ids) or ``[N, C]`` (regression).
        steps: Optimiser steps.
        batch_size: Examples per step; under DDP the global batch (a multiple of the number of
            ranks).
        lr: The learning rate; None takes ``method.default_lr`` (1e-4 for the paper's
            layer-wise hypernet, whose output layers amplify Adam steps; 1e-3 otherwise).
        kl_schedule: The KL weight per step (``constant``, ``annealing``); None: constant 1.
        optimizer: ``"adam"`` or ``"rmsprop"`` (``make_optimizer``).
        seed: Seeds the sampler's generator: the minibatch order and ``transform``'s draws.
        num_data: The training-set size N that divides the KL; None: ``len(x)`` (under DDP,
            the global size).
        transform: ``transform(batch, generator)``, applied to each batch of inputs (e.g.
            CIFAR augmentation) with the sampler's seeded generator.
        log_every: Steps between logged rows (and the checks above).
        verbose: Print each logged row to standard error.
        hooks: Callbacks at steps, logs, epochs and checkpoints (``FitHooks``).
        resume: A saved ``TrainState`` to continue from (under DDP rank 0's counts; the others
            may pass None).
        ddp: Options of the ``DistributedDataParallel`` wrapper under DDP.
        validation: Held-out ``(x, y)`` for a method built with ``temperature="validation"``:
            before the main training it trains from the initial state at a few temperatures
            for ``temperature_steps`` steps each, scores each by the validation NLL of a
            ``val_samples``-draw predictive, then trains at the best
            (``bbh.training.temperature``; ``FitResult.temperature`` says what it chose).
            Without it such a method trains at ``START_TEMPERATURE``, with a warning.
        val_samples: Weight draws of the validation predictive.
        temperature_steps: Steps per temperature candidate; None: ``steps`` (shorter runs
            ranked the temperatures differently on the demo).
        temperature_patience: Candidates in a row, past the best, that may fail to beat it
            before the search stops (``bbh.training.temperature.TEMPERATURE_PATIENCE``).
        lr_schedule: ``"cooldown"`` (the rate falls linearly to near 0 over the last fifth of
            the run, so that it ends at a settled iterate), ``"cosine"`` or ``"constant"`` (the
            paper's; ``bbh.training.schedules.lr_factor``), for every parameter group of
            ``method.optimizer_groups`` but those that name their own
            (``{"lr_schedule": "constant"}``: a posterior's scale, which must reach its optimum
            rather than freeze with the decay).
        lr_warmup: The fraction of the run (and of each temperature candidate's run) over
            which those same groups' rate first rises linearly from near 0 (``lr_factor``); 0:
            none. ``bbh.finetune`` warms up (``FINETUNE_WARMUP``): a fresh Adam's first steps
            at the full rate throw a trained net off its minimum.

    Returns:
        The logged rows, the wall time and the steps (``FitResult``).

    Raises:
        TrainingDiverged: The loss or a gradient went NaN or infinite; it names the step, and
            the method holds the parameters of the step before.
        TrainingInterrupted: ``hooks.should_stop()`` asked to stop.
        ValueError: An argument is out of range (``steps``, ``batch_size``, ``log_every``,
            ``num_data`` or ``val_samples`` below 1, ``lr`` not positive, an unknown
            ``lr_schedule`` or ``optimizer``, ``lr_warmup`` outside ``[0, 1)``) or the data do
            not fit the method.
        TypeError: ``x`` or ``y`` is not a tensor (or batch structure of tensors).

    Example:
        >>> import torch, bbh
        >>> from bbh.nets import MLP
        >>> model = bbh.build("map", MLP(4, [16], 3))
        >>> x, y = torch.randn(64, 4), torch.randint(0, 3, (64,))
        >>> result = bbh.fit(model, x, y, steps=4, batch_size=32, log_every=2)
        >>> result.steps, len(result.logs)
        (4, 2)
    """
    if lr_schedule not in LR_SCHEDULES:
        raise ValueError(f"unknown lr_schedule {lr_schedule!r}; allowed: {list(LR_SCHEDULES)}")
    lr_factor(lr_schedule, 0, steps, lr_warmup)  # checks lr_warmup before any work
    x, y = check_training_data(method, x, y, transform, seed)
    if validation is not None:
        validation = _check_validation(method, validation)
    hooks = hooks or FitHooks()
    ranks = current_ranks()
    if ranks is not None:
        ddp_tools.check_same_data(x, y, ranks)
    n = rows(x)
    num_data = n if num_data is None else num_data
    schedule = kl_schedule or constant(1.0)
    sampler = ShuffleSampler(
        n,
        batch_size,
        torch.Generator().manual_seed(seed),
        rank=ranks.rank if ranks else 0,
        world_size=ranks.world_size if ranks else 1,
    )
    lr = method.default_lr if lr is None else lr
    params = method.optimizer_groups(lr)
    opt = make_optimizer(params, optimizer, lr)
    base_lrs = [group["lr"] for group in opt.param_groups]
    if ranks is None:
        start_step, seconds_before = _resume_one(method, opt, sampler, resume, steps)
        loss_fn: Callable[..., tuple[Tensor, dict[str, Tensor]]] = method.loss
        agreement = None
    else:
        start_step, seconds_before = ddp_tools.start_ranks(
            method, opt, sampler, resume, steps=steps, seed=seed, ranks=ranks
        )
        loss_fn = ddp_tools.wrap_loss(method, ranks, ddp or DDPSettings())
        agreement = StepAgreement(ranks, hooks.should_stop)
    main = ranks is None or ranks.is_main
    guard = TrainingGuard(
        method, opt, num_data=num_data, kl_schedule=schedule, lr=lr,
        reduce_flags=agreement, warn=main,
    )  # fmt: skip
    method.train()
    result = FitResult()
    start = time.perf_counter()
    last_log_time, last_log_step = start, start_step

    def state(step: int) -> TrainState | None:
        """The checkpoint after ``step`` (under DDP: on rank 0, None on the others)."""
        rngs = ddp_tools.gather_to_main(rng_state(), ranks, "a checkpoint") if ranks else []
        if not main:
            return None
        return TrainState(
            step=step,
            method=method.state_dict(),
            optimizer=opt.state_dict(),
            sampler=sampler.state_dict(),
            rng=rng_state(),
            seconds=seconds_before + time.perf_counter() - start,
            world_size=ranks.world_size if ranks else 1,
            rank_rngs=rngs or [],
        )

    def train_step(step: int, kl_weight: float, run_steps: int = steps) -> dict[str, Tensor]:
        """Step ``step`` of a ``run_steps``-step run on the sampler's next batch; the logs."""
        for group, base in zip(opt.param_groups, base_lrs, strict=True):
            own = group.get("lr_schedule")  # a group with its own schedule is not warmed up
            factor = lr_factor(own or lr_schedule, step, run_steps, 0.0 if own else lr_warmup)
            group["lr"] = base * factor
        idx = sampler.next_indices()
        xb, yb = index(x, idx), y[idx]
        if transform is not None:
            xb = transform(xb, sampler.generator)
        loss, logs = loss_fn(xb, yb, num_data=num_data, kl_weight=kl_weight)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        guard.after_backward(step, loss, logs)
        opt.step()
        return logs

    with values_prechecked():  # the data were checked above: no value check (sync) per step
        if start_step == 0:  # a resumed run chose its temperature before (it is in its state)
            result.temperature = _search_temperature(
                method, validation, train_step, guard, sampler, opt, schedule,
                steps=steps, each=temperature_steps, patience=temperature_patience,
                val_samples=val_samples, seed=seed,
                ranks=ranks, announce=verbose and main, warn=main,
                report=hooks.on_temperature_candidate if main else None,
                known=hooks.scored_temperatures if main else dict,
            )  # fmt: skip
        for step in range(start_step, steps):
            kl_weight = schedule(step)
            logs = train_step(step, kl_weight)
            if ranks is not None and step == start_step:
                _first_step_agreement(method, ranks)
            done = step + 1
            hooks.on_step(done)
            if done % log_every == 0 or done == steps:
                guard.at_log(step)
                row = {"step": float(done), "epoch": done / sampler.steps_per_epoch}
                row["kl_weight"] = float(kl_weight)
                values = {k: float(v) for k, v in logs.items()}
                row.update(ddp_tools.mean_over_ranks(values, ranks))
                now = time.perf_counter()
                row["examples_per_s"] = (
                    (done - last_log_step) * sampler.batch_size / max(now - last_log_time, 1e-9)
                )
                last_log_time, last_log_step = now, done
                result.logs.append(row)
                if main:
                    hooks.on_log(row)
                if verbose and main:
                    print(" ".join(f"{k}={v:.4g}" for k, v in row.items()), file=sys.stderr)
            if done % sampler.steps_per_epoch == 0:
                _epoch_end(method, hooks, done // sampler.steps_per_epoch, done)
            asked = agreement.stop_agreed() if agreement else hooks.should_stop()
            stop = done < steps and asked
            every = hooks.checkpoint_every
            if stop or (every and (done % every == 0 or done == steps)):
                guard.at_log(step)  # never checkpoint the weights of a non-finite step
                if ranks is not None:
                    ddp_tools.check_parameters_agree(method, ranks, done)
                checkpoint = state(done)
                if checkpoint is not None:
                    hooks.on_checkpoint(checkpoint)
            if stop:
                raise TrainingInterrupted(done)

    result.seconds = seconds_before + time.perf_counter() - start
    result.steps = steps
    method.eval()
    return result


def _search_temperature(
    method: Method,
    validation: tuple[Inputs, Tensor] | None,
    train_step: Callable[[int, float, int], dict[str, Tensor]],
    guard: TrainingGuard,
    sampler: ShuffleSampler,
    opt: torch.optim.Optimizer,
    schedule: KLSchedule,
    *,
    steps: int,
    each: int | None,
    patience: int,
    val_samples: int,
    seed: int,
    ranks: Ranks | None,
    announce: bool,
    warn: bool,
    report: Callable[[float, float | None], None] | None = None,
    known: Callable[[], dict[float, float]] = dict,
) -> TemperatureSearch | None:
    """``temperature="validation"``: candidate runs from the initial state, the method left in
    that state at the best temperature (``bbh.training.temperature``); None for other methods.
    ``known()``: candidates scored before (``FitHooks.scored_temperatures``), rank 0's under
    DDP."""
    grid = getattr(method, "temperature_candidates", None)
    if not grid:
        return None
    if validation is None:
        if warn:
            warnings.warn(
                f"{type(method).__name__} was built with temperature='validation' but fit got no "
                f"validation data: it trains at {START_TEMPERATURE:g}; pass "
                "validation=(x_val, y_val) to choose",
                TrainingWarning,
                stacklevel=4,
            )
        return None
    xv, yv = validation
    each = each or max(1, round(steps * TEMPERATURE_RUN_FRACTION))
    initial = copy.deepcopy(
        (method.state_dict(), opt.state_dict(), sampler.state_dict(), rng_state())
    )

    def reset() -> None:
        model_state, opt_state, sampler_state, rngs = copy.deepcopy(initial)
        method.load_state_dict(model_state)
        opt.load_state_dict(opt_state)
        sampler.load_state_dict(sampler_state)
        set_rng_state(rngs)

    def short_run() -> None:
        for i in range(each):  # the whole run's KL schedule, compressed into the short run
            train_step(i, schedule(i * steps // each), each)
        guard.at_log(each - 1)

    def score() -> float:
        value = validation_nll(method, xv, yv, num_samples=val_samples, seed=seed)
        return ddp_tools.mean_over_ranks({"nll": value}, ranks)["nll"]

    scored = known()
    if ranks is not None:
        scored = ddp_tools.broadcast_object(scored, ranks, "the scored temperature candidates")
    search = choose_temperature(
        method, START_TEMPERATURE, train=short_run, score=score, reset=reset,
        steps_each=each, val_examples=len(yv), val_samples=val_samples, grid=grid,
        report=report, known=scored, patience=patience,
    )  # fmt: skip
    if announce:
        print(search.summary(), file=sys.stderr)
    return search


def _resume_one(
    method: Method,
    opt: torch.optim.Optimizer,
    sampler: ShuffleSampler,
    resume: TrainState | None,
    steps: int,
) -> tuple[int, float]:
    """Load ``resume`` in a single process: ``(start step, seconds trained before)``."""
    if resume is None:
        return 0, 0.0
    ddp_tools.check_resumable(resume, steps, world_size=1)
    method.load_state_dict(resume.method)
    opt.load_state_dict(resume.optimizer)
    sampler.load_state_dict(resume.sampler)
    set_rng_state(resume.rng)
    return resume.step, resume.seconds


def _first_step_agreement(method: Method, ranks: Ranks) -> None:
    """After the first step: lazy initialisation inside a loss (the discriminator's
    pretraining) ran on each rank's own samples; from here on every rank holds rank 0's."""
    if not ddp_tools.parameters_agree(method, ranks):
        ddp_tools.broadcast_module_state(method, ranks)


def _epoch_end(method: Method, hooks: FitHooks, epoch: int, step: int) -> None:
    devices = [torch.cuda.current_device()] if torch.cuda.is_initialized() else []
    with torch.random.fork_rng(devices=devices):
        method.eval()
        try:
            hooks.on_epoch_end(method, epoch, step)
        finally:
            method.train()


def _check_validation(method: Method, validation: Any) -> tuple[Inputs, Tensor]:
    """``validation`` as checked ``(x, y)`` (``x`` a tensor or a batch structure)."""
    if not (isinstance(validation, (tuple, list)) and len(validation) == 2):
        raise TypeError(
            f"validation must be a pair (x_val, y_val) of tensors, got {type(validation).__name__}"
        )
    xv, yv = validation
    if not (_is_inputs(xv) and isinstance(yv, Tensor)) or _rows(xv) != len(yv) or not len(yv):
        raise ValueError(
            "validation must be (x_val, y_val) tensors with the same number (>= 1) of examples"
        )
    return method.check_batch(xv, yv, num_data=len(yv), kl_weight=0.0)


def check_training_data(
    method: Method, x: Inputs, y: Tensor, transform: BatchTransform | None, seed: int
) -> tuple[Inputs, Tensor]:
    """Check the whole training set once, as ``fit`` does (so the steps need no value checks);
    with a ``transform`` (e.g. augmentation of uint8 images) the net's checks apply to a
    transformed sample, not to the raw ``x``.

    Args:
        method: The method whose input and target checks apply.
        x: The training inputs.
        y: The training targets.
        transform: The batch transform, or None.
        seed: Seeds the transform of the checked sample.

    Returns:
        ``(x, y)`` as the steps take them.

    Raises:
        TypeError: ``x`` or ``y`` is not a tensor (structure).
        ValueError: They disagree on the number of examples, or a check of the method fails.
    """
    if not (_is_inputs(x) and isinstance(y, Tensor)):
        raise TypeError(
            f"x must be a tensor or a tuple, list or dict of tensors and y a tensor, got "
            f"{type(x).__name__} and {type(y).__name__}"
        )
    if y.dim() == 0 or _rows(x) != len(y):
        shapes = [list(t.shape) for _, t in named_tensors(x)]
        shown = shapes[0] if isinstance(x, Tensor) else shapes
        raise ValueError(
            f"x and y disagree on the number of examples: shapes {shown} and {list(y.shape)}"
        )
    if transform is None:
        return method.check_batch(x, y, num_data=max(len(y), 1), kl_weight=0.0)
    for name, t in named_tensors(x):
        if t.is_floating_point():
            check_finite(t, name)
    sample = transform(index(x, slice(0, 2)), torch.Generator().manual_seed(seed))  # as seen
    sample = method.check_input(sample, "x after transform")
    return x, method.check_targets(y, input_shape=shape_key(sample), batch=len(y))


def _is_inputs(x: Any) -> bool:
    """A tensor, or a non-empty tuple, list or dict of tensors."""
    if isinstance(x, Tensor):
        return True
    tensors = named_tensors(x) if is_structure(x) else []
    return bool(tensors) and all(isinstance(t, Tensor) for _, t in tensors)


def _rows(x: Inputs) -> int:
    """The number of examples (-1 for a 0-dimensional tensor)."""
    first = first_tensor(x)
    return int(first.shape[0]) if first.dim() else -1
