"""One rank of the DDP tests (started by ``ddp_launch.launch``): ``ddp_worker.py SCENARIO OUT``.

Scenarios (each rank writes ``OUT/<scenario>-rank<r>.pt`` for the test to read):

- ``checks``: MAP's one step; BbH's per-step parameter fingerprints and logged losses; every
  registered method's fingerprints; a non-finite loss on rank 1 only; a stop request on rank 1
  only; a parameter without a gradient; an interrupted and resumed BbH run.
- ``raise``: rank 1 raises in a hook at step 2; rank 0 must not hang.
"""

from __future__ import annotations

import copy
import hashlib
import math
import sys
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

import bbh
from bbh.methods.map import MAP
from bbh.nets import MLP
from bbh.training import (
    DDPSettings,
    DistributedError,
    FitHooks,
    TrainingDiverged,
    TrainingInterrupted,
    TrainState,
    fit,
    process_group_from_env,
)

NUM_EXAMPLES, FEATURES, CLASSES = 64, 5, 3
BBH_OPTIONS: dict[str, Any] = {"hidden": (8, 16), "num_samples": 16, "kl": "entropy", "nll": "mean"}
METHODS: dict[str, tuple[str, dict[str, Any]]] = {
    "map": ("map", {}),
    "mc_dropout": ("mc_dropout", {}),
    "ensemble": ("ensemble", {"num_members": 3}),
    "bbb": ("bbb", {}),
    "mnf": ("mnf", {}),
    "bbh": ("bbh", {}),  # whatever bbh.build("bbh", net) gives
    "bbh_chunked": ("bbh", {"generator": "chunked"}),
    "bbh_discriminator": ("bbh", {"kl": "discriminator"}),
    # a Bayesian subnetwork: the first layer a point estimate beside the hypernet's parameters
    "bbh_subnetwork": ("bbh", {"deterministic": ["layers.0"]}),
}


def data() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    x = torch.randn(NUM_EXAMPLES, FEATURES, generator=g)
    return x, torch.randint(0, CLASSES, (NUM_EXAMPLES,), generator=g)


def build(name: str, **options: Any) -> torch.nn.Module:
    torch.manual_seed(0)  # the same initialisation on every rank (and in the test process)
    return bbh.build(name, MLP(FEATURES, [7], CLASSES), **options)


