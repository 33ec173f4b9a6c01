"""Batch structures (``bbh.inputs``) and their checks at the boundary (``bbh.validation``)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from bbh import inputs
from bbh.validation import as_input, values_prechecked

LIKE = torch.zeros(1)


def _dict(b: int = 6) -> dict[str, torch.Tensor]:
    return {"tokens": torch.arange(b * 3).reshape(b, 3), "weights": torch.rand(b, 2)}


def test_index_split_cat_keep_rows_together():
    x = _dict()
    idx = torch.tensor([4, 0, 2])
    picked = inputs.index(x, idx)
    assert torch.equal(picked["tokens"], x["tokens"][idx])
    assert torch.equal(picked["weights"], x["weights"][idx])
    parts = inputs.split(x, 4)
    assert [inputs.batch_size(p) for p in parts] == [4, 2]
    whole = inputs.cat(parts)
    assert all(torch.equal(whole[k], x[k]) for k in x)
    thirds = inputs.tensor_split((x["tokens"], x["weights"]), 4)
    assert [inputs.batch_size(p) for p in thirds] == [2, 2, 1, 1]
    assert isinstance(thirds[0], tuple) and torch.equal(thirds[1][0], x["tokens"][2:4])
    rows = inputs.unbind({"a": torch.arange(6).reshape(2, 3)})
    assert [r["a"].tolist() for r in rows] == [[0, 1, 2], [3, 4, 5]]


def test_tensor_fast_path_is_the_tensor_operation():
    x = torch.rand(5, 2)
    assert torch.equal(inputs.index(x, slice(1, 3)), x[1:3])
    assert all(torch.equal(a, b) for a, b in zip(inputs.split(x, 2), x.split(2), strict=True))
    assert inputs.shape_key(x) == (2,)


class _TwoArgs(nn.Module):
    def forward(self, a, b, scale=1.0):
        return a + b


class _OneArg(nn.Module):
    def forward(self, pair):
        return pair[0] - pair[1]


class _OptionalMask(nn.Module):
    def forward(self, tokens, mask=None):
        return tokens if mask is None else tokens * mask


class _Keywords(nn.Module):
    def forward(self, *, tokens, mask):
        return tokens * mask


def test_call_unpacks_tuples_passes_dicts_as_keywords_and_a_tuple_whole_to_one_argument():
    a, b = torch.ones(2, 3), torch.full((2, 3), 2.0)
    assert torch.equal(inputs.call(_TwoArgs(), (a, b)), a + b)
    assert torch.equal(inputs.call(_OneArg(), (a, b)), a - b)  # forward(pair) gets the tuple
    assert torch.equal(inputs.call(_OptionalMask(), (a, b)), a * b)  # room for two: unpacked
    got = inputs.call(_Keywords(), {"tokens": a, "mask": b})
    assert torch.equal(got, a * b)
    assert inputs.call_args(_TwoArgs(), [a, b]) == ((a, b), {})


def test_integer_and_boolean_tensors_pass_unchanged_floats_are_cast():
    tokens = torch.randint(0, 9, (4, 5), dtype=torch.int32)
    assert as_input(tokens, like=LIKE) is tokens  # no cast, no copy
    x = as_input({"t": tokens, "m": tokens > 3, "f": np.ones((4, 2))}, like=LIKE)
    assert x["t"].dtype == torch.int32 and x["m"].dtype == torch.bool
    assert x["f"].dtype == torch.float32  # numpy float64 -> the model's dtype
    out = as_input((torch.ones(4, 1, dtype=torch.float64), tokens), like=LIKE)
    assert isinstance(out, tuple) and out[0].dtype == torch.float32


def test_structure_errors_name_the_tensor():
    x = {"tokens": torch.zeros(32, 5, dtype=torch.long), "mask": torch.ones(31, 5)}
    with pytest.raises(ValueError, match=r"^x\['mask'\] has 31 rows, x\['tokens'\] has 32"):
        as_input(x, like=LIKE)
    with pytest.raises(TypeError, match=r"^x\[1\] must be a torch.Tensor \[B, ...\] .* got list"):
        as_input((torch.ones(2, 1), [1, 2]), like=LIKE)
    with pytest.raises(TypeError, match=r"^x is a dict of inputs.*keys must be str, got 3"):
        as_input({3: torch.ones(2)}, like=LIKE)
    with pytest.raises(TypeError, match=r"^x must be a torch.Tensor \[B, ...\] or a tuple.*empty"):
        as_input((), like=LIKE)
    bad = torch.ones(2, 3)
    bad[1, 2] = float("nan")
    with pytest.raises(ValueError, match=r"^x\['f'\] contains 1 NaN .* example 1\)"):
        as_input({"t": torch.zeros(2, dtype=torch.long), "f": bad}, like=LIKE)
    with values_prechecked():  # value checks skipped, as in fit's steps
        as_input({"t": torch.zeros(2, dtype=torch.long), "f": bad}, like=LIKE)
    with pytest.raises(ValueError, match=r"^x\[0\] must be a non-empty batch"):
        as_input((torch.ones(0, 2),), like=LIKE)
    with pytest.raises(TypeError, match=r"^x must hold real numbers"):
        as_input(torch.ones(2, dtype=torch.complex64), like=LIKE)
