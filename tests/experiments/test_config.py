"""Typed configs: every shipped config loads at both scales; bad ones name file, key and rule."""

from __future__ import annotations

import dataclasses
import json

import pytest

from bbh.experiments.builders import build_net, method_options
from bbh.experiments.config import (
    SCALES,
    ConfigError,
    ExperimentConfig,
    ToyConfig,
    config_from_dict,
    config_hash,
    config_to_dict,
    list_configs,
    load_config,
    parse_override,
    resolved_options,
)
from bbh.experiments.reproduce import budget_notes, experiment_runs
from bbh.methods import METHODS

PAPER_RUNS = ["map", "mc_dropout", "ensemble", "bbb", "mnf", "bbh"] + [
    f"bbh_k{k}_{mode}" for k in (1, 8, 64) for mode in ("aligned", "independent")
]


@pytest.mark.parametrize("name", list_configs())
@pytest.mark.parametrize("scale", SCALES)
def test_every_shipped_config_loads_and_round_trips(name, scale):
    cfg = load_config(name, scale=scale)
    assert cfg.name == name
    again = config_from_dict(config_to_dict(cfg))
    assert again == cfg
    if isinstance(cfg, ExperimentConfig):
        build_net(cfg)  # the net options are valid


@pytest.mark.parametrize("experiment", ["mnist", "cifar5"])
def test_one_config_per_paper_run(experiment):
    runs = [n.split("/")[1] for n in experiment_runs(experiment)]
    # ours beside the paper's: MNIST's BbH on a Bayesian subnetwork (LeNet-5's fc1 a point estimate)
    ours = ["bbh_subnet"] if experiment == "mnist" else []
    assert runs == PAPER_RUNS[:6] + ours + PAPER_RUNS[6:]
    paper = load_config(f"{experiment}/map")
    cpu = load_config(f"{experiment}/map", scale="cpu")
    assert paper.train.epochs == (100 if experiment == "mnist" else 200)
    assert cpu.train.epochs < paper.train.epochs


def test_cpu_scale_report_says_which_budgets_are_shortened():
    names = experiment_runs("mnist")
    cpu = [load_config(n, scale="cpu") for n in names]
    (note,) = budget_notes(names, cpu)
    # the methods compared at equal epochs, the paper's six BbH runs shortened further
    assert "map: epochs 5 (paper: 100)" in note
    assert "bbh_k8_aligned: epochs 2 (paper: 100), batch 1000 (paper: 100)" in note
    assert {c.train.epochs for n, c in zip(names, cpu, strict=True) if "_k" not in n} == {5.0}
    paper = [load_config(n) for n in names]
    assert budget_notes(names, paper) == []


@pytest.mark.parametrize("experiment", ["mnist", "cifar5", "demo"])
def test_recommended_bbh_names_the_method_with_no_options(experiment):
    cfg = load_config(f"{experiment}/bbh")
    assert cfg.method.name == "bbh" and cfg.method.options == {}


@pytest.mark.parametrize("experiment", ["mnist", "cifar5"])
def test_paper_bbh_variants_differ_only_in_noise(experiment):
    variants = [load_config(f"{experiment}/bbh_k{k}_{m}") for k in (1, 8, 64)
                for m in ("aligned", "independent")]  # fmt: skip
    first = variants[0]
    for cfg in variants:
        opts = dict(cfg.method.options)
        assert opts.pop("noise_dim") in (1, 8, 64) and opts.pop("noise") in (
            "aligned",
            "independent",
        )
        assert opts == {"preset": "paper", "generator": "layerwise", "hidden": [64, 256, 512],
                        "kl": "nn_full", "nll": "first", "num_samples": 5,
                        "prior_scale": 1.0}  # fmt: skip
        assert cfg.train == first.train and cfg.data == first.data and cfg.net == first.net
        assert cfg.train.optimizer == "rmsprop" and cfg.train.lr == 1e-4
        assert cfg.train.kl_schedule.kind == "annealing"
    assert len({(c.method.options["noise_dim"], c.method.options["noise"]) for c in variants}) == 6


