"""Bayes by Hypernet against MAP on a small text classifier (nn.Embedding + nn.LSTM).

Data: the docstrings of the Python standard library that runs this script, labelled by the
family of the module they come from (text, numbers, files, network, concurrency, data formats;
``FAMILIES`` lists the modules). Each public function, class and method with a docstring of at
least five words is one example, its text the docstring. The data are real prose written by
people, need no download and are built the same way on every machine (the counts vary a little
between Python versions).

Why it is a fair test (no label leak): qualified names such as ``threading.settrace`` lose the
module part before tokenising, so no text names its module by reference (words that are also
module names, such as "string", "path" or "socket", stay: they are the topic, as in any text);
a docstring shared by modules of different families (inherited methods) is dropped, and one
repeated within a family kept once. Each family's examples are split 60% training, 20%
validation, 20% test by *owner*, a module-level function or a class with all its methods, so
the methods of one class, whose docstrings resemble each other, never straddle the split. The
vocabulary comes from the training split alone (words seen twice or more; the rest map to an
unknown id).

Tokens are lower-case words, int64 ids ``[B, L]`` padded with 0 to ``L = 48``, passed to
``loss`` and ``predict`` as they are; the LSTM runs in ``bbh``'s loop over weight samples (it has
no vmap rule). BbH chooses its KL temperature on the validation split. Printed for each method:
test accuracy, NLL and ECE, beside the trivial predictor (the training split's class
frequencies).

Bayes by Hypernet: Pawlowski et al. 2017, "Implicit Weight Uncertainty in Neural Networks",
arXiv 1711.01297.

Run: ``python examples/text_classifier.py [--seed 0] [--quick]``.
"""

from __future__ import annotations

import argparse
import collections
import importlib
import inspect
import re
import warnings

import torch
from torch import Tensor, nn

from _common import compare_classifiers

FAMILIES: dict[str, tuple[str, ...]] = {
    "text": ("string", "re", "textwrap", "difflib", "unicodedata", "codecs", "html.parser",
             "gettext", "locale", "shlex", "stringprep"),
    "numbers": ("math", "cmath", "statistics", "decimal", "fractions", "random", "operator",
                "numbers"),
    "files": ("os", "os.path", "shutil", "pathlib", "glob", "tempfile", "filecmp", "io",
              "fileinput", "fnmatch", "stat"),
    "network": ("socket", "ssl", "http.client", "http.server", "urllib.request", "smtplib",
                "ftplib", "imaplib", "poplib", "email.message", "ipaddress"),
    "concurrency": ("threading", "multiprocessing.pool", "concurrent.futures", "asyncio",
                    "queue", "subprocess", "sched", "selectors"),
    "formats": ("json", "csv", "pickle", "zipfile", "tarfile", "gzip", "lzma", "configparser",
                "xml.etree.ElementTree", "plistlib", "base64", "struct"),
}  # fmt: skip
MAX_LEN = 48  # tokens per docstring (longer ones are cut)
PAD, UNK = 0, 1


def stdlib_docstrings() -> list[tuple[str, int, str]]:
    """``(text, label, owner)`` for every public documented object of ``FAMILIES``' modules."""
    modules = sorted((m for names in FAMILIES.values() for m in names), key=len, reverse=True)
    qualified = re.compile(r"\b(?:" + "|".join(map(re.escape, modules)) + r")\.")  # longest first
    seen: dict[str, set[int]] = collections.defaultdict(set)
    owner_of: dict[str, str] = {}
    for label, names in enumerate(FAMILIES.values()):
        for module_name in names:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)
                module = importlib.import_module(module_name)
            for owner, obj in _public_objects(module):
                doc = inspect.getdoc(obj)
                if doc and len(doc.split()) >= 5:
                    text = qualified.sub("", doc)
                    seen[text].add(label)
                    owner_of.setdefault(text, f"{module_name}:{owner}")
    return [(t, labels.pop(), owner_of[t]) for t, labels in seen.items() if len(labels) == 1]


def _public_objects(module: object) -> list[tuple[str, object]]:
    """``(owner, object)``: public functions and classes defined in ``module``, and the public
    methods of those classes (their owner the class)."""
    found = []
    top = module.__name__.split(".")[0]  # type: ignore[attr-defined]
    for name, obj in vars(module).items():
        if name.startswith("_") or not str(getattr(obj, "__module__", "")).startswith(top):
            continue
        if inspect.isclass(obj):
            found.append((name, obj))
            found += [(name, m) for n, m in vars(obj).items() if not n.startswith("_")]
        elif callable(obj):
            found.append((name, obj))
    return found


