"""The experiment subcommands' help and misuse: help everywhere, one line and status 2 on misuse."""

from __future__ import annotations

import pytest

from bbh.cli import main

COMMANDS = ["demo", "configs", "train", "finetune", "evaluate", "reproduce", "toy", "data"]


@pytest.mark.parametrize("command", [None, *COMMANDS])
def test_help_explains_every_option(command, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--help"] if command is None else [command, "--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: bbh")
    if command in ("train", "reproduce"):
        for option in ("--scale", "--set", "--out", "--device", "--data-dir", "--threads"):
            assert option in out
    if command == "train":
        assert "--resume" in out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ([], "the following arguments are required: command"),
        (["train"], "the following arguments are required: config"),
        (["reproduce", "mnist"], "the following arguments are required: --scale"),
        (["reproduce", "imagenet", "--scale", "cpu"], "invalid choice: 'imagenet'"),
        (["train", "mnist/map", "--threads", "0"], "argument --threads: must be >= 1, got 0"),
        (["train", "mnist/map", "--device", "tpu"], "invalid choice: 'tpu'"),
    ],
)
def test_misuse_is_one_line_and_status_2(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["train", "mnist/nope"], "unknown config 'mnist/nope'"),
        (["train", "mnist/map", "--set", "train.epochz=1"], "train.epochz: unknown key"),
        (["train", "mnist/map", "--set", "method.name=bayes"], "unknown method 'bayes'"),
        (["configs", "mnist/map", "--set", "train.lr=-1"], "train.lr: -1.0 must be > 0"),
        (["evaluate", "/nonexistent/run"], "holds no trained model"),
        (["reproduce", "mnist", "--scale", "cpu", "--only", "mapp"], "unknown run(s) ['mapp']"),
    ],
)
def test_bad_input_is_one_line_and_status_2(argv, message, capsys, tmp_path):
    assert main(argv + (["--out", str(tmp_path / "o")] if argv[0] == "train" else [])) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err
    assert not (tmp_path / "o").exists()  # nothing started


def test_configs_lists_and_shows(capsys):
    assert main(["configs"]) == 0
    names = capsys.readouterr().out.split()
    assert "mnist/bbh_k64_independent" in names and "cifar5/ensemble" in names
    assert "toy/toy" in names and not any(n.split("/")[1].startswith("_") for n in names)
    assert main(["configs", "mnist/map", "--scale", "cpu"]) == 0
    assert '"epochs": 5.0' in capsys.readouterr().out