def test_toy_config():
    cfg = load_config("toy/toy", scale="cpu")
    assert isinstance(cfg, ToyConfig) and cfg.reference == "gp" and cfg.methods == ("all",)
    assert load_config("toy/toy", scale="paper").reference == "hmc"


def test_overrides_are_typed_and_checked():
    cfg = load_config(
        "mnist/bbh_k8_aligned",
        scale="cpu",
        overrides=[
            "method.options.noise_dim=64",
            "train.lr=3e-4",
            "eval.attacks.epsilons=[0, 0.1]",
        ],
    )
    assert cfg.method.options["noise_dim"] == 64 and cfg.method.options["noise"] == "aligned"
    assert cfg.train.lr == 3e-4 and cfg.eval.attacks.epsilons == (0.0, 0.1)
    assert parse_override("data.root=../shared/data") == {"data": {"root": "../shared/data"}}
    with pytest.raises(ConfigError, match=r"expected key\.path=value"):
        parse_override("train.epochs")
    with pytest.raises(ConfigError, match=r"\(with --set\): train\.epochs: expected a number"):
        load_config("mnist/map", overrides=["train.epochs=many"])


def test_a_label_names_what_set_changed_in_the_method():
    shipped = load_config("mnist/bbh", scale="cpu")
    assert shipped.display_name == "BbH (recommended)"
    changed = load_config(
        "mnist/bbh",
        scale="cpu",
        overrides=["method.options.generator=kronecker", "train.lr=3e-4"],
    )
    assert changed.display_name == "BbH (recommended) [--set method.options.generator=kronecker]"
    # the net, schedule, data and evaluation do not change the method the label names
    same = load_config(
        "mnist/bbh",
        scale="cpu",
        overrides=["net.options.num_classes=10", "train.epochs=1", "data.root=/d"],
    )
    assert same.display_name == "BbH (recommended)"
    # the user's own label wins
    own = load_config(
        "mnist/bbh", scale="cpu", overrides=["method.options.kl=sivi", "label='mine'"]
    )
    assert own.display_name == "mine"


def _write(tmp_path, text):
    path = tmp_path / "run.toml"
    path.write_text(text)
    return path


BASE = '[data]\nname = "embedded-mnist"\n[net]\nname = "mlp"\noptions = { in_features = 784, hidden = [4], out_features = 10 }\n[method]\nname = "map"\n'  # noqa: E501


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ("[train]\nepochz = 3\n", "train.epochz: unknown key; allowed in train: ["),
        ("[train]\nepochs = 'three'\n", "train.epochs: expected a number, got 'three'"),
        ("[train]\nbatch_size = 2.5\n", "train.batch_size: expected an integer, got 2.5"),
        ("[train]\nbatch_size = 0\n", "train.batch_size: 0 must be >= 1"),
        ("[train]\nepochs = 0\n", "train.epochs: 0.0 must be > 0"),
        ("[train]\noptimizer = 'sgd'\n", "train.optimizer: 'sgd' is not allowed; allowed: ("),
        ("[train.kl_schedule]\nkind = 'cosine'\n", "train.kl_schedule.kind: 'cosine' is not"),
        ("[eval.attacks]\nepsilons = 0.1\n", "eval.attacks.epsilons: expected a list"),
        ("[eval]\nstudies = 'yes'\n", "eval.studies: expected true or false"),
        ("[colour]\nred = 1\n", "colour: unknown key; allowed in top level"),
    ],
)
def test_bad_values_name_file_key_and_rule(tmp_path, extra, message):
    path = _write(tmp_path, BASE + extra)
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert str(err.value).startswith(f"{path}: ") and message in str(err.value)


