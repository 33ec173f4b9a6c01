"""The ``[data]`` keys of the user's own data: where relative paths point, and what the hash
counts."""

from __future__ import annotations

from dataclasses import replace

import pytest

from bbh.experiments.config import config_hash, load_config

OWN = """
extends = "{base}"
[data]
name = "files"
train = "data/train.npz"
[scale.cpu]
data.test = "data/test.npz"
"""

BASE = """
[data]
name = "files"
train = "base_train.npz"
test = "base_test.npz"
[net]
name = "mlp"
options = { hidden = [4] }
[method]
name = "map"
"""


def test_relative_paths_resolve_against_the_file_that_sets_them(tmp_path, monkeypatch) -> None:
    (tmp_path / "bases").mkdir()
    (tmp_path / "bases" / "base.toml").write_text(BASE)
    (tmp_path / "runs").mkdir()
    path = tmp_path / "runs" / "own.toml"
    path.write_text(OWN.format(base="../bases/base.toml"))
    monkeypatch.chdir(tmp_path)
    paper = load_config(path)
    assert paper.data.train == str(tmp_path / "runs" / "data" / "train.npz")
    assert paper.data.test == str(tmp_path / "bases" / "base_test.npz")  # set by the base
    cpu = load_config(path, scale="cpu", overrides=["data.train=here.npz"])
    assert cpu.data.test == str(tmp_path / "runs" / "data" / "test.npz")
    assert cpu.data.train == str(tmp_path / "here.npz")  # --set: the working directory


def test_own_data_hashes_by_content_not_place(tmp_path) -> None:
    (tmp_path / "base.toml").write_text(BASE)
    cfg = load_config(tmp_path / "base.toml")
    moved = replace(cfg, data=replace(cfg.data, train="/elsewhere/train.npz"))
    assert config_hash(cfg, data_fingerprint="aa") == config_hash(moved, data_fingerprint="aa")
    assert config_hash(cfg, data_fingerprint="aa") != config_hash(cfg, data_fingerprint="bb")
    keyed = replace(cfg, data=replace(cfg.data, x_key="inputs"))
    assert config_hash(keyed, data_fingerprint="aa") != config_hash(cfg, data_fingerprint="aa")


@pytest.mark.parametrize(
    ("name", "digest", "overrides"),
    [
        ("mnist/bbh", "a1006b5298b6", []),
        # CIFAR-5 held out no validation images before: those runs are the ones without
        ("cifar5/map", "0a80a34fd863", ["data.validation_size=0"]),
        ("demo/bbh", "7b204ff9803c", []),
    ],
)
def test_shipped_runs_keep_their_hash(name: str, digest: str, overrides: list[str]) -> None:
    """The own-data keys left the hash of a shipped set's run as it was, and so does
    ``train.lr_schedule = "constant"`` (how every run before the option trained): the values
    were computed before either existed. The default, a cooldown of the rate, is another run."""
    cfg = load_config(name, scale="cpu", overrides=overrides)
    constant = replace(cfg, train=replace(cfg.train, lr_schedule="constant"))
    assert cfg.train.lr_schedule == "cooldown"
    assert config_hash(constant) == digest
    assert config_hash(cfg) != digest
