"""Every file ``bbh`` writes goes through here: atomic files, and run folders of one run each.

- ``atomic_write(path, write)``: ``write(tmp)`` fills a temporary file beside ``path``, which is
  then renamed over ``path`` (``os.replace``). After an error, a crash or ``kill -9`` there is the
  old file, the complete new one, or nothing: never a half-written file under the final name.
  ``atomic_open(path)`` is the same as a context manager yielding a binary handle (downloads,
  caches); ``write_json``, ``write_text`` and ``savefig`` are the usual writers on top.
- ``run_folder(out)``: a run writes into a hidden staging folder beside ``out``; at the end it adds
  a ``done`` marker listing its files and swaps the staging folder into place (an atomic exchange
  on Linux). ``out`` is therefore always all of one finished run. ``fresh=True`` writes straight
  into a new, empty ``out`` instead (for runs that checkpoint as they go); there the ``done``
  marker tells a finished run from an interrupted one. ``check_output_folder`` makes the checks
  ``run_folder`` makes, so a command can call it before any work starts.

Files get the mode an ordinary ``open()`` gives them: ``0o666`` less the user's umask (the
temporary file is created with that mode; ``tempfile.mkstemp`` would make it ``0o600``).
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import json
import os
import secrets
import shutil
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

__all__ = [
    "DONE_MARKER",
    "OutputFolderError",
    "RunFolder",
    "atomic_open",
    "atomic_write",
    "check_output_folder",
    "read_done_marker",
    "run_folder",
    "savefig",
    "write_json",
    "write_text",
]

PathLike = str | os.PathLike[str]

#: The file a finished run folder holds: JSON ``{"files": {name: bytes}, "format": 1}``.
DONE_MARKER = "done"


class OutputFolderError(OSError):
    """An output folder that cannot be used: not a folder, not writable, or someone else's files."""


# ------------------------------------------------------------------------------- atomic files


def atomic_write(path: PathLike, write: Callable[[Path], object]) -> Path:
    """Call ``write(tmp_path)`` on a temporary file beside ``path``, then rename it into place.

    The temporary file exists (empty) when ``write`` is called, with the umask's mode; ``write``
    may overwrite it by name (``savefig``, ``torch.save``, ``np.savez``). Its content is flushed
    to disk before the rename. On any exception the temporary file is removed and ``path`` keeps
    its previous content.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = _create_temp(path)
    os.close(fd)
    try:
        write(tmp)
        _fsync_file(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


@contextlib.contextmanager
def atomic_open(path: PathLike) -> Iterator[BinaryIO]:
    """A binary handle on a temporary file beside ``path``, moved to ``path`` on success.

    On any exception the temporary file is removed and ``path`` is left untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = _create_temp(path)
    try:
        with os.fdopen(fd, "wb") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_text(path: PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8), atomically."""
    data = text.encode("utf-8")
    return atomic_write(path, lambda p: p.write_bytes(data))


def write_json(path: PathLike, data: Any) -> Path:
    """Write ``data`` as indented JSON, atomically; NaN and infinity are errors (not JSON)."""
    text = json.dumps(data, indent=2, sort_keys=False, allow_nan=False) + "\n"
    return write_text(path, text)


def savefig(fig: Any, path: PathLike, **options: Any) -> Path:
    """``fig.savefig`` (matplotlib) to ``path``, atomically; the format follows the suffix."""
    fmt = options.pop("format", None) or Path(path).suffix.lstrip(".").lower() or "png"
    return atomic_write(path, lambda p: fig.savefig(p, format=fmt, **options))


def _create_temp(path: Path) -> tuple[int, Path]:
    """Create ``.<name>.<random>.tmp`` beside ``path`` exclusively, mode ``0o666`` less umask."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    for _ in range(100):
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
        try:
            return os.open(tmp, flags, 0o666), tmp
        except FileExistsError:
            continue
    raise FileExistsError(f"could not create a temporary file beside {path}")  # pragma: no cover


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover - some file systems refuse fsync on read-only handles
        pass
    finally:
        os.close(fd)


# -------------------------------------------------------------------------------- run folders


