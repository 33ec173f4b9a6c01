"""The training progress bar: ``tqdm`` (the ``experiments`` extra), or nothing when disabled.

Without tqdm installed the commands still run; they print a note once and show no bar.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


class _NoBar:
    def update(self, n: int = 1) -> None:
        pass

    def set_postfix(self, *args: Any, **kwargs: Any) -> None:
        pass

    def write(self, text: str) -> None:
        print(text, file=sys.stderr)


@contextmanager
def progress_bar(total: int, initial: int, desc: str, enabled: bool = True) -> Iterator[Any]:
    """A bar over ``total`` steps from ``initial`` (stderr) with ``update`` and ``set_postfix``."""
    if not enabled:
        yield _NoBar()
        return
    try:
        from tqdm import tqdm
    except ImportError:
        print(
            "bbh: no progress bar (pip install 'bayes-by-hypernet[experiments]' adds tqdm)",
            file=sys.stderr,
        )
        yield _NoBar()
        return
    bar = tqdm(
        total=total,
        initial=initial,
        desc=desc,
        unit="step",
        dynamic_ncols=True,
        mininterval=0.5,
        file=sys.stderr,
    )
    try:
        yield bar
    finally:
        bar.close()
