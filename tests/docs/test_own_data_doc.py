"""docs/own_data.md: every config in it loads, and its Python-function example trains."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from bbh.cli import main
from bbh.experiments.config import load_config

DOC = Path(__file__).resolve().parents[2] / "docs" / "own_data.md"


def _blocks(kind: str) -> list[str]:
    return re.findall(rf"```{kind}\n(.*?)```", DOC.read_text(), re.S)


@pytest.mark.parametrize("index", range(len(_blocks("toml"))))
def test_each_config_loads(tmp_path: Path, index: int) -> None:
    path = tmp_path / "own.toml"
    path.write_text(_blocks("toml")[index])
    cfg = load_config(path)
    assert cfg.data.name in ("files", "callable")  # type: ignore[union-attr]


def test_the_function_example_trains(tmp_path: Path) -> None:
    pytest.importorskip("sklearn")
    (python,) = _blocks("python")
    (tmp_path / "my_data.py").write_text(python)
    callable_config = next(b for b in _blocks("toml") if 'name = "callable"' in b)
    (tmp_path / "bc.toml").write_text(callable_config)
    out = tmp_path / "run"
    argv = ["train", str(tmp_path / "bc.toml"), "--out", str(out), "--quiet"]
    assert main([*argv, "--set", 'method.name="map"', "--set", "train.steps=3"]) == 0
    meta = json.loads((out / "config.json").read_text())
    assert meta["num_train"] == 398 - 80  # 70% of 569 for training, 80 of those for validation
    assert meta["config"]["net"]["options"] == {
        "hidden": [32],
        "in_features": 30,
        "out_features": 2,
    }
