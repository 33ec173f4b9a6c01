"""One training loop for every method, on tensors held in memory.

Each step draws a minibatch (``ShuffleSampler``), calls
``method.loss(x, y, num_data=N, kl_weight=beta_t)`` and takes an optimiser step. Logs are
detached tensors collected every ``log_every`` steps (one host sync per log, not per step).

What a run around the loop needs plugs in through :class:`FitHooks`: log rows, the end of each
epoch (validation; run under a forked RNG so it never changes the training's random stream),
checkpoints every ``checkpoint_every`` steps and a stop request (SIGINT). ``resume=`` a
:class:`TrainState` continues a run exactly: the same batches, noise and optimiser state, so on
the CPU the weights end bit-identical to those of an uninterrupted run.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import Tensor

from bbh.methods.base import Method
from bbh.training.checkpoint import TrainState
from bbh.training.rng import rng_state, set_rng_state
from bbh.training.sampler import ShuffleSampler
from bbh.training.schedules import KLSchedule, constant

BatchTransform = Callable[[Tensor, torch.Generator], Tensor]


@dataclass
class FitResult:
    logs: list[dict[str, float]] = field(default_factory=list)
    seconds: float = 0.0
    steps: int = 0


class TrainingInterrupted(Exception):
    """``fit`` stopped at a step boundary because ``hooks.should_stop()`` said so."""

    def __init__(self, step: int):
        super().__init__(f"training stopped at step {step}")
        self.step = step


class FitHooks:
    """Callbacks of :func:`fit`; every one is optional (this base class does nothing).

    ``checkpoint_every``: call ``on_checkpoint(state)`` every that many steps, at the end and on a
    stop.
    """

    checkpoint_every: int | None = None

    def on_log(self, row: dict[str, float]) -> None:
        """A log row: step, epoch, kl_weight, examples_per_s and the method's logs."""

    def on_step(self, step: int) -> None:
        """After each step (``step`` counts from 1); keep it cheap (no host sync)."""

    def on_epoch_end(self, method: Method, epoch: int, step: int) -> None:
        """After the last step of each epoch; runs under a forked RNG, in ``eval`` mode."""

    def on_checkpoint(self, state: TrainState) -> None:
        """Save ``state`` (its tensors are the live ones: save, do not keep)."""

    def should_stop(self) -> bool:
        return False


def make_optimizer(
    params: list[torch.nn.Parameter], name: str, lr: float, **options: float
) -> torch.optim.Optimizer:
    """``adam`` (fused where available: about 2x faster for big hypernets on a CPU) or ``rmsprop``.

    ``rmsprop`` follows the paper's TF1 settings where PyTorch allows (alpha 0.9, eps 1e-5).
    """
    if name == "adam":
        eps = options.get("eps", 1e-8)
        try:
            return torch.optim.Adam(params, lr=lr, eps=eps, fused=True)
        except (RuntimeError, TypeError):
            return torch.optim.Adam(params, lr=lr, eps=eps)
    if name == "rmsprop":
        return torch.optim.RMSprop(params, lr=lr, alpha=0.9, eps=options.get("eps", 1e-5))
    raise ValueError(f"unknown optimizer {name!r}; allowed: ['adam', 'rmsprop']")


