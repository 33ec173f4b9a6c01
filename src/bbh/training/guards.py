"""Training that notices when it goes wrong: the guard ``bbh.training.fit`` runs on every step.

``TrainingGuard`` has two hooks in the loop: ``after_backward(step, loss, logs)`` on every step and
``at_log(step)`` at every log interval (where the loop syncs anyway).

- **Non-finite loss or gradient**, caught at the step it happens. Each step adds a flag on the
  device (is the loss or any gradient NaN or infinite?), with no host sync. An optimiser that
  supports torch's ``found_inf`` protocol (fused Adam, AdamW, SGD: what AMP's ``GradScaler``
  uses) reads the flag on the device and skips the step; the flag stays set, so from the first
  bad step on no update is applied and the parameters and optimiser state stay those after the
  last good step. ``at_log`` then raises ``TrainingDiverged`` naming that step. Other optimisers
  (RMSprop, non-fused Adam) cost one host sync per step: the flag is read before the update.
  Buffers (BatchNorm running statistics) are restored to their values at the last log interval.
  Under DDP the flags pass through ``reduce_flags`` (a max over the ranks), so every rank skips
  the same steps and raises at the same log.
- **Warnings** (each kind once per run): at the first step, when the KL term at the schedule's
  largest weight dwarfs the likelihood (``num_data`` small for the number of weights: anneal,
  temper or use a smaller net); at a log interval, when the KL estimate went negative (a KL never
  is: the sample-based estimate is unreliable) or the NLL rose far above its start.
"""

from __future__ import annotations

import inspect
import math
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path

import torch
from torch import Tensor, nn

__all__ = ["TrainingDiverged", "TrainingGuard", "TrainingWarning"]


class TrainingDiverged(FloatingPointError):
    """The loss or a gradient became NaN or infinite at ``step`` (1-based); the parameters are
    those from before that step.

    Args:
        message: What diverged, and where.
        step: The 1-based step at which it diverged (kept as ``self.step``).
    """

    def __init__(self, message: str, *, step: int):
        super().__init__(message)
        self.step = step


class TrainingWarning(UserWarning):
    """Training runs, but what it computes looks wrong (see ``TrainingGuard``)."""


