"""The decoded-array cache, and how the data root and cache folder are found."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from bbh.data import (
    cached_arrays,
    resolve_cache_dir,
    resolve_data_root,
    resolve_offline,
)


def test_cached_arrays_builds_once(tmp_path: Path) -> None:
    source = tmp_path / "source.bin"
    source.write_bytes(b"v1")
    calls = []

    def build() -> dict[str, np.ndarray]:
        calls.append(1)
        return {"x": np.arange(5), "y": np.ones((2, 2), np.uint8)}

    first = cached_arrays("t", [source], build, cache_dir=tmp_path / "c")
    second = cached_arrays("t", [source], build, cache_dir=tmp_path / "c")
    assert len(calls) == 1
    np.testing.assert_array_equal(first["x"], second["x"])
    assert second["y"].dtype == np.uint8
    # A changed source file is a new key.
    source.write_bytes(b"version 2")
    cached_arrays("t", [source], build, cache_dir=tmp_path / "c")
    assert len(calls) == 2
    # use_cache=False always builds and writes nothing new.
    n_files = len(list((tmp_path / "c").iterdir()))
    cached_arrays("t", [source], build, cache_dir=tmp_path / "c", use_cache=False)
    assert len(calls) == 3 and len(list((tmp_path / "c").iterdir())) == n_files


def test_cache_uses_env_folder(tmp_path: Path) -> None:
    source = tmp_path / "s"
    source.write_bytes(b"x")
    cached_arrays("envtag", [source], lambda: {"a": np.zeros(1)})
    assert any(p.name.startswith("envtag-") for p in (tmp_path / "bbh-cache").iterdir())


def test_corrupt_cache_entry_is_rebuilt(tmp_path: Path) -> None:
    source = tmp_path / "s"
    source.write_bytes(b"x")
    cached_arrays("t", [source], lambda: {"a": np.arange(3)}, cache_dir=tmp_path / "c")
    (entry,) = (tmp_path / "c").iterdir()
    entry.write_bytes(entry.read_bytes()[:50])
    out = cached_arrays("t", [source], lambda: {"a": np.arange(4)}, cache_dir=tmp_path / "c")
    np.testing.assert_array_equal(out["a"], np.arange(4))


def test_failed_build_leaves_no_cache(tmp_path: Path) -> None:
    source = tmp_path / "s"
    source.write_bytes(b"x")

    def build() -> dict[str, np.ndarray]:
        raise ValueError("decode failed")

    with pytest.raises(ValueError):
        cached_arrays("t", [source], build, cache_dir=tmp_path / "c")
    assert not (tmp_path / "c").exists() or not list((tmp_path / "c").iterdir())


def test_unwritable_cache_only_warns(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    source = tmp_path / "s"
    source.write_bytes(b"x")
    blocker = tmp_path / "a-file"
    blocker.write_bytes(b"")  # a cache folder below a file cannot be created, even by root
    out = cached_arrays("t", [source], lambda: {"a": np.arange(2)}, cache_dir=blocker / "c")
    np.testing.assert_array_equal(out["a"], np.arange(2))
    assert "could not write" in caplog.text


def test_data_root_precedence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert resolve_data_root(tmp_path / "explicit") == tmp_path / "explicit"
    assert resolve_data_root(None) == tmp_path / "bbh-data"  # $BBH_DATA from the fixture
    monkeypatch.delenv("BBH_DATA")
    assert resolve_data_root(None) == tmp_path / "xdg-cache" / "bbh" / "data"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert resolve_data_root() == tmp_path / "home" / ".cache" / "bbh" / "data"


def test_cache_dir_and_offline_resolution(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert resolve_cache_dir(tmp_path / "c") == tmp_path / "c"
    assert resolve_cache_dir() == tmp_path / "bbh-cache"
    monkeypatch.delenv("BBH_CACHE")
    assert resolve_cache_dir() == tmp_path / "xdg-cache" / "bbh" / "decoded"
    assert resolve_offline() is True
    assert resolve_offline(False) is False
    monkeypatch.setenv("BBH_OFFLINE", "0")
    assert resolve_offline() is False
