"""Readers on small generated files: IDX, CIFAR python batches, image folders and archives."""

from __future__ import annotations

import gzip
import io
import pickle
from pathlib import Path

import numpy as np
import pytest
from data_test_utils import (
    cifar_batch_bytes,
    idx_bytes,
    image_bytes,
    image_folder_files,
    make_cifar_python,
    write_files,
    write_idx,
    write_tar,
)

from bbh.data import DataError, read_cifar10_python, read_idx, read_idx_pair, read_image_folder
from bbh.data.readers import read_cifar_batch, read_image_folders

# ------------------------------------------------------------------------------------ IDX


@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.int16, np.int32, np.float32])
def test_idx_round_trip(tmp_path: Path, gz: bool, dtype: type) -> None:
    array = (np.arange(2 * 3 * 4) - 5).reshape(2, 3, 4).astype(dtype)
    path = write_idx(tmp_path / "x.idx", array, gz=gz)
    out = read_idx(path)
    assert out.dtype == np.dtype(dtype).newbyteorder("=")
    np.testing.assert_array_equal(out, array)


def test_idx_gzip_detected_by_content_not_name(tmp_path: Path) -> None:
    array = np.arange(10, dtype=np.uint8)
    raw_named_gz = write_idx(tmp_path / "labels.gz", array, gz=False)
    gz_named_raw = write_idx(tmp_path / "labels", array, gz=True)
    np.testing.assert_array_equal(read_idx(raw_named_gz), array)
    np.testing.assert_array_equal(read_idx(gz_named_raw), array)


def test_idx_pair_shapes(tmp_path: Path) -> None:
    x = np.random.default_rng(0).integers(0, 256, (7, 28, 28), dtype=np.uint8)
    y = np.arange(7, dtype=np.uint8)
    images, labels = read_idx_pair(write_idx(tmp_path / "i.gz", x), write_idx(tmp_path / "l.gz", y))
    assert images.shape == (7, 1, 28, 28) and images.dtype == np.uint8
    assert labels.dtype == np.int64
    np.testing.assert_array_equal(images[:, 0], x)


def test_idx_bad_magic(tmp_path: Path) -> None:
    path = tmp_path / "bad.idx"
    path.write_bytes(b"\x00\x01\x08\x01" + (3).to_bytes(4, "big") + b"abc")
    with pytest.raises(DataError, match=r"bad\.idx.*magic"):
        read_idx(path)
    path.write_bytes(b"\x00\x00\x42\x01" + (3).to_bytes(4, "big") + b"abc")
    with pytest.raises(DataError, match="magic"):
        read_idx(path)


def test_idx_truncated(tmp_path: Path) -> None:
    data = idx_bytes(np.zeros((5, 28, 28), np.uint8))
    path = tmp_path / "short-images.gz"
    path.write_bytes(gzip.compress(data[:-10]))
    with pytest.raises(DataError, match=r"short-images\.gz.*truncated"):
        read_idx(path)
    (tmp_path / "tiny").write_bytes(b"\x00\x00")
    with pytest.raises(DataError, match="tiny"):
        read_idx(tmp_path / "tiny")