class TrainingGuard:
    """Watches one training run; see the module docstring.

    Args:
        method: the model being trained (its buffers are restored on a failure).
        optimizer: the optimiser stepping it.
        num_data: N of the loss scaling (for the up-front KL warning).
        kl_schedule: the KL weight per 0-based step (the up-front check uses the first step's).
        lr: the learning rate, quoted in messages.
        kl_dominance: warn when the KL term exceeds this many NLLs at the first step.
        nll_rise: warn when the NLL exceeds its first value by this many times
            ``max(|first NLL|, 1)``.
        reduce_flags: combines this process's ``[loss bad, gradient bad]`` flags (a float
            tensor ``[2]``) with those of the other processes (DDP: a max over the ranks).
        warn: issue the warnings (under DDP rank 0 does).
    """

    def __init__(
        self,
        method: nn.Module,
        optimizer: torch.optim.Optimizer,
        *,
        num_data: int,
        kl_schedule: Callable[[int], float] | None = None,
        lr: float | None = None,
        kl_dominance: float = 50.0,
        nll_rise: float = 10.0,
        reduce_flags: Callable[[Tensor], Tensor] | None = None,
        warn: bool = True,
    ):
        self.method = method
        self.optimizer = optimizer
        self.num_data = num_data
        self.kl_schedule = kl_schedule
        self.lr = lr
        self.kl_dominance = kl_dominance
        self.nll_rise = nll_rise
        self.reduce_flags = reduce_flags
        self.warn = warn
        self.params = [p for group in optimizer.param_groups for p in group["params"]]
        device = self.params[0].device if self.params else torch.device("cpu")
        # found_inf protocol: a float32 flag on the parameters' device, 1.0 = skip this step
        self._bad = torch.zeros((), dtype=torch.float32, device=device)
        self._first_bad = torch.zeros((), dtype=torch.int64, device=device)  # steps since start
        self._bad_kind = torch.zeros((), dtype=torch.int64, device=device)  # 1 loss, 2 gradient
        self._count = torch.zeros((), dtype=torch.int64, device=device)
        self._device_skip = bool(getattr(optimizer, "_step_supports_amp_scaling", False))
        if self._device_skip:
            optimizer.register_step_post_hook(_forget_found_inf)
        self._start_step: int | None = None
        self._interval_start = 0
        self._nll_start: Tensor | None = None
        self._nll_max: Tensor | None = None
        self._kl_min: Tensor | None = None
        self._warned: set[str] = set()
        self._buffers = self._snapshot_buffers()

    # ----------------------------------------------------------------------------- the hooks

    def after_backward(self, step: int, loss: Tensor, logs: Mapping[str, Tensor]) -> None:
        """Flag a non-finite loss or gradient of 0-based ``step`` (device ops only, unless the
        optimiser cannot skip a step on the device: then one sync, and an error right here).

        Args:
            step: The step, from 0.
            loss: The step's loss.
            logs: The step's logged values (``Method.loss``).

        Raises:
            TrainingDiverged: Where the optimiser cannot skip a step on the device, at once.
        """
        if self._start_step is None:
            self._start_step = step
            self._interval_start = step
            if self.warn:
                self._first_step(step, logs)
        loss_bad = ~torch.isfinite(loss.detach()).to(self._bad.device)
        grad_bad = _any_nonfinite(self.params, self._bad.device)
        if self.reduce_flags is not None:
            flags = self.reduce_flags(torch.stack([loss_bad, grad_bad]).float())
            loss_bad, grad_bad = flags[0] > 0, flags[1] > 0
        bad_now = loss_bad | grad_bad
        new = bad_now & (self._bad == 0)
        self._count += 1
        self._first_bad = torch.where(new, self._count, self._first_bad)
        self._bad_kind = torch.where(new, 2 - loss_bad.long(), self._bad_kind)
        self._bad = torch.maximum(self._bad, bad_now.float())
        self._track(logs)
        if self._device_skip:
            self.optimizer.found_inf = self._bad  # type: ignore[attr-defined]
            self.optimizer.grad_scale = None  # type: ignore[attr-defined]
        elif bool(self._bad):  # no device-side skip: read the flag before the update
            self._fail()

    def at_log(self, step: int) -> None:
        """At a log interval (one sync): raise if a step went non-finite, else warn about
        trends of the interval ending at 0-based ``step``.

        Args:
            step: The interval's last step, from 0.

        Raises:
            TrainingDiverged: A step of the interval had a non-finite loss or gradient.
        """
        if bool(self._bad):
            self._fail()
        first, last = self._interval_start + 1, step + 1
        self._interval_start = step + 1
        if self._kl_min is not None and float(self._kl_min) < 0:
            self._warn(
                "kl_negative",
                f"the KL estimate went negative (down to {float(self._kl_min):.4g} in steps "
                f"{first}-{last}); a KL divergence never is, so the sample-based estimate is "
                f"unreliable here: use more weight samples per step{self._lower_lr()}",
            )
        if self._nll_start is not None and self._nll_max is not None:
            start, peak = float(self._nll_start), float(self._nll_max)
            if peak > start + self.nll_rise * max(abs(start), 1.0):
                self._warn(
                    "nll_rise",
                    f"the NLL rose from {start:.4g} at the first step to {peak:.4g} in steps "
                    f"{first}-{last}: training is diverging{self._lower_lr('; try a lower')}",
                )
        self._kl_min = self._nll_max = None
        self._buffers = self._snapshot_buffers()

    # ------------------------------------------------------------------------------- helpers

    def _first_step(self, step: int, logs: Mapping[str, Tensor]) -> None:
        """One sync at the start: does the KL term swamp the likelihood?"""
        weight = 1.0 if self.kl_schedule is None else float(self.kl_schedule(step))
        temperature = getattr(self.method, "temperature", None)  # part of the model's KL weight
        if isinstance(temperature, Tensor):
            weight *= float(temperature)
        if "kl" not in logs or "nll" not in logs or not weight > 0:
            return
        kl, nll = float(logs["kl"]), float(logs["nll"])
        term = weight * kl / self.num_data
        if not (math.isfinite(term) and math.isfinite(nll)):
            return
        if term > self.kl_dominance * max(abs(nll), 1e-3):
            weights = _num_weights(self.method)
            self._warn(
                "kl_dominates",
                f"the KL term (kl_weight x temperature {weight:g} x KL {kl:.4g} / num_data "
                f"{self.num_data:,} = {term:.4g}) is {term / max(abs(nll), 1e-3):.0f} times the "
                f"NLL ({nll:.4g}) at the first step: with {self.num_data:,} examples for "
                f"{weights:,} weights it pulls the weights to the prior before the data are "
                "learnt. Anneal the KL in (kl_schedule="
                "bbh.training.annealing(start, length)), temper it (a KL weight below 1, or "
                "num_data of the full data set) or use a smaller net",
            )

    def _track(self, logs: Mapping[str, Tensor]) -> None:
        nll, kl = logs.get("nll"), logs.get("kl")
        if nll is not None:
            nll = nll.detach().to(self._bad.device, torch.float32)
            if self._nll_start is None:
                self._nll_start = nll.clone()
            self._nll_max = nll.clone() if self._nll_max is None else torch.fmax(self._nll_max, nll)
        if kl is not None:
            kl = kl.detach().to(self._bad.device, torch.float32)
            self._kl_min = kl.clone() if self._kl_min is None else torch.fmin(self._kl_min, kl)

    def _fail(self) -> None:
        start = self._start_step or 0
        step = start + int(self._first_bad)
        what = "loss" if int(self._bad_kind) == 1 else "gradient"
        with torch.no_grad():
            for buffer, saved in self._buffers:
                buffer.copy_(saved)
        raise TrainingDiverged(
            f"non-finite {what} (NaN or infinite) at step {step}; training stopped with the "
            f"parameters as they were before that step{self._lower_lr('. Try a lower')}",
            step=step,
        )

    def _warn(self, kind: str, message: str) -> None:
        if self.warn and kind not in self._warned:
            self._warned.add(kind)
            warnings.warn(message, TrainingWarning, stacklevel=_caller_outside_bbh())

    def _lower_lr(self, lead: str = ", or a lower") -> str:
        if self.lr is None:
            return ""
        return f"{lead} learning rate (now {self.lr:g})"

    def _snapshot_buffers(self) -> list[tuple[Tensor, Tensor]]:
        return [(b, b.detach().clone()) for b in self.method.buffers() if b.is_floating_point()]