class RunFolder:
    """A run's output folder while the run writes it; use it through ``run_folder``.

    ``path(name)`` is where the run writes file ``name`` now (inside the staging folder, or in
    ``out`` itself for a fresh folder); ``write_json``, ``write_text``, ``savefig`` and
    ``write`` write there atomically. ``final`` is where the files will be after ``commit``.
    """

    def __init__(self, final: Path, workdir: Path, *, staged: bool):
        self.final = final
        self.workdir = workdir
        self.staged = staged
        self.committed = False

    def path(self, name: str) -> Path:
        """Where the run writes ``name`` (a relative path inside the run folder)."""
        rel = Path(name)
        if rel.is_absolute() or ".." in rel.parts or not rel.parts or rel.parts == ("",):
            raise ValueError(f"run files need a relative name inside the folder, got {name!r}")
        if rel.parts == (DONE_MARKER,):
            raise ValueError(f"{DONE_MARKER!r} is the run folder's completion marker")
        target = self.workdir / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        return target

    def write(self, name: str, write: Callable[[Path], object]) -> Path:
        """Write the run file ``name`` atomically with ``write(path)``.

        Args:
            name: The file's path relative to the run folder.
            write: Writes the file at the path it is given.

        Returns:
            The file's path.
        """
        return atomic_write(self.path(name), write)

    def write_json(self, name: str, data: Any) -> Path:
        """Write ``data`` as the JSON run file ``name``, atomically.

        Args:
            name: The file's path relative to the run folder.
            data: JSON-serialisable data.

        Returns:
            The file's path.
        """
        return write_json(self.path(name), data)

    def write_text(self, name: str, text: str) -> Path:
        """Write ``text`` as the run file ``name``, atomically.

        Args:
            name: The file's path relative to the run folder.
            text: The file's text.

        Returns:
            The file's path.
        """
        return write_text(self.path(name), text)

    def savefig(self, name: str, fig: Any, **options: Any) -> Path:
        """Save the matplotlib figure ``fig`` as the run file ``name``, atomically.

        Args:
            name: The file's path relative to the run folder.
            fig: A matplotlib figure.
            **options: Passed to ``savefig``.

        Returns:
            The file's path.
        """
        return savefig(fig, self.path(name), **options)

    def files(self) -> dict[str, int]:
        """``{relative name: bytes}`` of the run's files so far (hidden temporaries excluded)."""
        out: dict[str, int] = {}
        for f in sorted(self.workdir.rglob("*")):
            rel = f.relative_to(self.workdir)
            if f.is_file() and not any(part.startswith(".") for part in rel.parts):
                out[rel.as_posix()] = f.stat().st_size
        out.pop(DONE_MARKER, None)
        return out

    def commit(self) -> Path:
        """Write the ``done`` marker and put the folder in place; returns ``final``."""
        write_json(self.workdir / DONE_MARKER, {"format": 1, "files": self.files()})
        if self.staged:
            _swap_into_place(self.workdir, self.final)
        self.committed = True
        return self.final

    def abort(self) -> None:
        """Remove what a staged run wrote; a fresh folder is left as is (it has no ``done``)."""
        if self.staged:
            shutil.rmtree(self.workdir, ignore_errors=True)


@contextlib.contextmanager
def run_folder(out: PathLike, *, fresh: bool = False) -> Iterator[RunFolder]:
    """Write one run into ``out``; on success the folder holds exactly this run's files.

    The folder is checked (``check_output_folder``) and the staging folder created on entry,
    before the run does any work, so an unusable ``out`` fails in seconds, not after training.
    Default (staged): ``out`` may be missing, empty, or a finished earlier run (it has a ``done``
    marker), which is replaced as a whole at the end; on an error the staging folder is removed
    and ``out`` keeps the earlier run. ``fresh=True``: ``out`` must be missing or empty and the
    run writes straight into it; a folder without ``done`` is an interrupted run.
    """
    final = check_output_folder(out, fresh=fresh)
    final.parent.mkdir(parents=True, exist_ok=True)
    if fresh:
        final.mkdir(exist_ok=True)
        run = RunFolder(final, final, staged=False)
    else:
        _clean_stale_staging(final)
        run = RunFolder(final, _make_staging(final), staged=True)
    try:
        yield run
    except BaseException:
        run.abort()
        raise
    if not run.committed:
        run.commit()


