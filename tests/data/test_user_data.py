"""The user's own data: the file readers, the function loader and the checks, on tiny files."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import Dataset, TensorDataset

from bbh.data import DataError
from bbh.data.user_callable import MAX_DATASET_BYTES, load_user_function
from bbh.data.user_data import fingerprint, user_splits
from bbh.data.user_files import read_user_file


def _splits(train, test=None, **kw):
    kw = {"task": "classification", "train_where": "TRAIN", "test_where": "TEST", **kw}
    return user_splits(train, test, **kw)


def test_npz_npy_and_csv_read_the_same_table(tmp_path: Path) -> None:
    x = np.arange(12, dtype=np.float64).reshape(4, 3)
    y = np.array([0, 1, 1, 0])
    np.savez(tmp_path / "d.npz", inputs=x, labels=y)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", y)
    rows = ["a,label,b,c", *(f"{r[0]},{t},{r[1]},{r[2]}" for r, t in zip(x, y, strict=True))]
    (tmp_path / "d.csv").write_text("\n".join(rows) + "\n")
    got = [
        read_user_file(tmp_path / "d.npz", field="data.train", x_key="inputs", y_key="labels"),
        read_user_file(tmp_path / "x.npy", field="data.train", targets=tmp_path / "y.npy"),
        read_user_file(tmp_path / "d.csv", field="data.train", target="label"),
    ]
    for gx, gy, names in got:
        np.testing.assert_array_equal(gx, x)
        np.testing.assert_array_equal(gy, y)
        assert names is None
    cols, _, _ = read_user_file(tmp_path / "d.csv", field="f", target="label", columns=["c", "a"])
    np.testing.assert_array_equal(cols, x[:, [2, 0]])


def test_image_folder_classes_sorted_and_modes(tmp_path: Path) -> None:
    from PIL import Image

    for cls, value in (("zebra", 200), ("ant", 10)):
        (tmp_path / cls).mkdir()
        for i in range(2):
            Image.new("RGB", (8, 6), (value, value, i)).save(tmp_path / cls / f"{i}.png")
    x, y, names = read_user_file(tmp_path, field="data.train")
    assert names == ("ant", "zebra") and x.shape == (4, 3, 6, 8) and x.dtype == np.uint8
    assert y.tolist() == [0, 0, 1, 1] and int(x[0, 0, 0, 0]) == 10
    gray, _, _ = read_user_file(tmp_path, field="data.train", image_mode="L")
    assert gray.shape == (4, 1, 6, 8)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match=r"data.train = .*: the class folder 'empty' holds no"):
        read_user_file(tmp_path, field="data.train")


@pytest.mark.parametrize(
    ("name", "content", "kwargs", "message"),
    [
        ("x.txt", "1", {}, r"data.train = .*x.txt: unknown file type '.txt'"),
        ("d.npz", None, {"x_key": "feats"}, r"d.npz: no array 'feats' .*holds \['x', 'y'\]"),
        ("d.npz", b"not a zip", {}, r"d.npz: not a readable .npz file"),
        ("x.npy", None, {}, r"x.npy: a .npy file holds the inputs only; set data.train_targets"),
        ("d.csv", "a,b\n1,2\n", {}, r"d.csv: a CSV file needs data.target"),
        ("d.csv", "a,b\n1,2\n", {"target": "y"}, r"column 'y' \(data.target\) not found"),
        ("d.csv", "a,y\n1,0\nx1,1\n", {"target": "y"}, r"row 3, column 'a': 'x1' is not a number"),
        ("d.csv", "a,y\n1,0\n2\n", {"target": "y"}, r"row 3 has 1 values, the header 2"),
        ("d.csv", "", {"target": "y"}, r"d.csv: empty; a CSV file needs a header row"),
        (
            "d.csv",
            "a,y\n1,0.5\n2,oops\n",
            {"target": "y", "numeric_target": True},
            r"row 3, column 'y': 'oops' is not a number",
        ),
    ],
)
def test_file_errors_name_the_field_and_file(tmp_path, name, content, kwargs, message) -> None:
    path = tmp_path / name
    if name == "d.npz" and content is None:
        np.savez(path, x=np.zeros((2, 1)), y=np.zeros(2))
    elif name == "x.npy":
        np.save(path, np.zeros((2, 1)))
    elif isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    with pytest.raises(DataError, match=message) as err:
        read_user_file(path, field="data.train", **kwargs)
    assert str(err.value).startswith("data.train = ") and "\n" not in str(err.value)


def test_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"data.test = .*nope.npz: no such file or folder"):
        read_user_file(tmp_path / "nope.npz", field="data.test")


def test_splits_classification_checks_and_conversions() -> None:
    x = np.random.default_rng(0).normal(size=(10, 2))  # float64 -> float32
    y = np.array([0, 1, 2, 0, 1, 2, 0, 1, 2, 0], dtype=np.float64)  # integral floats -> int64
    s = _splits((x, y), (x[:3], y[:3]), validation_size=4, validation_seed=1)
    assert s.train.images.dtype == torch.float32 and s.train.labels.dtype == torch.int64
    assert len(s.train) == 6 and len(s.val) == 4 and s.class_names == ("0", "1", "2")
    tokens = _splits((np.arange(8).reshape(4, 2), [0, 1, 0, 1]), (np.ones((1, 2), int), [1]))
    assert tokens.train.images.dtype == torch.int64  # token ids stay integers
    names = _splits((x[:3], np.array(["b", "a", "b"])), (x[:1], np.array(["a"])))
    assert names.class_names == ("a", "b") and names.train.labels.tolist() == [1, 0, 1]
    wider = _splits((x[:2], [0, 1]), (x[:1], [3]))  # the classes span train and test labels
    assert wider.num_classes == 4 and wider.test.labels.tolist() == [3]
    held = _splits((x, y.astype(int)), None, test_size=3)
    assert len(held.test) == 3 and len(held.train) == 7


@pytest.mark.parametrize(
    ("train", "test", "kwargs", "message"),
    [
        ((np.zeros((3, 2)), [0, 1]), None, {}, r"TRAIN: 3 inputs but 2 targets"),
        ((np.zeros((2, 2)), [0.5, 1.0]), None, {}, r"TRAIN: label 0.5 at index 0 is not an int"),
        ((np.zeros((2, 2)), [0, -1]), None, {}, r"TRAIN: negative label -1 at index 1"),
        ((np.zeros((2, 2)), [0, 1]), (np.zeros((2, 3)), [0, 1]), {}, r"TEST: inputs of "),
        ((np.zeros((2, 2)), ["a", "b"]), (np.zeros((1, 2)), ["c"]), {}, r"TEST: class name"),
        ((np.zeros((2, 2)), [0, 1]), None, {}, r"TRAIN: no test data; .*data.test_size"),
        ((np.zeros((2, 2)), [0, 1]), None, {"test_size": 2}, r"test_size = 2 must be smaller"),
        ((np.array([[0.0], [np.nan]]), [0, 1]), None, {}, r"TRAIN: non-finite inputs"),
        (([[1.0, 2.0], [3.0]], [0, 1]), None, {}, r"TRAIN: inputs are ragged"),
        ((np.zeros((2, 1)), [np.inf, 1.0]), None, {"task": "regression"}, r"non-finite target"),
    ],
)
def test_split_errors_name_the_source(train, test, kwargs, message) -> None:
    with pytest.raises(DataError, match=message):
        _splits(train, test, **kwargs)


def test_regression_targets_and_fingerprint() -> None:
    x = np.linspace(0, 1, 8)  # [N] -> [N, 1]
    s = _splits((x, 2 * x), (x[:2], 2 * x[:2]), task="regression")
    assert s.train.images.shape == (8, 1) and s.train.labels.dtype == torch.float32
    assert s.class_names == ()
    same = _splits((x, 2 * x), (x[:2], 2 * x[:2]), task="regression")
    other = _splits((x, 2 * x + 1e-3), (x[:2], 2 * x[:2]), task="regression")
    assert fingerprint(s) == fingerprint(same) != fingerprint(other)


def _module(tmp_path: Path, monkeypatch, body: str) -> str:
    name = f"user_data_{abs(hash(body)) % 10**8}"
    (tmp_path / f"{name}.py").write_text(
        "import numpy as np, torch\nfrom torch.utils.data import Dataset, TensorDataset\n" + body
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    sys.modules.pop(name, None)
    return name


@pytest.mark.parametrize(
    "body",
    [
        "def load():\n    x = np.ones((4, 2)); return x, np.arange(4) % 2, x[:2], np.arange(2)",
        "def load():\n    x = torch.ones(4, 2)\n"
        "    return {'x_train': x, 'y_train': torch.arange(4) % 2, 'x_test': x[:2],"
        " 'y_test': torch.arange(2)}",
        "def load():\n    x = torch.ones(4, 2)\n"
        "    return TensorDataset(x, torch.arange(4) % 2), TensorDataset(x[:2], torch.arange(2))",
        "def load():\n    x = torch.ones(4, 2)\n"
        "    return {'train': TensorDataset(x, torch.arange(4) % 2), 'test': (x[:2], [0, 1])}",
    ],
)
def test_function_return_forms(tmp_path, monkeypatch, body) -> None:
    name = _module(tmp_path, monkeypatch, body)
    (x, y), test = load_user_function(f"{name}:load")
    assert test is not None
    assert np.asarray(x).shape == (4, 2) and np.asarray(y).tolist() == [0, 1, 0, 1]
    assert np.asarray(test[0]).shape == (2, 2)


@pytest.mark.parametrize(
    ("spec", "body", "message"),
    [
        ("nomodule_xyz:load", None, r"cannot import module 'nomodule_xyz' \(ModuleNotFoundError"),
        ("just_a_name", None, r"expected 'package.module:function'"),
        ("{m}:nope", "x = 1\n", r"has no attribute 'nope'"),
        ("{m}:x", "x = 1\n", r"'x' is a int, not a function"),
        ("{m}:load", "def load():\n    raise KeyError('k')\n", r"the function raised KeyError"),
        ("{m}:load", "def load():\n    return 1, 2, 3\n", r"returned 3 values; expected"),
        ("{m}:load", "def load():\n    return {'a': 1}\n", r"dict has keys \['a'\]; expected"),
        (
            "{m}:load",
            "class D(Dataset):\n    def __len__(self): return 2\n"
            "    def __getitem__(self, i): return np.ones(2)\n"
            "def load():\n    return D(), None\n",
            r"\(train\): item 0 of the Dataset is a ndarray, not an \(x, y\) pair",
        ),
        (
            "{m}:load",
            "class D(Dataset):\n    def __len__(self): return 2\n"
            "    def __getitem__(self, i): return np.ones(i + 1), 0\n"
            "def load():\n    return D(), None\n",
            r"item 1 has x \[2\], y \[\]; item 0 had x \[1\], y \[\] \(ragged items\)",
        ),
    ],
)
def test_function_errors_are_one_line(tmp_path, monkeypatch, spec, body, message) -> None:
    if body is not None:
        spec = spec.format(m=_module(tmp_path, monkeypatch, body))
    with pytest.raises(DataError, match=message) as err:
        load_user_function(spec)
    assert str(err.value).startswith("data.source = ") and "\n" not in str(err.value)


def test_function_from_a_file(tmp_path) -> None:
    (tmp_path / "f.py").write_text("def load():\n    return [[1.0], [2.0]], [0, 1], None, None\n")
    (x, y), test = load_user_function(f"{tmp_path / 'f.py'}:load")
    assert x == [[1.0], [2.0]] and y == [0, 1] and test is None
    with pytest.raises(DataError, match=r"no such file .*g.py"):
        load_user_function(f"{tmp_path / 'g.py'}:load")


def test_a_dataset_too_large_to_hold_is_refused(monkeypatch) -> None:
    class Huge(Dataset):
        def __len__(self) -> int:
            return MAX_DATASET_BYTES // 8

        def __getitem__(self, i: int):
            return torch.zeros(4), torch.tensor(0)

    import bbh.data.user_callable as mod

    monkeypatch.setattr(mod, "_import", lambda spec, where: lambda: (Huge(), None))
    with pytest.raises(DataError, match=r"GiB in memory \(limit 4 GiB\); return arrays"):
        load_user_function("m:f")
    small = TensorDataset(torch.zeros(3, 2), torch.zeros(3))
    monkeypatch.setattr(mod, "_import", lambda spec, where: lambda: small)
    (x, _), test = load_user_function("m:f")
    assert x.shape == (3, 2) and test is None
