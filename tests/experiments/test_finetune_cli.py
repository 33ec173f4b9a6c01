"""``bbh finetune`` end to end on tiny data: a trained MAP run in, a run folder out that
``bbh evaluate`` and ``bbh.load`` read; one-line errors for sources and methods it refuses."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from tiny_configs import write_tiny

import bbh
from bbh.cli import main
from bbh.experiments.runs import RunFolder


@pytest.fixture(scope="module")
def map_run(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("finetune")
    config = write_tiny(folder, method="map", options="{}", steps=30, checkpoint_every=100)
    text = config.read_text().replace('ood = "embedded', 'validation_size = 100\nood = "embedded')
    config.write_text(text)
    assert main(["train", str(config), "--out", str(folder / "map"), "--quiet"]) == 0
    return folder / "map"


def _fail(argv: list[str], capsys) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    return err


def test_finetune_writes_a_run_that_evaluates(map_run, tmp_path, capsys):
    out = tmp_path / "ft"
    argv = ["finetune", str(map_run), "--method", "bbh", "--steps", "6", "--out", str(out),
            "--set", "method.options.temperature=1", "--quiet"]  # fmt: skip
    assert main(argv) == 0
    assert "trained bbh from" in capsys.readouterr().out
    meta = json.loads((out / "config.json").read_text())
    source = meta["finetuned_from"]
    assert source["kind"] == "run" and source["method"] == "map"
    assert source["config_hash"] == json.loads((map_run / "config.json").read_text())["config_hash"]
    assert meta["config"]["method"] == {"name": "bbh", "options": {"temperature": 1.0}}
    assert meta["config"]["train"]["kl_schedule"]["kind"] == "constant"
    assert meta["config"]["train"]["lr_warmup"] == bbh.training.FINETUNE_WARMUP
    assert (
        meta["config"]["data"]
        == json.loads((map_run / "config.json").read_text())["config"]["data"]
    )  # the same data and splits
    assert RunFolder.at(out).status() == "finished" and (out / "done").is_file()
    assert json.loads((out / "train.json").read_text())["steps"] == 6
    assert main(argv) == 0  # the same fine-tune again: nothing to do
    assert "already holds this finished fine-tune" in capsys.readouterr().out

    model = bbh.load(out)
    assert type(model).__name__ == "BayesByHypernet"
    assert model.predict(torch.rand(3, 784), num_samples=4).shape == (3, 10)
    assert main(["evaluate", str(out), "--attacks", "none", "--quiet"]) == 0
    result = json.loads((out / "evaluation.json").read_text())
    assert "accuracy" in json.dumps(result)


def test_finetune_from_a_state_dict_with_a_config(map_run, tmp_path, capsys):
    weights = tmp_path / "net.pt"
    torch.save(bbh.load(map_run).net.state_dict(), weights)
    config = map_run.parent / "tiny.toml"
    assert "give --config" in _fail(["finetune", str(weights), "--steps", "2"], capsys)
    argv = ["finetune", str(weights), "--config", str(config), "--method", "bbb", "--steps", "3",
            "--set", "method.options.temperature=1", "--quiet"]  # fmt: skip
    assert main(argv) == 0
    out = tmp_path / "net-finetune-bbb"  # the default: beside the source
    source = json.loads((out / "config.json").read_text())["finetuned_from"]
    assert source["kind"] == "state_dict" and len(source["sha256"]) == 64


def test_the_temperature_search_needs_a_validation_split(tmp_path, capsys):
    config = write_tiny(tmp_path, method="map", options="{}", steps=4, checkpoint_every=100)
    assert main(["train", str(config), "--out", str(tmp_path / "map"), "--quiet"]) == 0
    err = _fail(["finetune", str(tmp_path / "map"), "--steps", "2", "--quiet"], capsys)
    assert "validation data" in err and "method.options.temperature=1" in err


def test_refused_sources_and_methods_are_one_line(map_run, tmp_path, capsys):
    assert "not a fine-tuning method" in _fail(
        ["finetune", str(map_run), "--method", "ensemble"], capsys
    )
    assert "unknown method 'nope'" in _fail(["finetune", str(map_run), "--method", "nope"], capsys)
    partial = tmp_path / "partial"
    partial.mkdir()
    (partial / "config.json").write_text("{}")
    assert "training is unfinished" in _fail(["finetune", str(partial)], capsys)
    assert "no such run folder" in _fail(["finetune", str(tmp_path / "missing")], capsys)
    with pytest.raises(SystemExit) as exit_:  # argparse's own misuse: one line, status 2
        main(["finetune", str(map_run), "--epochs", "1", "--steps", "2"])
    assert exit_.value.code == 2
    assert "not allowed with argument" in capsys.readouterr().err
