"""Atomic file writes and the cache of decoded arrays.

Every file this package writes (downloads, cached arrays) is written to a temporary file in the
destination folder and moved into place with ``os.replace``, so a reader never sees a partial
file: after a crash or an error there is either the old file, the complete new one, or nothing.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import tempfile
import zipfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import BinaryIO

import numpy as np

from bbh.data.paths import resolve_cache_dir

log = logging.getLogger(__name__)

#: Bump when a reader changes what it returns, so that old cache entries are ignored.
CACHE_VERSION = 1


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike[str]) -> Iterator[BinaryIO]:
    """Open a temporary file beside ``path`` for binary writing; move it to ``path`` on success.

    On any exception the temporary file is removed and ``path`` is left untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def save_arrays(path: str | os.PathLike[str], arrays: dict[str, np.ndarray]) -> None:
    """Write ``arrays`` atomically as an uncompressed ``.npz`` (fast to read back)."""
    with atomic_write(path) as handle:
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


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
