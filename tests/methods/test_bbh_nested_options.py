"""BbH's generator and KL options as objects of their own (``GeneratorOptions``, ``KLOptions``),
each checked where it is made, and their flat spellings (run configs, records, older code)."""

import pytest
import torch
from torch import nn

import bbh
from bbh.divergences.options import KLOptions
from bbh.experiments.config import ConfigError, check_options, resolved_options
from bbh.hypernets.options import GeneratorOptions
from bbh.methods import BayesByHypernet
from bbh.methods.registry import METHODS


def tiny_net() -> nn.Module:
    return nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 3))


def built(**options) -> BayesByHypernet:
    torch.manual_seed(0)
    return BayesByHypernet(tiny_net(), temperature=1.0, **options)


def same_state(a: nn.Module, b: nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.mark.parametrize(
    ("fields", "match"),
    [
        ({"name": "big"}, "unknown generator 'big'"),
        ({"noise_dim": 0}, "noise_dim must be an int >= 1"),
        ({"noise_dim": True}, "noise_dim must be an int >= 1"),
        ({"hidden": "wide"}, "hidden must be a sequence of ints"),
        ({"hidden": (8, 0)}, "hidden's sizes must be an int >= 1"),
        ({"noise_sharing": "shared"}, "unknown noise_sharing 'shared'"),
        ({"num_chunks": "many"}, "num_chunks must be an int >= 1 or None or 'auto'"),
        ({"embedding_dim": 0}, "embedding_dim must be an int >= 1"),
        ({"noise_mixing": 1}, "noise_mixing must be a bool"),
        ({"name": "layerwise", "chunk_size": 4}, "apply only to generator='chunked'"),
        ({"name": "affine", "hidden": (8,)}, "'affine' has no hidden layers"),
    ],
)
def test_generator_options_refuse_bad_values_when_made(fields, match):
    with pytest.raises(ValueError, match=match):
        GeneratorOptions(**fields)


@pytest.mark.parametrize(
    ("fields", "match"),
    [
        ({"name": "kde"}, "unknown kl estimator 'kde'"),
        ({"jacobian_samples": 0}, "jacobian_samples must be an int >= 1"),
        ({"jacobian_chunks": 0}, "jacobian_chunks must be an int >= 1"),
        ({"jacobian_chunks": "some"}, "jacobian_chunks must be an int >= 1"),
        ({"name": "nn_full", "jacobian_samples": 2}, "apply only to kl='jacobian'"),
    ],
)
def test_kl_options_refuse_bad_values_when_made(fields, match):
    with pytest.raises(ValueError, match=match):
        KLOptions(**fields)


def test_objects_names_mappings_and_flat_keywords_build_the_same_model():
    """``generator=GeneratorOptions(...)``, the same as a config's table, and the flat keywords
    that configs and older code write give the same posterior, options and record."""
    nested = built(
        generator=GeneratorOptions("chunked", hidden=(8,), noise_dim=4, num_chunks="auto"),
        kl=KLOptions("jacobian", jacobian_samples=2),
        init_sigma=0.02,
    )
    table = built(
        generator={"name": "chunked", "hidden": [8], "noise_dim": 4, "num_chunks": "auto"},
        kl={"jacobian_samples": 2},
        init_sigma=0.02,
    )
    flat = built(
        generator="chunked", hidden=(8,), noise_dim=4, num_chunks="auto",
        jacobian_samples=2, weight_noise=0.02,
    )  # fmt: skip
    assert same_state(nested, table) and same_state(nested, flat)
    assert nested.resolved_options == table.resolved_options == flat.resolved_options
    assert nested.resolved_options["hidden"] == (8,)
    assert nested.resolved_options["weight_noise"] == 0.02  # records keep the old name
    assert nested.kl_estimator.jacobian_samples == 2
    assert nested.generator_options == flat.generator_options
    assert nested.kl_options == KLOptions(jacobian_samples=2)


def test_flat_keywords_go_on_top_of_the_objects_and_unknown_ones_are_refused():
    model = built(generator=GeneratorOptions("chunked", hidden=(16,)), hidden=(8,))
    assert model.resolved_options["hidden"] == (8,)
    with pytest.raises(TypeError, match=r"unexpected option\(s\) \['hiden'\]"):
        built(hiden=(8,))
    with pytest.raises(ValueError, match="unknown generator option"):
        built(generator={"name": "chunked", "width": 8})
    with pytest.raises(ValueError, match="disagree"):
        built(init_sigma=0.05, weight_noise=0.02)
    with pytest.raises(ValueError, match="'affine' has no hidden layers"):
        built(generator="affine", hidden=(8,))  # checked by the generator's options


def test_the_paper_preset_merges_nested_options_by_field():
    """A name alone replaces only the preset's generator name; an object replaces all its
    generator options (as ``bbh.build(..., preset="paper")`` and run configs merge them)."""
    net = tiny_net()
    by_name = BayesByHypernet.paper(net, generator="chunked")
    assert by_name.resolved_options["hidden"] == (64, 256, 512)  # the paper's, kept
    by_object = BayesByHypernet.paper(net, generator=GeneratorOptions("chunked", hidden=(8,)))
    assert by_object.resolved_options["hidden"] == (8,)
    assert by_object.resolved_options["noise_mixing"] is True  # the object's default
    built_ = bbh.build("bbh", net, preset="paper", init_sigma=0.02, kl="jacobian")
    assert built_.resolved_options["weight_noise"] == 0.02
    assert built_.resolved_options["kl"] == "jacobian"


def test_a_config_has_one_hash_however_it_spells_the_options():
    """The record a run hashes is the same for flat keys, a table of nested options and the
    objects, and keeps the names records have always used."""
    factory = METHODS["bbh"]
    flat = {"hidden": [32], "num_chunks": "auto", "jacobian_samples": 2, "weight_noise": 0.02}
    table = {
        "generator": {"hidden": [32], "num_chunks": "auto"},
        "kl": {"jacobian_samples": 2},
        "init_sigma": 0.02,
    }
    objects = {
        "generator": GeneratorOptions(hidden=(32,), num_chunks="auto"),
        "kl": KLOptions(jacobian_samples=2),
        "init_sigma": 0.02,
    }
    records = [resolved_options(factory, o) for o in (flat, table, objects)]
    assert records[0] == records[1] == records[2]
    assert "init_sigma" not in records[0] and records[0]["weight_noise"] == 0.02
    assert records[0]["generator"] == "chunked" and records[0]["num_chunks"] == "auto"
    check_options(factory, table, "method.options", "test")  # the flat and nested names pass
    check_options(factory, flat, "method.options", "test")
    with pytest.raises(ConfigError, match=r"unknown option\(s\) \['hiden'\]"):
        check_options(factory, {"hiden": [32]}, "method.options", "test")
    with pytest.raises(ValueError, match=r"unknown option\(s\) \['hiden'\]"):
        bbh.build("bbh", tiny_net(), hiden=(8,))


def test_a_saved_flat_run_loads_into_a_model_built_with_objects():
    """A state saved by a model built with the flat names (older runs) loads into one built
    with the objects, and ``options_for_state_dict`` reads nested options too."""
    old = built(hidden=(8,), weight_noise=0.02)
    options = BayesByHypernet.options_for_state_dict(
        {"generator": {"hidden": [8]}, "init_sigma": 0.02}, old.state_dict()
    )
    new = BayesByHypernet(tiny_net(), temperature=1.0, **options)
    shapes = {k: v.shape for k, v in new.state_dict().items()}  # the same structure, built anew
    assert shapes == {k: v.shape for k, v in old.state_dict().items()}
    assert not same_state(old, new)  # fresh parameters, until the saved ones load
    result = new.load_state_dict(old.state_dict())
    assert not result.missing_keys and not result.unexpected_keys
    assert same_state(old, new)


def test_a_run_config_may_write_the_generator_as_a_table():
    """``method.options.generator = {name = ..., hidden = [...]}`` and ``init_sigma`` in a run
    config give the run hash of the flat spelling (the shipped configs' form)."""
    from bbh.experiments.builders import method_options
    from bbh.experiments.config import config_hash, load_config

    nested = load_config(
        "demo/bbh",
        overrides=['method.options.generator={name="chunked", hidden=[8]}',
                   "method.options.init_sigma=0.02"],
    )  # fmt: skip
    flat = load_config(
        "demo/bbh",
        overrides=['method.options.generator="chunked"', "method.options.hidden=[8]",
                   "method.options.weight_noise=0.02"],
    )  # fmt: skip
    assert config_hash(nested, method_options(nested)) == config_hash(flat, method_options(flat))
    model = bbh.build("bbh", tiny_net(), **nested.method.options)
    assert model.resolved_options["hidden"] == (8,)
    assert model.resolved_options["weight_noise"] == 0.02