def test_bad_names_and_options(tmp_path):
    with pytest.raises(ConfigError, match=r"method.name: unknown method 'bayes'; allowed: \["):
        load_config(_write(tmp_path, BASE.replace('name = "map"', 'name = "bayes"')))
    text = BASE.replace('name = "map"', 'name = "map"\noptions = { weight_decayy = "paper" }')
    with pytest.raises(
        ConfigError, match=r"method.options: unknown option\(s\) \['weight_decayy'\]"
    ):
        load_config(_write(tmp_path, text))
    with pytest.raises(ConfigError, match=r"data\.name: 'imagenet' is not allowed"):
        load_config(_write(tmp_path, BASE.replace("embedded-mnist", "imagenet")))
    with pytest.raises(ConfigError, match=r"net\.name: unknown net 'vgg'"):
        load_config(_write(tmp_path, BASE.replace('name = "mlp"', 'name = "vgg"')))
    with pytest.raises(ConfigError, match="method: missing"):
        load_config(_write(tmp_path, BASE.split("[method]")[0]))


def test_a_folder_named_like_a_shipped_config_does_not_hide_it(tmp_path, monkeypatch):
    # `bbh demo --out demo` run folders sit at demo/map, ...; the reports read demo/map's config
    (tmp_path / "demo" / "map").mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    assert load_config("demo/map", scale="cpu").name == load_config("demo/map").name


def test_missing_malformed_and_cyclic_files(tmp_path):
    with pytest.raises(ConfigError, match="no such config file"):
        load_config(tmp_path / "nope.toml")
    with pytest.raises(ConfigError, match="unknown config 'mnist/nope'"):
        load_config("mnist/nope")
    with pytest.raises(ConfigError, match="malformed TOML"):
        load_config(_write(tmp_path, "[data\nname = 1"))
    a, b = tmp_path / "a.toml", tmp_path / "b.toml"
    a.write_text('extends = "b.toml"\n')
    b.write_text('extends = "a.toml"\n')
    with pytest.raises(ConfigError, match="cycle"):
        load_config(a)
    with pytest.raises(ConfigError, match="unknown scale 'gpu'"):
        load_config("mnist/map", scale="gpu")


def test_hash_follows_training_not_bookkeeping():
    cfg = load_config("mnist/map", scale="cpu")
    h = config_hash(cfg, method_options(cfg))
    same = dataclasses.replace(
        cfg,
        label="other",
        data=dataclasses.replace(cfg.data, root="/elsewhere"),
        train=dataclasses.replace(cfg.train, device="cuda", log_every=7, checkpoint_every=9),
        eval=dataclasses.replace(cfg.eval, num_samples=3),
    )
    assert config_hash(same, method_options(same)) == h
    changed = dataclasses.replace(cfg, seed=1)
    assert config_hash(changed, method_options(changed)) != h


def test_validation_draws_count_where_they_choose_the_temperature():
    """``train.val_samples`` scores the validation predictive: only bookkeeping for a method
    with a fixed temperature, but it can change the temperature a search chooses, and so the
    weights. Away from its default it then makes another run; at it, earlier runs stay current."""
    cfg = load_config("mnist/bbh", scale="cpu")
    resolved = resolved_options(METHODS["bbh"], {})
    assert resolved["temperature"] == "validation"
    more = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, val_samples=40))
    assert config_hash(more, resolved) != config_hash(cfg, resolved)
    fixed = {**resolved, "temperature": 0.01}
    assert config_hash(more, fixed) == config_hash(cfg, fixed)
    plain = load_config("mnist/map", scale="cpu")
    other = dataclasses.replace(plain, train=dataclasses.replace(plain.train, val_samples=40))
    assert config_hash(other, method_options(other)) == config_hash(plain, method_options(plain))