def check_output_folder(out: PathLike, *, fresh: bool = False, name: str = "output folder") -> Path:
    """Check that a run may write ``out``; returns it as an absolute path.

    Raises ``OutputFolderError`` naming ``out`` when it is empty text, a file, not writable, or a
    non-empty folder that is not a finished run (``fresh``: any non-empty folder), or when its
    nearest existing parent is not a writable folder.
    """
    if isinstance(out, str) and not out.strip():
        raise OutputFolderError(f"{name} is empty; give a folder path")
    final = Path(out).expanduser().absolute()
    if final.is_symlink():  # write where the link points; the link itself stays
        final = final.resolve()
    if final.exists():
        if not final.is_dir():
            raise OutputFolderError(f"{name} {out}: exists and is not a folder")
        if not os.access(final, os.W_OK | os.X_OK):
            raise OutputFolderError(f"{name} {out}: the folder is not writable")
        if any(final.iterdir()) and (fresh or not (final / DONE_MARKER).is_file()):
            what = "is not empty" if fresh else "holds files that are not a finished bbh run"
            raise OutputFolderError(
                f"{name} {out}: {what} (no {DONE_MARKER!r} marker); not writing into it. "
                "Choose a new folder, or remove this one"
            )
        if fresh:
            return final
    parent = final.parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise OutputFolderError(f"{name} {out}: {parent} is a file, not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise OutputFolderError(f"{name} {out}: cannot create it, {parent} is not writable")
    return final


def read_done_marker(folder: PathLike) -> dict[str, int] | None:
    """The files a finished run folder lists (``{name: bytes}``), or ``None`` without a marker."""
    marker = Path(folder) / DONE_MARKER
    if not marker.is_file():
        return None
    files = json.loads(marker.read_text())["files"]
    return {str(k): int(v) for k, v in files.items()}


def _staging_prefix(final: Path) -> str:
    return f".{final.name}.bbh-run-"


def _make_staging(final: Path) -> Path:
    try:
        for _ in range(100):
            name = f"{_staging_prefix(final)}{os.getpid()}-{secrets.token_hex(3)}"
            staging = final.with_name(name)
            try:
                staging.mkdir(0o777)  # the umask applies, as for any new folder
                return staging
            except FileExistsError:
                continue
    except OSError as err:
        raise OutputFolderError(f"output folder {final}: cannot write beside it ({err})") from err
    raise FileExistsError(f"could not create a staging folder beside {final}")  # pragma: no cover


def _clean_stale_staging(final: Path) -> None:
    """Tidy what killed runs left beside ``final``: finish an interrupted swap, drop the rest."""
    prefix = _staging_prefix(final)
    stale = []
    for entry in final.parent.iterdir():
        if not entry.name.startswith(prefix):
            continue
        pid = entry.name[len(prefix) :].split("-", 1)[0]
        if entry.is_dir() and pid.isdigit() and not _process_alive(int(pid)):
            stale.append(entry)
    for entry in stale:
        newer = "-old" not in entry.name[len(prefix) :]
        if newer and not final.exists() and (entry / DONE_MARKER).is_file():
            os.rename(entry, final)  # the swap of a finished run was cut between its renames
        else:
            shutil.rmtree(entry, ignore_errors=True)


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _swap_into_place(staging: Path, final: Path) -> None:
    """Make ``staging`` appear as ``final``; an earlier run at ``final`` is removed afterwards."""
    if not final.exists():
        os.rename(staging, final)
    elif _exchange(staging, final):
        shutil.rmtree(staging)  # now holds the earlier run
    else:  # no atomic exchange: two renames (a kill between them is repaired by the next run)
        old = final.with_name(f"{_staging_prefix(final)}{os.getpid()}-old{secrets.token_hex(3)}")
        os.rename(final, old)
        os.rename(staging, final)
        shutil.rmtree(old)
    _fsync_dir(final.parent)


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths atomically (Linux ``renameat2(RENAME_EXCHANGE)``); False if unsupported."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (AttributeError, OSError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    result = renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange)
    if result == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP):
        return False
    raise OSError(code, f"exchanging {a} and {b}: {os.strerror(code)}")


def _fsync_dir(folder: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