def _any_nonfinite(params: list[Tensor], device: torch.device) -> Tensor:
    """A device bool: does any gradient hold NaN or infinity (one pass, no sync).

    Uses the check of AMP's ``GradScaler`` (with a scale of exactly 1, so the gradients keep
    their values), per device and dtype; a max-norm pass where that kernel is missing.
    """
    found = torch.zeros((), dtype=torch.float32, device=device)
    groups: dict[tuple[torch.device, torch.dtype], list[Tensor]] = {}
    for p in params:
        if p.grad is not None:
            groups.setdefault((p.grad.device, p.grad.dtype), []).append(p.grad)
    for (grad_device, _), grads in groups.items():
        flag = torch.zeros((), dtype=torch.float32, device=grad_device)
        try:
            one = torch.ones((), dtype=torch.float32, device=grad_device)
            torch._amp_foreach_non_finite_check_and_unscale_(grads, flag, one)
        except (RuntimeError, NotImplementedError):  # dtype or device without the AMP kernel
            norms = torch._foreach_norm(grads, math.inf)  # NaN and inf propagate through max
            flag = (~torch.isfinite(torch.stack(norms)).all()).float()
        found = torch.maximum(found, flag.to(device))
    return found > 0


def _forget_found_inf(optimizer: torch.optim.Optimizer, *args: object) -> None:
    """Step post-hook: the flag applies to the guarded step only (the optimiser may be reused)."""
    for name in ("found_inf", "grad_scale"):
        if hasattr(optimizer, name):
            delattr(optimizer, name)


def _num_weights(method: nn.Module) -> int:
    spec = getattr(method, "spec", None)
    dim = getattr(spec, "dim", None)
    if isinstance(dim, int):
        return dim
    probe: Callable[[], nn.Module] | None = getattr(method, "probe_net", None)
    net = probe() if probe is not None else method
    return sum(p.numel() for p in net.parameters())


def _caller_outside_bbh() -> int:
    """The ``stacklevel`` that points a warning at the first caller outside the bbh package."""
    package = str(Path(__file__).resolve().parents[1])
    frame, level = inspect.currentframe(), 0
    while frame is not None and str(Path(frame.f_code.co_filename).resolve()).startswith(package):
        frame, level = frame.f_back, level + 1
    return max(level, 1)
