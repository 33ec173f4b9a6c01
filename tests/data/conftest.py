"""Fixtures of the data tests: isolated data/cache folders, no network, the real data root."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _isolated_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test gets its own cache and default data root, and offline mode by default."""
    monkeypatch.setenv("BBH_CACHE", str(tmp_path / "bbh-cache"))
    monkeypatch.setenv("BBH_DATA", str(tmp_path / "bbh-data"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))
    monkeypatch.setenv("BBH_OFFLINE", "1")


def real_data_root() -> Path | None:
    """``$BBH_TEST_DATA``, else ``<repo>/../shared/data`` when it exists."""
    env = os.environ.get("BBH_TEST_DATA")
    path = Path(env) if env else REPO.parent / "shared" / "data"
    return path if path.is_dir() else None


@pytest.fixture
def real_root() -> Path:
    root = real_data_root()
    if root is None:
        pytest.skip("real data not found: set BBH_TEST_DATA or provide ../shared/data")
    return root