def fingerprint(module: torch.nn.Module) -> str:
    h = hashlib.sha256()
    for t in module.state_dict().values():
        h.update(t.detach().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


class Recorder(FitHooks):
    """Fingerprints after every step; optional checkpoints, stop request and failure."""

    def __init__(self, method: torch.nn.Module, *, checkpoint_every: int | None = None):
        self.method = method
        self.checkpoint_every = checkpoint_every
        self.prints: list[str] = []
        self.states: dict[int, TrainState] = {}
        self.stop_from: int | None = None
        self.fail_at: int | None = None
        self.step = 0

    def on_step(self, step: int) -> None:
        self.step = step
        self.prints.append(fingerprint(self.method))
        if self.fail_at == step:
            raise ValueError(f"rank {dist.get_rank()} fails on purpose at step {step}")

    def on_checkpoint(self, state: TrainState) -> None:
        self.states[state.step] = copy.deepcopy(state)

    def should_stop(self) -> bool:
        return self.stop_from is not None and self.step >= self.stop_from


class InfiniteLossOnce(MAP):
    """MAP whose loss is +inf (its gradients stay finite) at call ``bad_call`` on ``bad_rank``."""

    bad_call, bad_rank = 3, 1

    def loss(self, x: Any, y: Any, **kw: Any) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        self.calls = getattr(self, "calls", 0) + 1
        loss, logs = super().loss(x, y, **kw)
        if self.calls == self.bad_call and dist.get_rank() == self.bad_rank:
            loss = loss + math.inf
        return loss, logs


def checks(rank: int) -> dict[str, Any]:
    x, y = data()
    out: dict[str, Any] = {}

    # MAP: one step of the global batch 16 (8 per rank)
    method = build("map")
    fit(method, x, y, steps=1, batch_size=16, lr=0.1)
    out["map_state"] = method.state_dict()

    # BbH: identical parameters after every step, losses as logged (means over the ranks)
    method = build("bbh", **BBH_OPTIONS)
    hooks = Recorder(method)
    result = fit(method, x, y, steps=5, batch_size=32, num_data=64, log_every=1, hooks=hooks)
    out["bbh_prints"] = hooks.prints
    out["bbh_logs"] = result.logs

    # every method: identical parameters after every step
    out["method_prints"] = {}
    for label, (name, options) in METHODS.items():
        method = build(name, **options)
        hooks = Recorder(method)
        fit(method, x, y, steps=3, batch_size=16, log_every=1, hooks=hooks)
        out["method_prints"][label] = hooks.prints

    # a loss that is infinite on rank 1 only (finite gradients): every rank stops at step 3
    torch.manual_seed(0)
    method = InfiniteLossOnce(MLP(FEATURES, [7], CLASSES))
    hooks = Recorder(method)
    try:
        fit(method, x, y, steps=8, batch_size=16, log_every=4, hooks=hooks)
        out["diverged_at"] = None
    except TrainingDiverged as exc:
        out["diverged_at"] = exc.step
    out["diverged_print"] = fingerprint(method)
    out["diverged_prints"] = hooks.prints

    # a stop request on rank 1 only (from step 2): every rank stops at the same step
    method = build("bbh", **BBH_OPTIONS)
    hooks = Recorder(method, checkpoint_every=100)
    hooks.stop_from = 2 if rank == 1 else None
    try:
        fit(method, x, y, steps=20, batch_size=16, hooks=hooks)
        out["stopped_at"] = None
    except TrainingInterrupted as exc:
        out["stopped_at"] = exc.step
    out["stop_checkpoints"] = sorted(hooks.states)

    # a net with a parameter no step uses: DDP's error, made specific; trains with the option
    torch.manual_seed(0)
    net = MLP(FEATURES, [7], CLASSES)
    net.register_parameter("unused", torch.nn.Parameter(torch.zeros(3)))
    try:
        fit(MAP(copy.deepcopy(net), weight_decay="none"), x, y, steps=3, batch_size=16)
        out["unused_error"] = None
    except DistributedError as exc:
        out["unused_error"] = str(exc)
    method = MAP(net, weight_decay="none")
    hooks = Recorder(method)
    fit(method, x, y, steps=3, batch_size=16, hooks=hooks, ddp=DDPSettings(True))
    out["unused_prints"] = hooks.prints

    # exact resume: 6 steps straight, and from rank 0's checkpoint at step 3
    method = build("bbh", **BBH_OPTIONS)
    hooks = Recorder(method, checkpoint_every=3)
    fit(method, x, y, steps=6, batch_size=16, hooks=hooks)
    out["straight_print"] = fingerprint(method)
    state = hooks.states.get(3)
    out["checkpoint_3"] = state
    method = build("bbh", **BBH_OPTIONS)
    fit(method, x, y, steps=6, batch_size=16, resume=state if rank == 0 else None)
    out["resumed_print"] = fingerprint(method)
    return out


def fail_in_a_hook(rank: int) -> dict[str, Any]:
    x, y = data()
    method = build("map")
    hooks = Recorder(method)
    hooks.fail_at = 2 if rank == 1 else None
    fit(method, x, y, steps=10_000, batch_size=16, log_every=1, hooks=hooks)
    return {}


def main(scenario: str, out: Path) -> None:
    torch.set_num_threads(1)
    with process_group_from_env("gloo"):  # destroys the group after a barrier on success
        rank = dist.get_rank()
        result = {"checks": checks, "raise": fail_in_a_hook}[scenario](rank)
        torch.save(result, out / f"{scenario}-rank{rank}.pt")


if __name__ == "__main__":
    main(sys.argv[1], Path(sys.argv[2]))
