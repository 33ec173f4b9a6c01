"""The cache of decoded arrays.

Cache files are written through ``bbh.io.atomic_open`` (a temporary file moved into place), so a
reader never sees a partial file: after a crash or an error there is the old file, the complete
new one, or nothing.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import zipfile
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from bbh.data.paths import resolve_cache_dir
from bbh.io import atomic_open

log = logging.getLogger(__name__)

#: Bump when a reader changes what it returns, so that old cache entries are ignored.
CACHE_VERSION = 1


def save_arrays(path: str | os.PathLike[str], arrays: dict[str, np.ndarray]) -> None:
    """Write ``arrays`` atomically as an uncompressed ``.npz`` (fast to read back)."""
    with atomic_open(path) as handle:
        np.savez(handle, **arrays)  # type: ignore[arg-type]


def load_arrays(path: str | os.PathLike[str]) -> dict[str, np.ndarray]:
    """Read every array of an ``.npz`` file (no pickles allowed)."""
    with np.load(path, allow_pickle=False) as npz:
        return {key: npz[key] for key in npz.files}


def source_key(tag: str, files: Sequence[str | os.PathLike[str]]) -> str:
    """A cache key from ``tag`` and each source file's resolved path, size and mtime."""
    entries = []
    for f in files:
        p = Path(f).resolve()
        st = p.stat()
        entries.append([str(p), st.st_size, st.st_mtime_ns])
    blob = json.dumps({"tag": tag, "version": CACHE_VERSION, "files": entries}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


def cached_arrays(
    tag: str,
    files: Sequence[str | os.PathLike[str]],
    build: Callable[[], dict[str, np.ndarray]],
    *,
    cache_dir: str | os.PathLike[str] | None = None,
    use_cache: bool = True,
) -> dict[str, np.ndarray]:
    """Return ``build()``, cached in ``<cache_dir>/<tag>-<key>.npz`` keyed by the source files.

    A changed source file (size or mtime) gives a new key. An unreadable cache entry is rebuilt;
    a cache folder that cannot be written only costs speed (a warning is logged).

    Args:
        tag: Names the entry (``"cifar10-python"``); part of the file name and the key.
        files: The source files whose paths, sizes and mtimes make the key.
        build: Makes the arrays from the source files (called on a miss).
        cache_dir: The cache folder; None: ``$BBH_CACHE``, else the user cache
            (``resolve_cache_dir``).
        use_cache: False calls ``build()`` and neither reads nor writes the cache.

    Returns:
        The arrays by name, read from the cache or just built.
    """
    if not use_cache:
        return build()
    folder = resolve_cache_dir(cache_dir)
    path = folder / f"{tag}-{source_key(tag, files)}.npz"
    if path.is_file():
        try:
            return load_arrays(path)
        except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
            log.warning("ignoring unreadable cache file %s (%s); rebuilding it", path, exc)
    arrays = build()
    try:
        save_arrays(path, arrays)
    except OSError as exc:
        log.warning("could not write the cache file %s (%s); continuing without it", path, exc)
    return arrays
