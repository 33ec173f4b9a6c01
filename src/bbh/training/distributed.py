"""Training on several processes: PyTorch's DDP, launched by ``torchrun``, used by ``fit``.

``bbh.training.fit`` trains data-parallel whenever a ``torch.distributed`` process group with
more than one process is initialised (``torchrun`` starts the processes, ``init_process_group``
joins them; ``bbh train`` does both through ``process_group_from_env``). The semantics, for
a run on R ranks with ``batch_size = G`` (the **global** batch):

- **Data**: every rank holds the whole training set; ``bbh.training.ShuffleSampler`` draws
  the same seeded permutation on every rank and gives rank r the r-th of R equal slices of each
  global batch, so the union of the ranks' batches is the batch a single process would draw with
  the same seed (``G`` must be a multiple of R).
- **Noise**: after the (identical, seeded) initialisation, rank r reseeds torch's global
  generators with ``seed_for_rank`` ``(seed, r)``: its weight samples, dropout masks and
  prior draws are its own.
- **Loss**: each rank computes the method's loss on its slice with ``num_data`` = the global
  training-set size; DDP averages the gradients, so the NLL part is the gradient of the global
  batch's mean NLL and ``kl_weight * KL / N`` is counted once (the mean of R independent
  KL estimates, each from the rank's own S weight samples), as in one process.
- **Communication**: one gradient all-reduce per step through DDP (every trainable parameter:
  hypernet, posterior scales, discriminator, flows; parameters a step leaves unused are found
  by DDP's ``find_unused_parameters``), plus one all-reduce of three numbers per step
  (``StepAgreement``: the guard's non-finite flags and a stop request, so all ranks skip,
  stop and raise at the same step), and one at each log row (means over ranks).
- **Files**: only rank 0 calls ``FitHooks.on_log`` and ``on_checkpoint``; a checkpoint holds
  every rank's RNG state (gathered to rank 0) and the number of ranks, and resumes only with
  that number. Under DDP rank 0's ``resume`` counts: it is broadcast (method, optimiser,
  sampler, the ranks' RNG states), so the other ranks never read a file.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import gc
import os
import pickle
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor, nn

from bbh.enums import Backend
from bbh.inputs import Inputs, named_tensors
from bbh.options import parse_enum

__all__ = [
    "BACKENDS",
    "Backend",
    "DDPSettings",
    "DistributedError",
    "Ranks",
    "StepAgreement",
    "broadcast_from_main",
    "current_ranks",
    "mean_over_ranks",
    "process_group_from_env",
    "run_on_main",
    "seed_for_rank",
]

T = TypeVar("T")


BACKENDS = tuple(b.value for b in Backend)


class DistributedError(RuntimeError):
    """A distributed run that cannot go on: a collective failed (another rank stopped) or the
    ranks disagree (different data, a different number of ranks than the checkpoint's)."""


@dataclass(frozen=True)
class Ranks:
    """This process's place in the process group: ``rank`` of ``world_size``.

    ``device`` is where tensors for collectives live: the current CUDA device for ``nccl``,
    the CPU otherwise.
    """

    rank: int
    world_size: int
    backend: str
    device: torch.device

    @property
    def is_main(self) -> bool:
        """True on rank 0."""
        return self.rank == 0


@dataclass(frozen=True)
class DDPSettings:
    """Options of the ``DistributedDataParallel`` wrapper ``fit`` builds.

    DDP's ``static_graph`` is not offered: the discriminator's lazy pretraining inside the
    first step breaks it.

    Args:
        find_unused_parameters: Let DDP find the parameters a step leaves without a gradient
            (a walk over the autograd graph per step). Every registered method uses all of its
            trainable parameters in every step, so it is off; a net or method that leaves some
            unused needs it (DDP then stops at the next step with an error that says so).
        gradient_as_bucket_view: Gradients live in DDP's communication buckets (one copy of
            the gradients less: 0.9 GB for the paper's layer-wise hypernet on LeNet-5).
    """

    find_unused_parameters: bool = False
    gradient_as_bucket_view: bool = True


def current_ranks() -> Ranks | None:
    """The initialised process group as ``Ranks``, or None (none, or a single process)."""
    if not (dist.is_available() and dist.is_initialized()):
        return None
    world = dist.get_world_size()
    if world < 2:
        return None
    backend = str(dist.get_backend())
    device = (
        torch.device("cuda", torch.cuda.current_device())
        if backend == "nccl"
        else torch.device("cpu")
    )
    return Ranks(dist.get_rank(), world, backend, device)


def seed_for_rank(seed: int, rank: int) -> int:
    """The seed of rank ``rank``'s noise in a run seeded ``seed`` (well mixed, 63 bits)."""
    state = np.random.SeedSequence([int(seed), int(rank)]).generate_state(2, dtype=np.uint32)
    return (int(state[0]) << 31) ^ int(state[1])


def resolve_backend(backend: Backend | str, device: torch.device) -> str:
    """``auto``: ``nccl`` for a CUDA device, ``gloo`` otherwise; an explicit choice is checked."""
    choice = parse_enum(Backend, backend, "backend")
    if choice is Backend.AUTO:
        return "nccl" if device.type == "cuda" else "gloo"
    if choice is Backend.NCCL and device.type != "cuda":
        raise ValueError(f"backend 'nccl' needs a CUDA device; this run trains on {device}")
    return choice.value


def local_rank() -> int:
    """``LOCAL_RANK`` as torchrun sets it (0 when absent)."""
    return int(os.environ.get("LOCAL_RANK", "0") or 0)


def env_world_size() -> int:
    """``WORLD_SIZE`` as torchrun sets it (1 when absent)."""
    text = os.environ.get("WORLD_SIZE", "1") or "1"
    try:
        return int(text)
    except ValueError:
        raise DistributedError(f"WORLD_SIZE={text!r} is not an integer") from None


@contextlib.contextmanager
def process_group_from_env(
    backend: Backend | str = "auto",
    device: torch.device | None = None,
    timeout_s: float | None = None,
) -> Iterator[Ranks | None]:
    """Join the process group that ``torchrun`` set up in the environment, for the block.

    Yields None in a single process (``WORLD_SIZE`` unset or 1). An already initialised group
    is used as it is (and left alone afterwards); otherwise ``init_process_group`` reads
    ``MASTER_ADDR``, ``MASTER_PORT``, ``RANK`` and ``WORLD_SIZE`` (``env://``), with the backend
    of ``resolve_backend`` and, on CUDA, the device ``cuda:LOCAL_RANK``; the group is
    destroyed at the end.

    Args:
        backend: ``"auto"``, ``"gloo"`` or ``"nccl"`` (``resolve_backend``).
        device: The device this rank trains on (default: the CPU).
        timeout_s: The collectives' timeout in seconds (None: torch's default).

    Yields:
        This process's ``Ranks``, or None in a single process.

    Raises:
        DistributedError: ``WORLD_SIZE > 1`` but torch has no ``torch.distributed``, or the
            other ``torchrun`` variables are missing.
    """
    if env_world_size() < 2 and not (dist.is_available() and dist.is_initialized()):
        yield None
        return
    if not dist.is_available():
        raise DistributedError("WORLD_SIZE > 1, but this torch build has no torch.distributed")
    if dist.is_initialized():
        yield current_ranks()
        return
    device = torch.device("cpu") if device is None else device
    name = resolve_backend(backend, device)
    if device.type == "cuda":
        torch.cuda.set_device(local_rank())
    missing = [k for k in ("MASTER_ADDR", "MASTER_PORT", "RANK") if not os.environ.get(k)]
    if missing:
        raise DistributedError(
            f"WORLD_SIZE={env_world_size()} is set but {', '.join(missing)} is not: start "
            "distributed runs with torchrun (e.g. torchrun --nproc_per_node=2 -m bbh train ...)"
        )
    timeout = None if timeout_s is None else dt.timedelta(seconds=timeout_s)
    dist.init_process_group(backend=name, timeout=timeout)
    finished = False
    try:
        yield current_ranks()
        finished = True
    finally:
        # DDP wrappers left in reference cycles hold the group's gloo work; collected only at
        # interpreter shutdown, their destructors can end the process with std::terminate
        # (SIGABRT after a finished run), so collect them while the interpreter is whole
        gc.collect()
        if finished:
            # every rank is done with the group before any tears it down
            with contextlib.suppress(Exception):
                dist.barrier()
        dist.destroy_process_group()


# ------------------------------------------------------------------------------ collectives


@contextlib.contextmanager
def collective(what: str) -> Iterator[None]:
    """Turn a failed collective into a ``DistributedError`` that says what it means."""
    try:
        yield
    except DistributedError:
        raise
    except RuntimeError as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
        raise DistributedError(
            f"rank {dist.get_rank()}: {what} failed ({first}): another rank stopped or cannot be "
            "reached; its own error (above, or in torchrun's summary) says why"
        ) from exc


def broadcast_object(obj: T, ranks: Ranks, what: str = "a broadcast") -> T:
    """Rank 0's ``obj`` on every rank (pickled; for small objects)."""
    box = [obj if ranks.is_main else None]
    with collective(what):
        dist.broadcast_object_list(box, src=0, device=ranks.device)
    return box[0]  # type: ignore[return-value]


def run_on_main(fn: Callable[[], T], ranks: Ranks | None, what: str = "rank 0's work") -> T:
    """Run ``fn`` on rank 0 only and return its result on every rank; if it raises, every rank
    raises the same exception (so no rank waits for one that has given up)."""
    if ranks is None:
        return fn()
    outcome: tuple[bool, Any] = (True, None)
    if ranks.is_main:
        try:
            outcome = (True, fn())
        except Exception as exc:
            outcome = (False, _picklable(exc))
    ok, value = broadcast_object(outcome, ranks, what)
    if not ok:
        raise reported_by_main(value, ranks)
    return value  # type: ignore[no-any-return]


E = TypeVar("E", bound=BaseException)


def reported_by_main(exc: E, ranks: Ranks | None) -> E:
    """Mark ``exc`` on ranks other than 0 as one that rank 0 raises too (and reports): a
    command prints it once, from rank 0 (see ``is_reported_by_main``)."""
    if ranks is not None and not ranks.is_main:
        exc.bbh_reported_by_main = True  # type: ignore[attr-defined]
    return exc


def is_reported_by_main(exc: BaseException) -> bool:
    return bool(getattr(exc, "bbh_reported_by_main", False))


def _picklable(exc: Exception) -> Exception:
    try:
        pickle.loads(pickle.dumps(exc))
        return exc
    except Exception:
        return DistributedError(f"rank 0: {type(exc).__name__}: {exc}")


def gather_to_main(obj: T, ranks: Ranks, what: str = "a gather") -> list[T] | None:
    """Every rank's ``obj``, in rank order, on rank 0 (None on the others)."""
    out: list[Any] | None = [None] * ranks.world_size if ranks.is_main else None
    with collective(what):
        dist.gather_object(obj, out, dst=0)
    return out


def broadcast_from_main(obj: T | None, ranks: Ranks, what: str = "a broadcast of state") -> T:
    """Rank 0's nested structure (dicts, lists, tuples of tensors and plain values) on every
    rank. Tensors travel by ``dist.broadcast`` (no pickling), the rest as one small object;
    a CUDA tensor arrives on this rank's current device, a CPU tensor on the CPU."""
    tensors: list[Tensor] = []
    skeleton = _skeleton(obj, tensors) if ranks.is_main else None
    skeleton = broadcast_object(skeleton, ranks, what)
    if not ranks.is_main:
        tensors = []
        obj = _rebuild(skeleton, tensors)
    with collective(what):
        for t in tensors:
            if t.device == ranks.device or ranks.backend != "nccl":
                dist.broadcast(t, src=0)
            else:  # nccl sends device tensors only
                buf = t.to(ranks.device)
                dist.broadcast(buf, src=0)
                t.copy_(buf)
    return obj  # type: ignore[return-value]


_TENSOR = "__bbh_tensor__"


def _skeleton(obj: Any, tensors: list[Tensor]) -> Any:
    if isinstance(obj, Tensor):
        tensors.append(obj.detach())
        return (_TENSOR, tuple(obj.shape), obj.dtype, obj.device.type)
    if isinstance(obj, dict):
        return {k: _skeleton(v, tensors) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_skeleton(v, tensors) for v in obj)
    return obj


def _rebuild(skeleton: Any, tensors: list[Tensor]) -> Any:
    if isinstance(skeleton, tuple) and len(skeleton) == 4 and skeleton[0] == _TENSOR:
        _, shape, dtype, kind = skeleton
        device = torch.device("cuda", torch.cuda.current_device()) if kind == "cuda" else "cpu"
        t = torch.empty(shape, dtype=dtype, device=device)
        tensors.append(t)
        return t
    if isinstance(skeleton, dict):
        return {k: _rebuild(v, tensors) for k, v in skeleton.items()}
    if isinstance(skeleton, (list, tuple)):
        return type(skeleton)(_rebuild(v, tensors) for v in skeleton)
    return skeleton


def mean_over_ranks(
    values: dict[str, float], ranks: Ranks | None, weight: float = 1.0
) -> dict[str, float]:
    """The ``weight``-weighted mean of each value over the ranks (e.g. a metric over a shard of
    ``weight`` examples: the metric over the union of the shards). Identity in one process."""
    if ranks is None:
        return dict(values)
    keys = sorted(values)
    t = torch.tensor([weight * values[k] for k in keys] + [weight], dtype=torch.float64)
    t = t.to(ranks.device)
    with collective("averaging metrics over the ranks"):
        dist.all_reduce(t)
    total = t[-1].item()
    return {k: v / total for k, v in zip(keys, t[:-1].tolist(), strict=True)}


def shard(n: int, ranks: Ranks | None) -> slice:
    """This rank's contiguous share of ``n`` items (sizes differ by at most one)."""
    if ranks is None:
        return slice(0, n)
    base, extra = divmod(n, ranks.world_size)
    start = ranks.rank * base + min(ranks.rank, extra)
    return slice(start, start + base + (1 if ranks.rank < extra else 0))


def check_same_data(x: Inputs, y: Tensor, ranks: Ranks) -> None:
    """Raise ``DistributedError`` on every rank unless every rank holds the same (x, y)
    (compared by an order-sensitive float64 fingerprint: one pass over the data; every tensor of
    a batch structure counts)."""
    n = len(y)
    per_x = sum(t.reshape(n, -1).sum(dim=1, dtype=torch.float64) for _, t in named_tensors(x))
    assert isinstance(per_x, Tensor)
    per_y = y.reshape(n, -1).sum(dim=1, dtype=torch.float64)
    pos = torch.arange(1, n + 1, dtype=torch.float64, device=y.device) / max(n, 1)
    mine = torch.stack([per_x.sum(), (per_x * pos).sum(), per_y.sum(), (per_y * pos).sum()])
    mine = torch.cat([torch.tensor([float(n)], dtype=torch.float64), mine.cpu()])
    everyone = [torch.zeros_like(mine).to(ranks.device) for _ in range(ranks.world_size)]
    with collective("comparing the ranks' training data"):
        dist.all_gather(everyone, mine.to(ranks.device))
    first = everyone[0].cpu()
    bad = [r for r, t in enumerate(everyone) if not torch.allclose(t.cpu(), first, rtol=1e-9)]
    if bad:
        sizes = [int(t[0].item()) for t in everyone]
        raise DistributedError(
            f"under DDP every rank must pass fit the same training set (each rank takes its "
            f"own share of every batch), but rank(s) {bad} hold other data than rank 0 "
            f"(examples per rank: {sizes})"
        )


def parameters_agree(module: nn.Module, ranks: Ranks) -> bool:
    """Do all ranks hold the same parameters and buffers (a float64 checksum per tensor)?"""
    return _agree(
        [t.detach().double().sum().reshape(1) for t in module.state_dict().values()], ranks
    )


def _agree(checksums: list[Tensor], ranks: Ranks) -> bool:
    mine = torch.cat(checksums) if checksums else torch.zeros(1, dtype=torch.float64)
    low, high = mine.to(ranks.device), mine.to(ranks.device).clone()
    with collective("comparing the ranks' parameters"):
        dist.all_reduce(low, op=dist.ReduceOp.MIN)
        dist.all_reduce(high, op=dist.ReduceOp.MAX)
    return bool(torch.equal(low, high))


def broadcast_module_state(module: nn.Module, ranks: Ranks) -> None:
    """Copy rank 0's parameters and buffers into every rank's ``module``, in place."""
    with collective("broadcasting rank 0's parameters"), torch.no_grad():
        for t in module.state_dict().values():
            if ranks.backend == "nccl" and t.device != ranks.device:
                buf = t.to(ranks.device)
                dist.broadcast(buf, src=0)
                t.copy_(buf)
            else:
                dist.broadcast(t, src=0)


def check_parameters_agree(module: nn.Module, ranks: Ranks, step: int) -> None:
    """Raise ``DistributedError`` if the ranks' parameters differ after ``step``."""
    parts = [p.detach().double().sum().reshape(1) for p in module.parameters()]
    if not _agree(parts, ranks):
        raise DistributedError(
            f"after step {step} the ranks hold different parameters (DDP keeps them equal: "
            "something changed parameters outside the optimiser step on some ranks)"
        )


def check_resumable(state: Any, steps: int, world_size: int) -> None:
    """A ``bbh.training.TrainState`` that this run (``steps``, ``world_size``) can
    continue, else ``ValueError``."""
    if state.step > steps:
        raise ValueError(f"the checkpoint is at step {state.step}, past steps={steps}")
    if state.world_size != world_size:
        launch = (
            "in one process (without torchrun)"
            if state.world_size == 1
            else f"with torchrun --nproc_per_node (times nodes) = {state.world_size}"
        )
        raise ValueError(
            f"the checkpoint was written by a run on {state.world_size} process(es) and this one "
            f"has {world_size}: resume it with the same number, {launch} (each rank's batch "
            "share and noise stream belong to its rank)"
        )


def start_ranks(
    method: nn.Module,
    optimizer: torch.optim.Optimizer,
    sampler: Any,
    resume: Any,
    *,
    steps: int,
    seed: int,
    ranks: Ranks,
) -> tuple[int, float]:
    """Start (or resume) a DDP run: ``(start step, seconds trained before)`` on every rank.

    A fresh run reseeds each rank's global generators with ``seed_for_rank``. A resumed one
    loads rank 0's ``resume`` (checked there) and broadcasts it: the optimiser state, the
    sampler state and each rank's RNG state; the method's state reaches the other ranks when
    DDP is built (it broadcasts rank 0's parameters and buffers).
    """

    def plan() -> dict[str, Any] | None:
        if resume is None:
            return None
        check_resumable(resume, steps, ranks.world_size)
        method.load_state_dict(resume.method)
        optimizer.load_state_dict(resume.optimizer)
        return {"step": resume.step, "seconds": resume.seconds, "rngs": resume.rank_rngs}

    from bbh.training.rng import set_rng_state

    started = run_on_main(plan, ranks, "starting the ranks")
    if started is None:
        torch.manual_seed(seed_for_rank(seed, ranks.rank))
        return 0, 0.0
    opt_state: dict[str, Any] = broadcast_from_main(
        optimizer.state_dict() if ranks.is_main else None, ranks
    )
    sampler_state: dict[str, Any] = broadcast_from_main(
        resume.sampler if ranks.is_main else None, ranks
    )
    if not ranks.is_main:
        optimizer.load_state_dict(opt_state)
    sampler.load_state_dict(sampler_state)
    set_rng_state(started["rngs"][ranks.rank])
    return int(started["step"]), float(started["seconds"])


class _LossModule(nn.Module):
    """``forward(x, y, num_data=, kl_weight=)`` is ``method.loss``: what DDP wraps, so that its
    forward sees the step (DDP hooks into ``forward``; the Method interface is ``loss``)."""

    def __init__(self, method: nn.Module):
        super().__init__()
        self.method = method

    def forward(
        self, x: Tensor, y: Tensor, *, num_data: int, kl_weight: float | Tensor
    ) -> tuple[Tensor, dict[str, Tensor]]:
        return self.method.loss(x, y, num_data=num_data, kl_weight=kl_weight)  # type: ignore[no-any-return, operator]


class _DDPLoss:
    """The wrapped loss, with DDP's error about parameters without a gradient made specific."""

    def __init__(self, module: nn.Module):
        self.module = module

    def __call__(
        self, x: Tensor, y: Tensor, *, num_data: int, kl_weight: float | Tensor
    ) -> tuple[Tensor, dict[str, Tensor]]:
        try:
            return self.module(x, y, num_data=num_data, kl_weight=kl_weight)  # type: ignore[no-any-return]
        except RuntimeError as exc:
            if "Expected to have finished reduction" not in str(exc):
                raise
            raise DistributedError(
                "a parameter received no gradient in the previous step, which DDP does not "
                "expect: train with fit(..., ddp=DDPSettings(find_unused_parameters=True)) "
                "(bbh train: distributed.find_unused_parameters = true). DDP said: "
                + " ".join(str(exc).split())[:600]
            ) from None


def wrap_loss(
    method: nn.Module, ranks: Ranks, settings: DDPSettings
) -> Callable[..., tuple[Tensor, dict[str, Tensor]]]:
    """``method.loss`` behind ``DistributedDataParallel`` (which broadcasts rank 0's parameters
    and buffers as it is built, and again the buffers before each step)."""
    from torch.nn.parallel import DistributedDataParallel

    on_cuda = ranks.device.type == "cuda"
    with collective("setting up DDP"):
        return _DDPLoss(
            DistributedDataParallel(
                _LossModule(method),
                device_ids=[ranks.device] if on_cuda else None,
                find_unused_parameters=settings.find_unused_parameters,
                gradient_as_bucket_view=settings.gradient_as_bucket_view,
            )
        )


class StepAgreement:
    """What the ranks agree on at every step, in one all-reduce (max) of three numbers.

    Given to ``TrainingGuard`` as ``reduce_flags``: the guard's ``[loss bad, gradient bad]``
    flags of this rank go in, the flags of any rank come out, so every rank skips the same
    steps and raises at the same log. The stop request (``should_stop()`` on any rank, e.g.
    a SIGINT that ``torchrun`` forwarded) rides along; ``stop_agreed`` reads it one step
    late, so that reading it never waits for the current step (no host sync on a GPU).
    """

    def __init__(self, ranks: Ranks, should_stop: Callable[[], bool]):
        self.ranks = ranks
        self.should_stop = should_stop
        self._pending: list[tuple[Tensor, Any]] = []

    def __call__(self, flags: Tensor) -> Tensor:
        """This rank's flags in, their max over the ranks out; the stop request rides along.

        Args:
            flags: This rank's flags, a tensor of 0/1 or booleans.

        Returns:
            The flags' max over the ranks, flattened, as floats on ``flags``'s device.
        """
        stop = torch.ones(1) if self.should_stop() else torch.zeros(1)
        both = torch.cat([flags.float().reshape(-1), stop.to(flags.device)]).to(self.ranks.device)
        with collective("agreeing on the step's flags"):
            dist.all_reduce(both, op=dist.ReduceOp.MAX)
        self._push(both[-1])
        return both[:-1].to(flags.device)

    def stop_agreed(self) -> bool:
        """Did any rank ask to stop, as agreed one step before the last (the same on every
        rank)?"""
        if len(self._pending) < 2:
            return False
        host, event = self._pending[0]
        if event is not None:
            event.synchronize()
        return bool(host.item() > 0)

    def _push(self, flag: Tensor) -> None:
        if flag.is_cuda:
            host = torch.empty((), pin_memory=True)
            host.copy_(flag, non_blocking=True)
            event = torch.cuda.Event()
            event.record()
        else:
            host, event = flag.clone(), None
        self._pending = [*self._pending[-1:], (host, event)]
