"""``bbh train`` on the user's own data: each source end to end on tiny files, the run folder's
identity (the data's content), and the errors (one line, status 2, nothing written)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from bbh.cli import main

BBH = '{ generator = "chunked", hidden = [8, 16], kl = "entropy", num_samples = 3 }'


def _config(folder: Path, data: str, *, net: str = 'name = "mlp"\noptions = { hidden = [8] }',
            method: str = 'name = "map"', steps: int = 6) -> Path:  # fmt: skip
    path = folder / "run.toml"
    path.write_text(
        f"[data]\n{data}\n[net]\n{net}\n[method]\n{method}\n"
        f"[train]\nsteps = {steps}\nbatch_size = 8\nlog_every = 2\nval_samples = 2\n"
        "[eval]\nnum_samples = 2\nstudies = false\nweight_samples = 0\n"
        "[eval.attacks]\nnum_images = 4\nepsilons = [0.0, 0.1]\nnum_grad_samples = 2\n"
        "attack_samples = 2\npgd_steps = 2\n"
    )
    return path


def _table(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    x = np.random.default_rng(seed).normal(size=(n, 3))
    return x, (x[:, 0] > 0).astype(np.int64)


def _train(config: Path, out: Path, *extra: str) -> int:
    return main(["train", str(config), "--out", str(out), "--quiet", *extra])


def _meta(out: Path) -> dict:
    return json.loads((out / "config.json").read_text())


def test_npz_with_relative_paths_and_bbh(tmp_path, monkeypatch) -> None:
    data = tmp_path / "project"
    data.mkdir()
    x, y = _table(40)
    np.savez(data / "train.npz", features=x[:30], labels=y[:30])
    np.savez(data / "test.npz", features=x[30:], labels=y[30:])
    config = _config(
        data,
        'name = "files"\ntrain = "train.npz"\ntest = "test.npz"\nx_key = "features"\n'
        'y_key = "labels"\nvalidation_size = 6',
        method=f'name = "bbh"\noptions = {BBH}',
    )
    monkeypatch.chdir(tmp_path)  # paths resolve against the config's folder, not here
    assert _train(config, tmp_path / "run") == 0
    meta = _meta(tmp_path / "run")
    assert meta["config"]["data"]["train"] == str(data / "train.npz")
    assert meta["config"]["net"]["options"] == {"hidden": [8], "in_features": 3, "out_features": 2}
    assert meta["num_train"] == 24 and len(meta["data_fingerprint"]) == 16
    summary = json.loads((tmp_path / "run" / "train.json").read_text())
    assert summary["steps"] == 6 and 0.0 <= summary["validation"][-1]["accuracy"] <= 1.0


def test_evaluate_reads_the_own_data_and_sees_it_change(tmp_path, capsys) -> None:
    x, y = _table(30)
    np.savez(tmp_path / "d.npz", x=x, y=y)
    config = _config(tmp_path, 'name = "files"\ntrain = "d.npz"\ntest_size = 10')
    assert _train(config, tmp_path / "run") == 0
    evaluate = ["evaluate", str(tmp_path / "run"), "--quiet", "--attacks", "eot-fgsm"]
    assert main(evaluate) == 0
    result = json.loads((tmp_path / "run" / "evaluation.json").read_text())
    assert result["meta"]["data"] == f"own files: {tmp_path / 'd.npz'}"
    assert 0.0 <= result["paper_protocol"]["accuracy"] <= 1.0
    assert result["extended"]["fgsm_eot"]["clip"] is None  # features, not pixels in [0, 1]
    np.savez(tmp_path / "d.npz", x=x, y=1 - y)
    capsys.readouterr()
    assert main(evaluate) == 2
    assert "the data changed since training" in capsys.readouterr().err


def test_npy_pair_with_held_out_test(tmp_path) -> None:
    x, y = _table(30)
    np.save(tmp_path / "x.npy", x.astype(np.float32))
    np.save(tmp_path / "y.npy", y)
    config = _config(
        tmp_path,
        'name = "files"\ntrain = "x.npy"\ntrain_targets = "y.npy"\ntest_size = 10\n'
        "validation_size = 5",
    )
    assert _train(config, tmp_path / "run") == 0
    assert _meta(tmp_path / "run")["num_train"] == 15


def test_csv_class_names_and_column_choice(tmp_path) -> None:
    x, y = _table(30)
    lines = ["id,a,b,c,kind", *(f"{i},{r[0]},{r[1]},{r[2]},{'cat' if t else 'dog'}"
                                for i, (r, t) in enumerate(zip(x, y, strict=True)))]  # fmt: skip
    (tmp_path / "t.csv").write_text("\n".join(lines) + "\n")
    config = _config(
        tmp_path,
        'name = "files"\ntrain = "t.csv"\ntarget = "kind"\ncolumns = ["a", "b", "c"]\n'
        "test_size = 6",
    )
    assert _train(config, tmp_path / "run") == 0
    assert _meta(tmp_path / "run")["config"]["net"]["options"]["in_features"] == 3


def test_image_folder_with_bayes_by_backprop(tmp_path) -> None:
    from PIL import Image

    for split, n in (("train", 4), ("test", 2)):
        for label, value in (("bright", 220), ("dark", 30)):
            (tmp_path / split / label).mkdir(parents=True)
            for i in range(n):
                Image.new("L", (8, 8), value + i).save(tmp_path / split / label / f"{i}.png")
    config = _config(
        tmp_path,
        'name = "files"\ntrain = "train"\ntest = "test"\nimage_mode = "L"\nvalidation_size = 2',
        net='name = "tiny_conv"',
        method='name = "bbb"',
        steps=3,
    )
    assert _train(config, tmp_path / "run") == 0
    options = _meta(tmp_path / "run")["config"]["net"]["options"]
    assert options == {"in_channels": 1, "num_classes": 2}


def test_callable_in_a_file_beside_the_config(tmp_path, monkeypatch) -> None:
    (tmp_path / "my_data.py").write_text(
        "import torch\nfrom torch.utils.data import TensorDataset\n"
        "def load():\n"
        "    g = torch.Generator().manual_seed(0)\n"
        "    x = torch.randn(30, 4, generator=g)\n"
        "    y = (x[:, 1] > 0).long() + (x[:, 2] > 1).long()\n"
        "    return TensorDataset(x[:24], y[:24]), TensorDataset(x[24:], y[24:])\n"
    )
    config = _config(tmp_path, 'name = "callable"\nsource = "my_data.py:load"\nvalidation_size = 4')
    monkeypatch.chdir(tmp_path.parent)  # the file is found beside the config, not on sys.path
    assert _train(config, tmp_path / "run") == 0
    meta = _meta(tmp_path / "run")
    assert meta["data_source"] == f"own function: {tmp_path / 'my_data.py'}:load"
    assert meta["config"]["net"]["options"]["in_features"] == 4


def test_regression_from_csv_validates_by_rmse(tmp_path, capsys) -> None:
    x = np.random.default_rng(1).normal(size=(40, 2))
    t = x @ np.array([1.0, -2.0])
    rows = ["u,v,y", *(f"{a},{b},{c}" for (a, b), c in zip(x, t, strict=True))]
    (tmp_path / "r.csv").write_text("\n".join(rows) + "\n")
    config = _config(
        tmp_path,
        'name = "files"\ntrain = "r.csv"\ntarget = "y"\ntask = "regression"\ntest_size = 8\n'
        "validation_size = 8",
        method=f'name = "bbh"\noptions = {BBH[:-1]}, likelihood = "gaussian", noise_scale = 0.5 }}',
    )
    assert _train(config, tmp_path / "run") == 0
    assert _meta(tmp_path / "run")["config"]["net"]["options"]["out_features"] == 1
    val = json.loads((tmp_path / "run" / "train.json").read_text())["validation"][-1]
    assert set(val) == {"epoch", "step", "rmse", "nll"} and val["rmse"] > 0
    capsys.readouterr()
    assert main(["evaluate", str(tmp_path / "run"), "--quiet"]) == 2
    assert "covers classification" in capsys.readouterr().err


def test_the_run_folder_follows_the_data_content(tmp_path, capsys) -> None:
    x, y = _table(20)
    np.savez(tmp_path / "a.npz", x=x, y=y)
    config = _config(tmp_path, 'name = "files"\ntrain = "a.npz"\ntest_size = 5')
    assert _train(config, tmp_path / "run") == 0
    moved = tmp_path / "moved"
    moved.mkdir()
    shutil.copy(tmp_path / "a.npz", moved / "a.npz")
    capsys.readouterr()
    assert _train(config, tmp_path / "run", "--set", f"data.train={moved / 'a.npz'}") == 0
    assert "already holds this finished run" in capsys.readouterr().out  # same content
    np.savez(tmp_path / "a.npz", x=x + 1.0, y=y)  # the same path, other data
    assert _train(config, tmp_path / "run") == 2
    assert "holds a finished run of another config" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("data", "extra", "message"),
    [
        ('name = "files"\ntrain = "none.npz"\ntest_size = 2', "", "data.train = /"),
        ('name = "files"\ntest = "t.npz"', "", "data.train: missing (the training data file)"),
        ('name = "files"\ntrain = "t.npz"', "", "data.test: missing; name the test data or"),
        ('name = "files"\ntrain = "t.npz"\ntest = "t.npz"\ntest_size = 2', "", "only without"),
        ('name = "callable"', "", "data.source: missing ('package.module:function')"),
        ('name = "callable"\nsource = "m:f"\ntrain = "t.npz"', "", "data.train: does not apply"),
        ('name = "embedded-mnist"\ntrain = "t.npz"', "", "data.train: applies only to data.name"),
        ('name = "files"\ntrain = "t.npz"\ntest_size = 2\nood = "notmnist"', "", "data.ood: own"),
        (
            'name = "files"\ntrain = "t.npz"\ntest_size = 2\ntask = "regression"',
            "",
            "data.task = 'regression' needs method.options.likelihood = 'gaussian'",
        ),
        (
            'name = "files"\ntrain = "t.npz"\ntest_size = 2',
            "net.options.in_features=7",
            "net.options.in_features = 7 does not fit the data (inputs of shape [3])",
        ),
        (
            'name = "files"\ntrain = "t.npz"\ntest_size = 2\nx_key = "inputs"',
            "",
            "no array 'inputs' (data.x_key / data.y_key)",
        ),
    ],
)
def test_errors_are_one_line_and_write_nothing(tmp_path, capsys, data, extra, message) -> None:
    x, y = _table(10)
    np.savez(tmp_path / "t.npz", x=x, y=y)
    config = _config(tmp_path, data)
    assert _train(config, tmp_path / "run", *(["--set", extra] if extra else [])) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err, err
    assert not (tmp_path / "run").exists()
