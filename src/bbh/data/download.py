"""Verified downloads: a registry of the remote files, their canonical locations and checksums.

A download streams into a temporary file beside its destination, checks the byte count against
``Content-Length`` and the published checksum, and only then moves the file into place
(``os.replace``). A failed, interrupted or corrupt transfer leaves nothing behind.

Offline mode (``offline=True`` or ``$BBH_OFFLINE=1``) never touches the network; a missing file
raises ``bbh.data.errors.MissingDataError`` saying which file, where to put it, and where to
get it.
"""

from __future__ import annotations

import hashlib
import http.client
import logging
import os
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from bbh.data.errors import ChecksumError, DataError, DownloadError, MissingDataError
from bbh.data.paths import resolve_offline
from bbh.io import atomic_open

log = logging.getLogger(__name__)

_CHUNK = 1 << 20


@dataclass(frozen=True)
class RemoteFile:
    """A file of a data set: where it goes under the data root and where to fetch it.

    ``md5``/``sha256`` are the checksums of the file as served (e.g. of the ``.gz``); ``None``
    where no published checksum could be verified (the download then logs a warning).

    Args:
        subdir: The folder under the data root (``""``: the root itself).
        name: The file's name.
        urls: Where to download it from, tried in turn.
        md5: The published md5 of the file as served, or None.
        sha256: The published sha256 of the file as served, or None.
    """

    subdir: str
    name: str
    urls: tuple[str, ...]
    md5: str | None = None
    sha256: str | None = None

    def path(self, root: str | os.PathLike[str]) -> Path:
        """Where this file lies under the data root.

        Args:
            root: The data root.

        Returns:
            ``root / subdir / name``.
        """
        return Path(root) / self.subdir / self.name


_MNIST_MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "http://yann.lecun.com/exdb/mnist/",
)
# Published md5 of the canonical .gz files (as used by torchvision and many others).
_MNIST_MD5 = {
    "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
    "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
    "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
    "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
}
_NOTMNIST_BASE = "https://github.com/davidflanagan/notMNIST-to-MNIST/raw/master/"
# md5 of the notMNIST-to-MNIST test files as published by third-party loaders (e.g. the
# uncertainty-eval package); it matches the copy in the project's shared data folder, whose
# sha256 is recorded as well. The repository itself publishes no checksums.
_NOTMNIST_SUMS = {
    "t10k-images-idx3-ubyte.gz": (
        "2c87c839a4ef9b238846600eec8c35b7",
        "70ae9e06201f2827e5b0a3781a3169d735dd2efc69996b9eeaee7f10ed4044d7",
    ),
    "t10k-labels-idx1-ubyte.gz": (
        "7ea9118cbafd0f6e3ee2ad771d782a01",
        "1fa03836e01c862542f8eb83463bb951bebec6fcb3efa28dad748c6b38a9021b",
    ),
}

#: Every remote file, keyed by ``"<subdir>/<name>"``.
REMOTE_FILES: dict[str, RemoteFile] = {
    **{
        f"mnist/{name}": RemoteFile("mnist", name, tuple(m + name for m in _MNIST_MIRRORS), md5)
        for name, md5 in _MNIST_MD5.items()
    },
    **{
        f"notmnist/{name}": RemoteFile("notmnist", name, (_NOTMNIST_BASE + name,), md5, sha)
        for name, (md5, sha) in _NOTMNIST_SUMS.items()
    },
    # The canonical CIFAR-10 python version; md5 published on the CIFAR page.
    "cifar-10-python.tar.gz": RemoteFile(
        "",
        "cifar-10-python.tar.gz",
        ("https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",),
        "c58f30108f718f92721af3b95e74349a",
    ),
}