def tokenize(text: str) -> list[str]:
    return re.findall(r"[a-z]+", text.lower())


def encode(texts: list[list[str]], vocab: dict[str, int]) -> Tensor:
    """Token ids ``[N, MAX_LEN]`` int64, padded with ``PAD``."""
    ids = torch.full((len(texts), MAX_LEN), PAD, dtype=torch.int64)
    for i, words in enumerate(texts):
        row = [vocab.get(w, UNK) for w in words[:MAX_LEN]]
        ids[i, : len(row)] = torch.tensor(row, dtype=torch.int64)
    return ids


def load_splits(seed: int) -> tuple[dict[str, tuple[Tensor, Tensor]], int]:
    """Train / validation / test ``(ids [N, MAX_LEN] int64, labels [N])``, split by owner within
    each family (so every split has the families' proportions); and the vocabulary size."""
    data = stdlib_docstrings()
    generator = torch.Generator().manual_seed(seed)
    split_of: dict[str, str] = {}
    for label in range(len(FAMILIES)):
        size = collections.Counter(owner for _, lab, owner in data if lab == label)
        owners, taken = sorted(size), 0
        for j in torch.randperm(len(owners), generator=generator).tolist():
            share = taken / sum(size.values())  # owners fill 60% of the family, 20%, the rest
            split_of[owners[j]] = "train" if share < 0.6 else "val" if share < 0.8 else "test"
            taken += size[owners[j]]
    parts: dict[str, list[tuple[list[str], int]]] = {"train": [], "val": [], "test": []}
    for text, label, owner in data:
        parts[split_of[owner]].append((tokenize(text), label))
    counts = collections.Counter(w for words, _ in parts["train"] for w in words)
    vocab = {w: i + 2 for i, w in enumerate(sorted(w for w, c in counts.items() if c >= 2))}
    splits = {
        k: (encode([w for w, _ in rows], vocab), torch.tensor([lab for _, lab in rows]))
        for k, rows in parts.items()
    }
    return splits, len(vocab) + 2


class LSTMClassifier(nn.Module):
    """Token ids ``[B, L]`` -> class logits ``[B, C]``: embedding, one LSTM layer, the mean of
    its outputs over the non-padding positions, a linear read-out."""

    def __init__(self, vocab_size: int, num_classes: int, dim: int = 32, hidden: int = 32):
        super().__init__()
        self.embed = nn.Embedding(vocab_size, dim, padding_idx=PAD)
        self.lstm = nn.LSTM(dim, hidden, batch_first=True)
        self.out = nn.Linear(hidden, num_classes)

    def forward(self, tokens: Tensor) -> Tensor:
        states, _ = self.lstm(self.embed(tokens))  # [B, L, hidden]
        mask = (tokens != PAD).unsqueeze(-1).to(states.dtype)
        pooled = (states * mask).sum(1) / mask.sum(1).clamp(min=1.0)
        return self.out(pooled)


def main(argv: list[str] | None = None) -> dict[str, dict[str, float]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0, help="split, initialisation and noise")
    parser.add_argument("--steps", type=int, default=600, help="training steps per method")
    parser.add_argument(
        "--quick", action="store_true", help="200 steps, BbH at a fixed KL temperature: a smoke run"
    )
    args = parser.parse_args(argv)
    steps = 200 if args.quick else args.steps
    torch.set_num_threads(1)
    torch.manual_seed(args.seed)
    splits, vocab_size = load_splits(args.seed)
    (x, y), val, (test_x, test_y) = splits["train"], splits["val"], splits["test"]
    num_classes = len(FAMILIES)
    sizes = ", ".join(f"{len(v[1])} {k}" for k, v in splits.items())
    print(f"stdlib docstrings, {num_classes} module families: {sizes}; vocabulary {vocab_size}")

    return compare_classifiers(
        lambda: LSTMClassifier(vocab_size, num_classes),
        (x, y),
        val,
        (test_x, test_y),
        num_classes=num_classes,
        steps=steps,
        seed=args.seed,
        quick=args.quick,
        num_samples=50,
    )


if __name__ == "__main__":
    main()
