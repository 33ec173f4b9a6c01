"""What every benchmark shares: the machine record, the load guard, interleaved timing, memory.

- ``machine_info(device)``: CPU model, cores, torch version, device, threads, load average.
- ``load_guard(allow_busy)``: refuses (``SystemExit`` with a message, exit status 3) when the
  1-minute load average is above the number of cores, unless ``--allow-busy``, which marks the
  record ``"busy": true``.
- ``interleaved(fns, repeats)``: times several step functions in turn (A, B, A, B, ...), so noise
  from other work hits them alike; reports medians and the median of per-round ratios.
- ``peak_step_memory(step, state, device)``: peak bytes of one training step, parameters and
  optimizer state included (see its docstring for how, on a CPU and on CUDA).
- ``write_record(path, record)``: JSON, written atomically, with the machine and the guard's
  verdict.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import torch

from bbh.io import write_json

#: Exit status of a benchmark that refuses to record on a busy machine.
BUSY_EXIT = 3


# --------------------------------------------------------------------------- the machine


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (Linux), else ``platform.processor()``."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def core_count() -> int:
    """Cores this process may run on (the affinity mask where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def load_average() -> list[float]:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:  # not available on this OS
        return []


def machine_info(device: torch.device) -> dict[str, Any]:
    info: dict[str, Any] = {
        "cpu": cpu_model(),
        "cores": core_count(),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "device": str(device),
    }
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info["gpu"] = props.name
        info["gpu_memory_gib"] = round(props.total_memory / 2**30, 1)
        info["cuda"] = torch.version.cuda
    return info


# --------------------------------------------------------------------------- the load guard


def load_guard(allow_busy: bool) -> dict[str, Any]:
    """Refuse to measure when the machine is visibly busy (1-min load average > cores).

    Returns the record's ``load`` entry: ``{"before": [1, 5, 15-min], "busy": bool}``. With
    ``allow_busy`` a busy machine is measured anyway and marked busy.
    """
    before = load_average()
    cores = core_count()
    busy = bool(before) and before[0] > cores
    if busy and not allow_busy:
        print(
            f"refusing to record: the load average is {before[0]:.2f} on {cores} cores (above "
            f"the core count, so other work would distort the timings). Wait for a quiet "
            f"machine, or pass --allow-busy to record anyway with the result marked busy.",
            file=sys.stderr,
        )
        raise SystemExit(BUSY_EXIT)
    return {"before": before, "cores": cores, "busy": busy}


def finish_load(load: dict[str, Any]) -> dict[str, Any]:
    """Add the load average after the run (our own threads count in it)."""
    return {**load, "after": load_average()}


# --------------------------------------------------------------------------- devices


def parse_device(name: str) -> torch.device:
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit(f"--device {name}: CUDA is not available on this machine")
    return device


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# --------------------------------------------------------------------------- timing


def interleaved(
    fns: Mapping[str, Callable[[], object]],
    *,
    repeats: int,
    warmup: int = 2,
    device: torch.device,
    baseline: str | None = None,
) -> dict[str, dict[str, float]]:
    """Run each function once per round, in turn, ``warmup`` untimed rounds then ``repeats``;
    the order rotates by one each round (the prediction timings depended on it).

    Returns ``{name: {"median_s", "min_s", "repeats"}}``; with ``baseline`` each other entry also
    gets ``"ratio"``: the median over rounds of (its time / the baseline's time in that round),
    robust to load that changes between rounds.
    """
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    if baseline is not None and baseline not in fns:
        raise ValueError(f"baseline {baseline!r} is not one of {list(fns)}")
    times: dict[str, list[float]] = {name: [] for name in fns}
    names = list(fns)
    for r in range(warmup + repeats):
        # each round starts with the next function: none always runs first or after another
        for name in names[r % len(names) :] + names[: r % len(names)]:
            fn = fns[name]
            synchronize(device)
            start = time.perf_counter()
            fn()
            synchronize(device)
            if r >= warmup:
                times[name].append(time.perf_counter() - start)
    out: dict[str, dict[str, float]] = {}
    for name, ts in times.items():
        row = {"median_s": statistics.median(ts), "min_s": min(ts), "repeats": float(len(ts))}
        if baseline is not None and name != baseline:
            ratios = [t / b for t, b in zip(ts, times[baseline], strict=True)]
            row["ratio"] = statistics.median(ratios)
        out[name] = row
    return out


# --------------------------------------------------------------------------- memory


def tensor_bytes(tensors: Iterable[torch.Tensor]) -> int:
    """Bytes held by distinct tensor storages (shared storages counted once)."""
    seen: set[int] = set()
    total = 0
    for t in tensors:
        storage = t.untyped_storage()
        if storage.data_ptr() in seen:
            continue
        seen.add(storage.data_ptr())
        total += storage.nbytes()
    return total


def resident_bytes(module: torch.nn.Module, optimizer: torch.optim.Optimizer) -> int:
    """Parameters, buffers, existing gradients and optimizer state of a training setup."""
    tensors: list[torch.Tensor] = list(module.parameters()) + list(module.buffers())
    tensors += [p.grad for p in module.parameters() if p.grad is not None]
    for state in optimizer.state.values():
        tensors += [v for v in state.values() if isinstance(v, torch.Tensor)]
    return tensor_bytes(tensors)


def peak_step_memory(
    step: Callable[[], object],
    module: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    device: torch.device,
) -> dict[str, Any]:
    """Peak bytes while ``step()`` runs (call it after a warm-up step, so the state exists).

    Gradients are set to None first, so the step's backward allocates them inside the window.

    CUDA: ``torch.cuda.max_memory_allocated`` after ``reset_peak_memory_stats`` (everything
    allocated by PyTorch on the device). CPU: the resident state (parameters, buffers, gradients,
    optimizer state; ``resident_bytes``) plus the highest running total of the step's own
    allocations and frees, read from ``torch.profiler``'s memory events (``profile_memory=True``).
    Both count tensors only, not the allocator's cache or Python objects.
    """
    optimizer.zero_grad(set_to_none=True)  # the step's own backward allocates the gradients
    if device.type == "cuda":
        synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        start = torch.cuda.memory_allocated(device)
        step()
        synchronize(device)
        peak = torch.cuda.max_memory_allocated(device)
        return {
            "peak_bytes": peak,
            "resident_bytes": start,
            "step_bytes": peak - start,
            "how": "torch.cuda.max_memory_allocated",
        }
    resident = resident_bytes(module, optimizer)
    step_peak = _profiled_cpu_peak(step)
    return {
        "peak_bytes": resident + step_peak,
        "resident_bytes": resident,
        "step_bytes": step_peak,
        "how": "resident tensors + torch.profiler CPU memory events (running-total peak)",
    }


def _profiled_cpu_peak(step: Callable[[], object]) -> int:
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        step()
    try:
        events = prof.profiler.kineto_results.events()  # type: ignore[union-attr]
        records = sorted(
            (e.start_ns(), e.nbytes())
            for e in events
            if e.name() == "[memory]" and str(e.device_type()).endswith("CPU")
        )
    except AttributeError as err:  # a torch whose profiler lacks these accessors
        raise RuntimeError(
            f"torch {torch.__version__}: the profiler's memory events are not readable ({err}); "
            "measure memory on CUDA or with a torch >= 2.4"
        ) from err
    running = peak = 0
    for _, nbytes in records:
        running += nbytes
        peak = max(peak, running)
    return peak


# --------------------------------------------------------------------------- command lines


def common_parser(description: str, default_out: str) -> argparse.ArgumentParser:
    """The flags every benchmark takes (``--device``, ``--scale``, ``--repeats``, ...)."""
    ap = argparse.ArgumentParser(
        description=description, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "--out", default=default_out, help="JSON record to write (default: %(default)s)"
    )
    ap.add_argument("--device", default="cpu", help="cpu or cuda[:N] (default: %(default)s)")
    ap.add_argument(
        "--scale",
        choices=["paper", "tiny"],
        default="paper",
        help="paper: the real nets and batch sizes; tiny: shrunken nets and batches, for a smoke "
        "test (default: %(default)s)",
    )
    ap.add_argument("--repeats", type=int, default=10, help="timed rounds (default: %(default)s)")
    ap.add_argument("--warmup", type=int, default=2, help="untimed rounds (default: %(default)s)")
    ap.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch CPU threads (default: torch's own choice, recorded)",
    )
    ap.add_argument(
        "--allow-busy",
        action="store_true",
        help="measure even when the load average is above the core count; the record says busy",
    )
    ap.add_argument("--no-plot", action="store_true", help="write the JSON only")
    ap.add_argument("--seed", type=int, default=0)
    return ap


def setup(args: argparse.Namespace) -> tuple[torch.device, dict[str, Any]]:
    """Apply ``--threads``/``--seed``, check the device and the load; returns (device, load)."""
    if args.repeats < 1 or args.warmup < 0:
        raise SystemExit(
            f"--repeats must be >= 1 and --warmup >= 0, got {args.repeats}, {args.warmup}"
        )
    if args.threads is not None:
        if args.threads < 1:
            raise SystemExit(f"--threads must be >= 1, got {args.threads}")
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    device = parse_device(args.device)
    return device, load_guard(args.allow_busy)


def write_record(
    path: str | os.PathLike[str],
    record: dict[str, Any],
    *,
    device: torch.device,
    load: dict[str, Any],
    command: list[str] | None = None,
) -> tuple[Path, dict[str, Any]]:
    """Write ``record`` with ``machine``, ``load`` and ``busy`` keys first, atomically.

    Returns the path and the full record as written.
    """
    load = finish_load(load)
    full = {
        "busy": load["busy"],
        "command": " ".join(command if command is not None else sys.argv),
        "machine": machine_info(device),
        "load": load,
        **record,
    }
    full = _finite(full)
    out = write_json(path, full)
    print(f"wrote {out}" + ("  (marked busy)" if load["busy"] else ""), file=sys.stderr)
    return out, full


def _finite(value: Any) -> Any:
    """JSON has no NaN/inf: replace them by None (e.g. a ratio to a zero-time baseline)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def count_parameters(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad)