def fetch(
    remote: RemoteFile,
    root: str | os.PathLike[str],
    *,
    offline: bool | None = None,
    timeout: float = 60.0,
) -> Path:
    """Return the path of ``remote`` under ``root``, downloading it first if it is missing.

    Files already on disk are used as they are. Each URL is tried in turn.

    Args:
        remote: The file (a value of ``REMOTE_FILES``).
        root: The data root.
        offline: Never download; None: ``$BBH_OFFLINE`` (``resolve_offline``).
        timeout: Seconds to wait on each connection.

    Returns:
        The path ``root / remote.subdir / remote.name``, which then exists.

    Raises:
        MissingDataError: The file is missing and offline mode is on.
        DownloadError: No URL could be downloaded.
        ChecksumError: A download did not match its checksum (the one URL's, or every URL's).
    """
    dest = remote.path(root)
    if dest.is_file():
        return dest
    if resolve_offline(offline):
        raise MissingDataError(
            f"{dest} is missing and offline mode is on. Download it from {remote.urls[0]} and "
            f"put it at {dest}, or point --data-dir / $BBH_DATA at a folder that has "
            f"{remote.subdir + '/' if remote.subdir else ''}{remote.name}."
        )
    errors: list[DataError] = []
    for url in remote.urls:
        try:
            return download(url, dest, md5=remote.md5, sha256=remote.sha256, timeout=timeout)
        except DataError as exc:
            log.warning("download of %s failed: %s", url, exc)
            errors.append(exc)
    if len(errors) == 1 or all(isinstance(e, ChecksumError) for e in errors):
        raise errors[-1]
    raise DownloadError(
        f"could not download {dest.name} to {dest}:\n" + "\n".join(f"  {e}" for e in errors)
    )


def download(
    url: str,
    dest: str | os.PathLike[str],
    *,
    md5: str | None = None,
    sha256: str | None = None,
    timeout: float = 60.0,
) -> Path:
    """Download ``url`` to ``dest`` atomically, verifying its length and checksums.

    Args:
        url: Where to download from.
        dest: The file to write; its folder is created.
        md5: The expected md5, or None (not checked).
        sha256: The expected sha256, or None (not checked; with no checksum at all a warning
            is logged).
        timeout: Seconds to wait on the connection.

    Returns:
        ``dest`` as a ``Path``.

    Raises:
        DownloadError: An HTTP or network error, an interrupted transfer, or a folder that
            cannot be created; ``dest`` is not created.
        ChecksumError: The data does not match ``md5`` or ``sha256``; ``dest`` is not created.
    """
    dest = Path(dest)
    if md5 is None and sha256 is None:
        log.warning("no published checksum for %s: the download is not verified", url)
    digests = {"md5": hashlib.md5(usedforsecurity=False), "sha256": hashlib.sha256()}
    log.info("downloading %s to %s", url, dest)
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DownloadError(f"cannot create {dest.parent} for {dest.name} ({exc})") from exc
    try:
        with (
            urllib.request.urlopen(url, timeout=timeout) as response,
            atomic_open(dest) as out,
        ):
            expected_len = response.headers.get("Content-Length")
            received = 0
            while chunk := response.read(_CHUNK):
                received += len(chunk)
                for d in digests.values():
                    d.update(chunk)
                out.write(chunk)
            if expected_len is not None and received != int(expected_len):
                raise DownloadError(
                    f"{url}: transfer interrupted after {received} of {expected_len} bytes"
                )
            _check(url, "md5", md5, digests["md5"].hexdigest())
            _check(url, "sha256", sha256, digests["sha256"].hexdigest())
    except DataError:
        raise
    except urllib.error.HTTPError as exc:
        raise DownloadError(f"{url}: HTTP {exc.code} {exc.reason}") from exc
    except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as exc:
        raise DownloadError(f"{url}: {exc}") from exc
    return dest


def file_digest(path: str | os.PathLike[str], algorithm: str = "sha256") -> str:
    """Hex digest of a file (``"md5"`` or ``"sha256"``)."""
    digest = hashlib.new(algorithm, usedforsecurity=False)
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def remote_files(prefix: str) -> Sequence[RemoteFile]:
    """The registered files whose key starts with ``prefix`` (e.g. ``"mnist/"``)."""
    return [f for key, f in REMOTE_FILES.items() if key.startswith(prefix)]


def _check(url: str, kind: str, expected: str | None, actual: str) -> None:
    if expected is not None and expected.lower() != actual:
        raise ChecksumError(f"{url}: {kind} checksum mismatch (expected {expected}, got {actual})")
