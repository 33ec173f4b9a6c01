"""Minibatch order: one seeded permutation per epoch, the remainder of an epoch dropped.

Kept apart from the loop so that its state can be saved for an exact resume. Under DDP every
rank draws the same permutation and takes its own slice of each global batch (``rank``,
``world_size``), so the ranks' batches together are the batch one process would draw.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor


class ShuffleSampler:
    """Indices for each step: a fresh ``randperm(n)`` from ``generator`` per epoch.

    Each step takes the next ``batch_size`` indices of the permutation (the global batch);
    ``next_indices`` returns this rank's slice of them, ``[batch_size // world_size]`` (all of
    them in one process). ``epoch`` counts completed permutations; ``state_dict`` /
    ``load_state_dict`` capture the permutation, the position in it and the generator, so a
    resumed run draws the same batches (the state is the same on every rank).

    Args:
        n: The number of examples N, at least 1.
        batch_size: The global batch, at least 1 (at most N is used), a multiple of
            ``world_size``.
        generator: Draws the permutations.
        rank: This process's rank.
        world_size: The number of ranks.

    Raises:
        ValueError: ``n`` or ``batch_size`` is below 1, ``rank`` is not in
            ``[0, world_size)``, or the batch does not split evenly over the ranks.
    """

    def __init__(
        self,
        n: int,
        batch_size: int,
        generator: torch.Generator,
        *,
        rank: int = 0,
        world_size: int = 1,
    ):
        if n < 1 or batch_size < 1:
            raise ValueError(f"need n >= 1 and batch_size >= 1, got n={n}, batch_size={batch_size}")
        if not 0 <= rank < world_size:
            raise ValueError(
                f"need 0 <= rank < world_size, got rank={rank}, world_size={world_size}"
            )
        self.n = n
        self.batch_size = min(batch_size, n)
        if self.batch_size % world_size:
            raise ValueError(
                f"batch_size {self.batch_size} (the global batch) does not split evenly over "
                f"{world_size} ranks; use a multiple of {world_size}"
            )
        self.rank, self.world_size = rank, world_size
        self.local_batch_size = self.batch_size // world_size
        self.generator = generator
        self.perm = torch.randperm(n, generator=generator)
        self.cursor = 0
        self.epoch = 0

    @property
    def steps_per_epoch(self) -> int:
        """Steps per epoch: ``N // batch_size`` (the last partial batch is dropped)."""
        return self.n // self.batch_size

    def next_indices(self) -> Tensor:
        """This rank's indices of the next batch (a new permutation when the epoch is used up).

        Returns:
            ``local_batch_size`` indices into the data set.
        """
        if self.cursor + self.batch_size > self.n:
            self.perm, self.cursor = torch.randperm(self.n, generator=self.generator), 0
            self.epoch += 1
        start = self.cursor + self.rank * self.local_batch_size
        idx = self.perm[start : start + self.local_batch_size]
        self.cursor += self.batch_size
        return idx

    def state_dict(self) -> dict[str, Any]:
        """The sampler's state for a checkpoint.

        Returns:
            The permutation, cursor, epoch and generator state.
        """
        return {
            "perm": self.perm.clone(),
            "cursor": self.cursor,
            "epoch": self.epoch,
            "generator": self.generator.get_state(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore the state of ``state_dict``.

        Args:
            state: A dict from ``state_dict``.

        Raises:
            ValueError: The state is for another number of examples.
        """
        perm = state["perm"]
        if perm.shape != (self.n,):
            raise ValueError(f"sampler state is for {perm.shape[0]} examples, not {self.n}")
        self.perm = perm.clone()
        self.cursor = int(state["cursor"])
        self.epoch = int(state["epoch"])
        self.generator.set_state(state["generator"])
