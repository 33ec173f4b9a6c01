"""The names every user reaches for are at the top level, and the examples in the docstrings of
the calls every user makes (``Method.loss``, ``predict_logits``, ``predict``) run as written."""

from __future__ import annotations

import doctest
import inspect

import pytest

import bbh
import bbh.training
from bbh.methods.base import Method


def test_fit_and_fit_result_are_exported_at_the_top_level() -> None:
    from bbh import FitResult, fit

    assert fit is bbh.fit is bbh.training.fit
    assert FitResult is bbh.FitResult is bbh.training.FitResult
    assert {"fit", "FitResult"} <= set(bbh.__all__)
    for name in bbh.__all__:
        assert hasattr(bbh, name), name


@pytest.mark.parametrize("name", ["loss", "predict_logits", "predict"])
def test_method_docstring_has_args_returns_raises_and_a_working_example(name: str) -> None:
    doc = getattr(Method, name).__doc__
    assert doc is not None
    for section in ("Args:", "Returns:", "Raises:", "Example:"):
        assert section in doc, f"Method.{name} has no {section} section"
    finder = doctest.DocTestFinder(recurse=False)
    (test,) = finder.find(getattr(Method, name), f"Method.{name}", globs={})
    assert test.examples, f"Method.{name}'s example has no doctest lines"
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    result = runner.run(test)
    assert result.failed == 0, f"Method.{name}'s example failed"


def test_a_method_without_its_own_loss_docstring_shows_the_base_one() -> None:
    from bbh.methods import MAP

    assert MAP.loss.__doc__ is None  # else this test checks nothing
    assert inspect.getdoc(MAP.loss) == inspect.getdoc(Method.loss)


def test_bayes_by_hypernet_signature_shows_every_default() -> None:
    """Each option's default is a plain value (a number, string, enum member, tuple or None),
    never a private marker filled in later; the paper's setting is a constructor of its own,
    and the class file stays small enough to read (its parts live in their own modules)."""
    from enum import Enum
    from pathlib import Path

    from bbh.methods import bbh as bbh_module
    from bbh.methods.bbh_options import AUTO, FLAT_OPTIONS, INIT_SIGMA, PAPER, SIGMA_RATE

    plain = (str, int, float, bool, tuple, Enum, type(None))
    params = inspect.signature(bbh.BayesByHypernet).parameters
    for name, p in params.items():
        if name == "net" or p.kind is p.VAR_KEYWORD:  # ``**flat``: the configs' flat names
            continue
        assert p.default is not p.empty, name
        assert isinstance(p.default, plain), (name, p.default)
    assert "preset" not in params and set(PAPER) <= set(params) | set(FLAT_OPTIONS)
    assert params["sigma_rate"].default == SIGMA_RATE and params["generator"].default == AUTO
    assert params["init_sigma"].default == INIT_SIGMA
    # the generator's and the KL's options are objects of their own, not top-level arguments
    assert not {"hidden", "noise_dim", "noise", "chunk_size", "jacobian_chunks"} & set(params)
    model = bbh.BayesByHypernet.paper(bbh.nets.MLP(4, [8], 3))
    assert model.resolved_options["generator"] == "layerwise" and model.num_samples == 5
    assert len(Path(bbh_module.__file__).read_text().splitlines()) < 500