def test_idx_corrupt_gzip(tmp_path: Path) -> None:
    good = gzip.compress(idx_bytes(np.zeros((50, 28, 28), np.uint8)))
    path = tmp_path / "cut.gz"
    path.write_bytes(good[: len(good) // 2])
    with pytest.raises(DataError, match=r"cut\.gz.*gzip"):
        read_idx(path)
    path.write_bytes(good[:20] + bytes(200) + good[220:])
    with pytest.raises(DataError, match=r"cut\.gz"):
        read_idx(path)


def test_idx_count_mismatch_names_both_files(tmp_path: Path) -> None:
    x = write_idx(tmp_path / "imgs.gz", np.zeros((4, 28, 28), np.uint8))
    y = write_idx(tmp_path / "labs.gz", np.zeros(5, np.uint8))
    with pytest.raises(DataError, match=r"imgs\.gz has 4 images but .*labs\.gz has 5 labels"):
        read_idx_pair(x, y)


def test_idx_pair_wrong_rank(tmp_path: Path) -> None:
    x = write_idx(tmp_path / "flat.gz", np.zeros((4, 784), np.uint8))
    y = write_idx(tmp_path / "labs.gz", np.zeros(4, np.uint8))
    with pytest.raises(DataError, match=r"flat\.gz"):
        read_idx_pair(x, y)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="nothere"):
        read_idx(tmp_path / "nothere")


# ------------------------------------------------------------------------------ CIFAR python


@pytest.mark.parametrize("as_tar", [False, True])
def test_cifar_python(tmp_path: Path, as_tar: bool) -> None:
    batches = make_cifar_python(tmp_path, per_batch=6, as_tar=as_tar)
    path = tmp_path / ("cifar-10-python.tar.gz" if as_tar else "cifar-10-batches-py")
    arrays = read_cifar10_python(path)
    assert arrays["train_images"].shape == (30, 3, 32, 32)
    assert arrays["test_images"].shape == (6, 3, 32, 32)
    assert arrays["train_labels"].dtype == np.int64
    np.testing.assert_array_equal(arrays["train_images"][:6], batches["data_batch_1"][0])
    np.testing.assert_array_equal(arrays["train_images"][24:], batches["data_batch_5"][0])
    np.testing.assert_array_equal(arrays["test_labels"], batches["test_batch"][1])


def test_cifar_batch_layout_matches_canonical() -> None:
    # Canonical rows are 1024 red, then 1024 green, then 1024 blue values, row-major.
    row = np.concatenate([np.full(1024, 1), np.full(1024, 2), np.full(1024, 3)]).astype(np.uint8)
    images, _ = read_cifar_batch(cifar_batch_bytes(row[None], np.array([7])))
    assert images.shape == (1, 3, 32, 32)
    assert (images[0, 0] == 1).all() and (images[0, 2] == 3).all()


def test_cifar_missing_batch(tmp_path: Path) -> None:
    make_cifar_python(tmp_path, per_batch=2)
    (tmp_path / "cifar-10-batches-py" / "data_batch_3").unlink()
    with pytest.raises(DataError, match="data_batch_3"):
        read_cifar10_python(tmp_path / "cifar-10-batches-py")


def test_cifar_refuses_arbitrary_pickles() -> None:
    evil = pickle.dumps({b"data": print, b"labels": []}, protocol=2)
    with pytest.raises(DataError, match="refusing"):
        read_cifar_batch(evil, "evil_batch")


def test_cifar_bad_batch_contents() -> None:
    bad = pickle.dumps({b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]}, protocol=2)
    with pytest.raises(DataError, match="bad_batch"):
        read_cifar_batch(bad, "bad_batch")
    mismatch = cifar_batch_bytes(np.zeros((2, 3, 32, 32), np.uint8), np.array([0, 1, 2]))
    with pytest.raises(DataError, match="2 images but 3 labels"):
        read_cifar_batch(mismatch, "b")
    with pytest.raises(DataError, match="garbage"):
        read_cifar_batch(b"not a pickle", "garbage")


def test_cifar_truncated_tar(tmp_path: Path) -> None:
    make_cifar_python(tmp_path, per_batch=50, as_tar=True)
    tar = tmp_path / "cifar-10-python.tar.gz"
    data = tar.read_bytes()
    tar.write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match=r"cifar-10-python\.tar\.gz"):
        read_cifar10_python(tar)


# ------------------------------------------------------------------------------ image folders

CLASSES = ["cat", "apple", "bird"]


@pytest.mark.parametrize("kind", ["dir", "tar", "tar.gz"])
def test_image_folder_png_exact(tmp_path: Path, kind: str) -> None:
    files, pixels = image_folder_files(CLASSES, 3, prefix="top/train/")
    if kind == "dir":
        path = write_files(tmp_path / "folder", files)
    else:
        path = write_tar(tmp_path / f"images.{kind}", files)
    images, labels, names = read_image_folder(path, "train")
    assert names == ("apple", "bird", "cat")  # sorted folder names by default
    assert images.shape == (9, 3, 32, 32) and images.dtype == np.uint8
    np.testing.assert_array_equal(labels, [0, 0, 0, 1, 1, 1, 2, 2, 2])
    np.testing.assert_array_equal(images[0].transpose(1, 2, 0), pixels["top/train/apple/0000.png"])
    np.testing.assert_array_equal(images[8].transpose(1, 2, 0), pixels["top/train/cat/0002.png"])


def test_image_folder_jpeg_and_class_order(tmp_path: Path) -> None:
    files, pixels = image_folder_files(CLASSES, 2, prefix="train/", fmt="JPEG")
    test_files, _ = image_folder_files(CLASSES, 1, prefix="test/", fmt="JPEG", seed=1)
    path = write_tar(tmp_path / "jpegs.tar.gz", {**files, **test_files})
    out = read_image_folders(path, ["train", "test"], class_names=CLASSES)
    images, labels, names = out["train"]
    assert names == tuple(CLASSES)
    np.testing.assert_array_equal(labels, [0, 0, 1, 1, 2, 2])
    assert out["test"][0].shape == (3, 3, 32, 32)
    # JPEG is lossy: the reader must give exactly what Pillow decodes.
    from PIL import Image

    with Image.open(io.BytesIO(files["train/cat/0000.jpg"])) as img:
        expected = np.asarray(img.convert("RGB"))
    np.testing.assert_array_equal(images[0].transpose(1, 2, 0), expected)
    assert pixels["train/cat/0000.jpg"].shape == expected.shape


