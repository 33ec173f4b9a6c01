"""Make the small embedded data sets in ``src/bbh/data/embedded/`` from the full files.

    python scripts/make_embedded_data.py --data-dir ../shared/data

Deterministic: the same full files and arguments give the same arrays. Per class it takes the
first ``k`` examples of a seeded random permutation; MNIST training examples come from the
paper's 55,000-image training split (not from the 5,000 validation images).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from bbh.data.datasets import load_mnist, load_notmnist
from bbh.data.download import file_digest
from bbh.data.paths import resolve_data_root
from bbh.io import atomic_open

OUT_DIR = Path(__file__).resolve().parents[1] / "src" / "bbh" / "data" / "embedded"


def balanced_indices(labels: np.ndarray, per_class: int, seed: int) -> np.ndarray:
    """``per_class`` indices of each class, from a seeded permutation; sorted."""
    perm = np.random.default_rng(seed).permutation(len(labels))
    chosen = []
    for c in np.unique(labels):
        of_class = perm[labels[perm] == c]
        if len(of_class) < per_class:
            raise SystemExit(f"class {c} has only {len(of_class)} examples (< {per_class})")
        chosen.append(of_class[:per_class])
    return np.sort(np.concatenate(chosen))


def _save(path: Path, arrays: dict[str, np.ndarray], meta: dict) -> None:
    arrays = {**arrays, "meta": np.array(json.dumps(meta, indent=1, sort_keys=True))}
    with atomic_open(path) as handle:
        np.savez_compressed(handle, **arrays)
    print(f"wrote {path} ({path.stat().st_size / 1e6:.2f} MB)")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", default=None, help="data root (default: $BBH_DATA)")
    parser.add_argument("--out", type=Path, default=OUT_DIR)
    parser.add_argument("--train-per-class", type=int, default=200)
    parser.add_argument("--test-per-class", type=int, default=100)
    parser.add_argument("--notmnist-per-class", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    root = resolve_data_root(args.data_dir)

    mnist = load_mnist(root, offline=True, as_float=False)
    notmnist = load_notmnist(root, offline=True, as_float=False)

    def sources(subdir: str, prefixes: tuple[str, ...]) -> dict[str, str]:
        out = {}
        for p in sorted((root / subdir).iterdir()):
            if p.name.startswith(prefixes):
                out[f"{subdir}/{p.name}"] = file_digest(p)
        return out

    common = {"script": "scripts/make_embedded_data.py", "seed": args.seed, "format": "uint8 NCHW"}
    tr_y = mnist.train.labels.numpy()
    te_y = mnist.test.labels.numpy()
    tr = torch.from_numpy(balanced_indices(tr_y, args.train_per_class, args.seed))
    te = torch.from_numpy(balanced_indices(te_y, args.test_per_class, args.seed + 1))
    _save(
        args.out / "mnist.npz",
        {
            "train_images": mnist.train.images[tr].numpy(),
            "train_labels": mnist.train.labels[tr].numpy().astype(np.uint8),
            "test_images": mnist.test.images[te].numpy(),
            "test_labels": mnist.test.labels[te].numpy().astype(np.uint8),
        },
        {
            **common,
            "dataset": "MNIST (Y. LeCun, C. Cortes, C. J. C. Burges), CC BY-SA 3.0",
            "sources_sha256": sources("mnist", ("train", "t10k")),
            "train": f"{args.train_per_class} per class from the 55,000-image training split "
            "(training images 5,000..59,999)",
            "test": f"{args.test_per_class} per class from the 10,000 test images",
            "train_source_indices": (tr + 5000).tolist(),
            "test_source_indices": te.tolist(),
        },
    )
    ny = notmnist.labels.numpy()
    no = torch.from_numpy(balanced_indices(ny, args.notmnist_per_class, args.seed + 2))
    _save(
        args.out / "notmnist.npz",
        {
            "images": notmnist.images[no].numpy(),
            "labels": notmnist.labels[no].numpy().astype(np.uint8),
        },
        {
            **common,
            "dataset": "notMNIST (Yaroslav Bulatov) in MNIST format "
            "(github.com/davidflanagan/notMNIST-to-MNIST, MIT)",
            "sources_sha256": sources("notmnist", ("t10k",)),
            "images": f"{args.notmnist_per_class} per letter from the 10,000 test images",
            "source_indices": no.tolist(),
        },
    )


if __name__ == "__main__":
    main()