def fit(
    method: Method,
    x: Tensor,
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
) -> FitResult:
    """Train ``method`` on ``(x, y)`` for ``steps`` minibatch steps; reshuffles every epoch.

    ``lr`` defaults to ``method.default_lr`` (1e-4 for the paper's layer-wise hypernet, whose
    output layers amplify Adam steps; 1e-3 otherwise). ``num_data`` defaults to ``len(x)``
    (under DDP pass the global size). ``transform`` is applied to each batch of inputs (e.g.
    CIFAR augmentation) with the loop's seeded generator. ``hooks`` and ``resume``: see the module
    docstring. A non-finite loss raises ``FloatingPointError`` naming the first bad step (checked
    at each log and checkpoint, never after every step).
    """
    if len(x) != len(y):
        raise ValueError(f"x and y disagree on the number of examples: {len(x)} vs {len(y)}")
    if steps < 1 or batch_size < 1:
        raise ValueError(f"steps and batch_size must be >= 1, got {steps} and {batch_size}")
    hooks = hooks or FitHooks()
    n = len(x)
    num_data = n if num_data is None else num_data
    schedule = kl_schedule or constant(1.0)
    sampler = ShuffleSampler(n, batch_size, torch.Generator().manual_seed(seed))
    params = [p for p in method.parameters() if p.requires_grad]
    opt = make_optimizer(params, optimizer, method.default_lr if lr is None else lr)
    start_step, seconds_before = 0, 0.0
    if resume is not None:
        if resume.step > steps:
            raise ValueError(f"the checkpoint is at step {resume.step}, past steps={steps}")
        method.load_state_dict(resume.method)
        opt.load_state_dict(resume.optimizer)
        sampler.load_state_dict(resume.sampler)
        set_rng_state(resume.rng)
        start_step, seconds_before = resume.step, resume.seconds
    method.train()
    result = FitResult()
    start = time.perf_counter()
    first_bad = torch.full((), -1, dtype=torch.long)  # first step with a non-finite loss
    last_log_time, last_log_step = start, start_step

    def state(step: int) -> TrainState:
        return TrainState(
            step=step,
            method=method.state_dict(),
            optimizer=opt.state_dict(),
            sampler=sampler.state_dict(),
            rng=rng_state(),
            seconds=seconds_before + time.perf_counter() - start,
        )

    def check_finite() -> None:
        bad = int(first_bad)
        if bad >= 0:
            raise FloatingPointError(f"non-finite loss at step {bad}")

    for step in range(start_step, steps):
        idx = sampler.next_indices()
        xb, yb = x[idx], y[idx]
        if transform is not None:
            xb = transform(xb, sampler.generator)
        kl_weight = schedule(step)
        loss, logs = method.loss(xb, yb, num_data=num_data, kl_weight=kl_weight)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        done = step + 1
        if first_bad.device != loss.device:
            first_bad = first_bad.to(loss.device)
        first_bad = torch.where((first_bad < 0) & ~torch.isfinite(loss.detach()), done, first_bad)
        hooks.on_step(done)
        if done % log_every == 0 or done == steps:
            row = {"step": float(done), "epoch": done / sampler.steps_per_epoch}
            row["kl_weight"] = float(kl_weight)
            row.update({k: float(v) for k, v in logs.items()})
            now = time.perf_counter()
            row["examples_per_s"] = (
                (done - last_log_step) * sampler.batch_size / max(now - last_log_time, 1e-9)
            )
            last_log_time, last_log_step = now, done
            check_finite()
            result.logs.append(row)
            hooks.on_log(row)
            if verbose:
                print(" ".join(f"{k}={v:.4g}" for k, v in row.items()), file=sys.stderr)
        if done % sampler.steps_per_epoch == 0:
            _epoch_end(method, hooks, done // sampler.steps_per_epoch, done)
        stop = done < steps and hooks.should_stop()
        every = hooks.checkpoint_every
        if stop or (every and done % every == 0 and done < steps):
            check_finite()
            hooks.on_checkpoint(state(done))
        if stop:
            raise TrainingInterrupted(done)
    check_finite()
    if hooks.checkpoint_every:
        hooks.on_checkpoint(state(steps))
    result.seconds = seconds_before + time.perf_counter() - start
    result.steps = steps
    method.eval()
    return result


def _epoch_end(method: Method, hooks: FitHooks, epoch: int, step: int) -> None:
    devices = [torch.cuda.current_device()] if torch.cuda.is_initialized() else []
    with torch.random.fork_rng(devices=devices):
        method.eval()
        try:
            hooks.on_epoch_end(method, epoch, step)
        finally:
            method.train()