def test_image_folder_classes_at_top_and_grayscale(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    files = {
        f"{c}/{i}.png": image_bytes(rng.integers(0, 256, (8, 8), np.uint8), "PNG")
        for c in "ab"
        for i in range(2)
    }
    path = write_files(tmp_path / "gray", files)
    images, _, names = read_image_folder(path, mode="L")
    assert images.shape == (4, 1, 8, 8) and names == ("a", "b")


def test_image_folder_no_classes(tmp_path: Path) -> None:
    (tmp_path / "empty" / "train").mkdir(parents=True)
    with pytest.raises(DataError, match=r"empty.*no class folders"):
        read_image_folder(tmp_path / "empty", "train")
    write_files(tmp_path / "textonly", {"train/a/readme.txt": b"hi"})
    with pytest.raises(DataError, match="no class folders"):
        read_image_folder(tmp_path / "textonly", "train")
    with pytest.raises(DataError, match="no such"):
        read_image_folder(tmp_path / "absent")


def test_image_folder_unreadable_image_named(tmp_path: Path) -> None:
    files, _ = image_folder_files(CLASSES, 2)
    files["bird/0001.png"] = b"\x89PNG broken"
    with pytest.raises(DataError, match=r"bird/0001\.png.*unreadable"):
        read_image_folder(write_files(tmp_path / "f", files))
    with pytest.raises(DataError, match=r"bad\.tar.*bird/0001\.png"):
        read_image_folder(write_tar(tmp_path / "bad.tar", files))


def test_image_folder_size_mismatch(tmp_path: Path) -> None:
    files, _ = image_folder_files(CLASSES, 1)
    files["cat/0009.png"] = image_bytes(np.zeros((16, 16, 3), np.uint8), "PNG")
    with pytest.raises(DataError, match=r"cat/0009\.png.*size"):
        read_image_folder(write_files(tmp_path / "f", files))


def test_image_folder_unexpected_or_missing_class(tmp_path: Path) -> None:
    files, _ = image_folder_files(CLASSES, 1)
    path = write_files(tmp_path / "f", files)
    with pytest.raises(DataError, match="unexpected class folders"):
        read_image_folder(path, class_names=["cat", "bird"])
    with pytest.raises(DataError, match=r"missing class folders \['dog'\]"):
        read_image_folder(path, class_names=[*CLASSES, "dog"])


def test_image_folder_truncated_archive(tmp_path: Path) -> None:
    files, _ = image_folder_files(CLASSES, 20)
    tar = write_tar(tmp_path / "imgs.tar.gz", files)
    data = tar.read_bytes()
    tar.write_bytes(data[: len(data) * 2 // 3])
    with pytest.raises(DataError, match=r"imgs\.tar\.gz.*(corrupt|truncated)"):
        read_image_folder(tar)
    tar.write_bytes(b"this is not an archive at all")
    with pytest.raises(DataError, match=r"imgs\.tar\.gz"):
        read_image_folder(tar)


@pytest.mark.parametrize("compressed", [False, True])
def test_image_folder_corrupt_middle_of_archive_is_corrupt_not_missing_classes(
    tmp_path: Path, compressed: bool
) -> None:
    """tarfile takes an unreadable header after the first as the end of the archive; the
    reader must say the archive is corrupt (not that the later class folders are missing)."""
    files, _ = image_folder_files(CLASSES, 20)
    raw = write_tar(tmp_path / "imgs.tar", files).read_bytes()
    middle = raw.index(b"bird/0010.png")  # a member header halfway through
    damaged = bytearray(raw)
    damaged[middle : middle + 512] = bytes(range(256)) * 2
    target = tmp_path / ("imgs.tar.gz" if compressed else "imgs.tar")
    target.write_bytes(gzip.compress(bytes(damaged)) if compressed else bytes(damaged))
    with pytest.raises(
        DataError,
        match=rf"{target.name}: corrupt archive: an unreadable entry header at byte \d+ "
        r"\(uncompressed\) after \d+ files; the rest of the archive was not read",
    ):
        read_image_folder(target, class_names=CLASSES)


def test_image_folder_corrupt_gzip_stream_in_the_middle(tmp_path: Path) -> None:
    files, _ = image_folder_files(CLASSES, 20)
    data = bytearray(write_tar(tmp_path / "imgs.tar.gz", files).read_bytes())
    middle = len(data) // 2
    data[middle : middle + 64] = bytes(64)
    (tmp_path / "imgs.tar.gz").write_bytes(bytes(data))
    with pytest.raises(DataError, match=r"imgs\.tar\.gz: corrupt"):
        read_image_folder(tmp_path / "imgs.tar.gz", class_names=CLASSES)


def test_idx_labels_outside_the_classes_name_the_file_and_index(tmp_path: Path) -> None:
    images = write_idx(tmp_path / "i.gz", np.zeros((5, 2, 2), np.uint8))
    labels = write_idx(tmp_path / "l.gz", np.array([0, 9, 3, 42, 1], np.uint8))
    assert read_idx_pair(images, labels)[1].tolist() == [0, 9, 3, 42, 1]  # no classes: no check
    with pytest.raises(
        DataError,
        match=r"l\.gz: 1 label\(s\) outside the 10 classes 0-9, the first 42 at index 3; "
        "the file is corrupt or not this data set's",
    ):
        read_idx_pair(images, labels, num_classes=10)
