"""Where data lives: the data root (``--data-dir`` > ``$BBH_DATA`` > user cache) and the cache.

The data root holds the source files (``<root>/mnist/*.gz``, ``<root>/notmnist/*.gz``,
``<root>/cifar10-jpeg/cifar10-jpeg.tar.gz`` or the canonical ``<root>/cifar-10-batches-py/``) and
may be read-only. Decoded arrays go to a separate, writable cache folder
(argument > ``$BBH_CACHE`` > ``<user cache>/decoded``).
"""

from __future__ import annotations

import os
from pathlib import Path

DATA_ENV = "BBH_DATA"
CACHE_ENV = "BBH_CACHE"
OFFLINE_ENV = "BBH_OFFLINE"


def user_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/bbh``, else ``~/.cache/bbh``.

    Returns:
        The folder (not created).
    """
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base).expanduser() / "bbh"


def resolve_data_root(data_dir: str | os.PathLike[str] | None = None) -> Path:
    """The data root: ``data_dir`` if given, else ``$BBH_DATA``, else ``<user cache>/data``.

    Args:
        data_dir: The folder asked for (``--data-dir``); None or ``""``: not given.

    Returns:
        The data root, ``~`` expanded (not created).
    """
    if data_dir is not None and str(data_dir) != "":
        return Path(data_dir).expanduser()
    env = os.environ.get(DATA_ENV)
    if env:
        return Path(env).expanduser()
    return user_cache_dir() / "data"


def resolve_cache_dir(cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """Decoded-array folder: ``cache_dir``, else ``$BBH_CACHE``, else ``<user cache>/decoded``.

    Args:
        cache_dir: The folder asked for; None or ``""``: not given.

    Returns:
        The cache folder, ``~`` expanded (not created).
    """
    if cache_dir is not None and str(cache_dir) != "":
        return Path(cache_dir).expanduser()
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env).expanduser()
    return user_cache_dir() / "decoded"


def resolve_offline(offline: bool | None = None) -> bool:
    """``offline`` if given, else true when ``$BBH_OFFLINE`` is set to 1/true/yes/on.

    Args:
        offline: The caller's choice; None: read ``$BBH_OFFLINE``.

    Returns:
        Whether downloads are off.
    """
    if offline is not None:
        return offline
    return os.environ.get(OFFLINE_ENV, "").strip().lower() in {"1", "true", "yes", "on"}