def test_search_patience_counts_where_a_search_runs_and_patience_1_is_the_old_walk(monkeypatch):
    """``train.temperature_patience`` changes which candidates a search trains and so the
    weights: in the hash of a searching method, away from 1 (the walk of runs trained before
    it existed: they hash as before, without the key); never in a fixed-temperature run's."""
    from bbh.training.temperature import TEMPERATURE_PATIENCE

    cfg = load_config("mnist/bbh", scale="cpu")
    assert cfg.train.temperature_patience == TEMPERATURE_PATIENCE == 2
    resolved = resolved_options(METHODS["bbh"], {})

    def with_patience(p):
        return dataclasses.replace(
            cfg, train=dataclasses.replace(cfg.train, temperature_patience=p)
        )

    hashes = {p: config_hash(with_patience(p), resolved) for p in (1, 2, 3)}
    assert len(set(hashes.values())) == 3
    # the code before the option knew no such key: its hash is patience 1's
    import bbh.experiments.config as config_module

    def without_the_key(c):
        d = config_to_dict(c)
        del d["train"]["temperature_patience"]
        return d

    monkeypatch.setattr(config_module, "config_to_dict", without_the_key)
    assert config_hash(cfg, resolved) == hashes[1]
    monkeypatch.undo()
    fixed = {**resolved, "temperature": 0.01}
    assert config_hash(with_patience(1), fixed) == config_hash(with_patience(3), fixed)
    with pytest.raises(ConfigError, match="temperature_patience"):
        load_config("mnist/bbh", overrides=["train.temperature_patience=0"])


def test_a_warm_up_counts_in_the_hash_and_must_be_a_fraction():
    cfg = load_config("mnist/map", scale="cpu")
    warm = load_config("mnist/map", scale="cpu", overrides=["train.lr_warmup=0.1"])
    assert warm.train.lr_warmup == 0.1
    assert config_hash(warm, method_options(warm)) != config_hash(cfg, method_options(cfg))
    for bad, message in (("1.0", "must be < 1"), ("-0.5", "must be >= 0")):
        with pytest.raises(ConfigError, match=f"train.lr_warmup: .*{message}"):
            load_config("mnist/map", scale="cpu", overrides=[f"train.lr_warmup={bad}"])


def test_a_change_of_method_defaults_changes_the_hash():
    """The recommended BbH config names no options; its hash must follow BbH's defaults."""
    cfg = load_config("mnist/bbh")
    resolved = resolved_options(METHODS["bbh"], {})
    assert resolved["noise_dim"] == method_options(cfg)["noise_dim"]
    other = {**resolved, "kl": "something-new"}
    assert config_hash(cfg, resolved) != config_hash(cfg, other)


def test_an_option_added_at_its_neutral_value_keeps_earlier_runs_current():
    """BbH's ``deterministic`` came after runs were trained: at ``[]`` it trains as before, so
    the hash leaves it out there (a finished run is not retrained); any other value counts.
    BbB, which always had the option, keeps it in its hash."""
    cfg = load_config("mnist/bbh")
    resolved = resolved_options(METHODS["bbh"], {})
    assert resolved["deterministic"] == []
    without = {k: v for k, v in resolved.items() if k != "deterministic"}
    assert config_hash(cfg, resolved) == config_hash(cfg, without)
    subnet = {**resolved, "deterministic": ["fc1"]}
    assert config_hash(cfg, subnet) != config_hash(cfg, resolved)
    # sigma_rate was neutral at 1e-3 until the recommended model changed (fan-in prior,
    # temperature, 3e-2): a run of the old model is no longer current
    assert resolved["sigma_rate"] == 3e-2 and resolved["temperature"] == "validation"
    assert config_hash(cfg, {**resolved, "sigma_rate": 1e-3}) != config_hash(cfg, resolved)
    bbb = load_config("mnist/bbb")
    bbb_resolved = resolved_options(METHODS["bbb"], {})
    bbb_without = {k: v for k, v in bbb_resolved.items() if k != "deterministic"}
    assert config_hash(bbb, bbb_resolved) != config_hash(bbb, bbb_without)


def test_bbh_run_records_the_options_its_preset_puts_in_force():
    rec = resolved_options(METHODS["bbh"], {})
    assert rec["preset"] == "recommended" and rec["kl"] == "jacobian"
    assert rec["weight_noise"] == 0.01 and rec["generator"] == "chunked"
    paper = resolved_options(METHODS["bbh"], {"preset": "paper", "noise_dim": 1})
    assert paper["kl"] == "nn_full" and paper["weight_noise"] is None and paper["noise_dim"] == 1
    json.dumps(rec), json.dumps(paper)  # what the run folder stores
