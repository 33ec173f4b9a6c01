"""The global random-number state (torch CPU and CUDA), captured and restored for exact resume.

Methods draw their noise (weight samples, dropout masks) from torch's global generators; the data
order has its own generator (``ShuffleSampler``).
"""

from __future__ import annotations

from typing import Any

import torch


def rng_state() -> dict[str, Any]:
    """Torch's random number generators' states (CPU, and CUDA where it is initialised).

    Returns:
        A dict that ``set_rng_state`` takes.
    """
    state: dict[str, Any] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore the generators' states that ``rng_state`` returned.

    Args:
        state: The states from ``rng_state``.
    """
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
