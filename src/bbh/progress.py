"""A one-line progress report on stderr for long evaluations (no tqdm dependency).

A core module (it imports nothing of ``bbh``), so that the attacks and the evaluation both use it
without one importing the other's package (``docs/architecture.md``, "Layers").
"""

from __future__ import annotations

import sys
import time
from typing import TextIO


class Progress:
    """``Progress(total, "label")``; call ``update(n)`` as work is done and ``close()`` at the end.

    Rewrites one stderr line (``label: done/total (pct) elapsed``) at most every
    ``min_interval`` seconds. ``enabled=False`` makes every call a no-op.

    Args:
        total: The amount of work (negative counts as 0).
        label: The line's label.
        enabled: Show the line; False makes every call a no-op.
        stream: Where the line goes (default: standard error).
        min_interval: The least seconds between redraws.
    """

    def __init__(
        self,
        total: int,
        label: str,
        *,
        enabled: bool = True,
        stream: TextIO | None = None,
        min_interval: float = 0.5,
    ) -> None:
        self.total = max(int(total), 0)
        self.label = label
        self.enabled = enabled
        self.stream = stream if stream is not None else sys.stderr
        self.min_interval = min_interval
        self.done = 0
        self._start = time.monotonic()
        self._last = -float("inf")
        self._shown = -1

    def update(self, n: int = 1) -> None:
        """Count ``n`` more items done; the line is redrawn at most every ``min_interval`` seconds
        and at the end.

        Args:
            n: Items done since the last update.
        """
        self.done += n
        if not self.enabled:
            return
        now = time.monotonic()
        if now - self._last >= self.min_interval or self.done >= self.total:
            self._last = now
            self._write(now)

    def close(self) -> None:
        """Draw the final state and end the line."""
        if self.enabled:
            if self._shown != self.done:
                self._write(time.monotonic())
            self.stream.write("\n")
            self.stream.flush()

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _write(self, now: float) -> None:
        self._shown = self.done
        pct = 100.0 * self.done / self.total if self.total else 100.0
        msg = f"\r{self.label}: {self.done}/{self.total} ({pct:.0f}%) {now - self._start:.1f}s"
        self.stream.write(msg)
        self.stream.flush()
