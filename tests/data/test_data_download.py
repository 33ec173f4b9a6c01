"""Downloads against a local HTTP server on 127.0.0.1: good, corrupt, 404, interrupted."""

from __future__ import annotations

import hashlib
import http.server
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from bbh.data import (
    REMOTE_FILES,
    ChecksumError,
    DownloadError,
    MissingDataError,
    RemoteFile,
    download,
    fetch,
)

PAYLOAD = bytes(range(256)) * 400  # 100 kB
MD5 = hashlib.md5(PAYLOAD).hexdigest()
SHA256 = hashlib.sha256(PAYLOAD).hexdigest()


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.path == "/good.bin":
            self._send(PAYLOAD)
        elif self.path == "/corrupt.bin":
            self._send(PAYLOAD[:-1] + b"X")
        elif self.path == "/interrupted.bin":
            self.send_response(200)
            self.send_header("Content-Length", str(len(PAYLOAD)))
            self.end_headers()
            self.wfile.write(PAYLOAD[: len(PAYLOAD) // 3])
            self.wfile.flush()
            self.close_connection = True
        else:
            self.send_error(404, "Not Found")

    def _send(self, body: bytes) -> None:
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_good_file(server: str, tmp_path: Path) -> None:
    dest = download(f"{server}/good.bin", tmp_path / "dl" / "good.bin", md5=MD5, sha256=SHA256)
    assert dest.read_bytes() == PAYLOAD
    assert _leftovers(tmp_path / "dl") == ["good.bin"]


def test_checksum_mismatch_leaves_nothing(server: str, tmp_path: Path) -> None:
    with pytest.raises(ChecksumError, match=r"corrupt\.bin.*md5 checksum mismatch"):
        download(f"{server}/corrupt.bin", tmp_path / "corrupt.bin", md5=MD5)
    with pytest.raises(ChecksumError, match="sha256"):
        download(f"{server}/corrupt.bin", tmp_path / "corrupt.bin", sha256=SHA256)
    assert _leftovers(tmp_path) == []


def test_404(server: str, tmp_path: Path) -> None:
    with pytest.raises(DownloadError, match=r"missing\.bin.*404"):
        download(f"{server}/missing.bin", tmp_path / "missing.bin", md5=MD5)
    assert _leftovers(tmp_path) == []


def test_interrupted_transfer(server: str, tmp_path: Path) -> None:
    with pytest.raises(DownloadError, match=r"interrupted\.bin"):
        download(f"{server}/interrupted.bin", tmp_path / "interrupted.bin")
    assert _leftovers(tmp_path) == []


def test_existing_file_kept_when_download_fails(server: str, tmp_path: Path) -> None:
    dest = tmp_path / "keep.bin"
    dest.write_bytes(b"old")
    with pytest.raises(ChecksumError):
        download(f"{server}/corrupt.bin", dest, md5=MD5)
    assert dest.read_bytes() == b"old"
    assert _leftovers(tmp_path) == ["keep.bin"]


def test_unverified_download_warns(
    server: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    download(f"{server}/good.bin", tmp_path / "g.bin")
    assert "not verified" in caplog.text


def test_fetch_tries_mirrors_in_order(server: str, tmp_path: Path) -> None:
    remote = RemoteFile("sub", "f.bin", (f"{server}/missing.bin", f"{server}/good.bin"), MD5)
    path = fetch(remote, tmp_path, offline=False)
    assert path == tmp_path / "sub" / "f.bin" and path.read_bytes() == PAYLOAD


def test_fetch_all_mirrors_fail(server: str, tmp_path: Path) -> None:
    remote = RemoteFile("sub", "f.bin", (f"{server}/missing.bin", f"{server}/interrupted.bin"))
    with pytest.raises(DownloadError, match=r"could not download f\.bin"):
        fetch(remote, tmp_path, offline=False)
    only_corrupt = RemoteFile("sub", "f.bin", (f"{server}/corrupt.bin",), MD5)
    with pytest.raises(ChecksumError):
        fetch(only_corrupt, tmp_path, offline=False)
    assert _leftovers(tmp_path / "sub") == []


def test_fetch_uses_existing_file_without_network(tmp_path: Path) -> None:
    remote = RemoteFile("sub", "f.bin", ("http://127.0.0.1:9/never",), MD5)
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "f.bin").write_bytes(b"local copy")
    assert fetch(remote, tmp_path, offline=False).read_bytes() == b"local copy"


def test_offline_missing_file_says_what_and_where(tmp_path: Path) -> None:
    remote = REMOTE_FILES["mnist/train-images-idx3-ubyte.gz"]
    with pytest.raises(MissingDataError) as info:
        fetch(remote, tmp_path)  # BBH_OFFLINE=1 in these tests
    message = str(info.value)
    assert str(tmp_path / "mnist" / "train-images-idx3-ubyte.gz") in message
    assert "https://" in message and "offline" in message


def test_registry_has_published_checksums() -> None:
    for key, remote in REMOTE_FILES.items():
        assert remote.urls, key
        assert remote.md5 is not None and len(remote.md5) == 32, key
    cifar = REMOTE_FILES["cifar-10-python.tar.gz"]
    assert cifar.md5 == "c58f30108f718f92721af3b95e74349a"
