"""Typed experiment configs: TOML files loaded into frozen dataclasses, strictly checked.

A config describes one training run (data, net, method, optimiser, schedule, evaluation). The
paper's runs ship inside the package (``bbh/configs/<experiment>/<run>.toml``; ``bbh configs``
lists them). A file may start from another with ``extends = "_base.toml"`` (a path relative to
it; tables are merged key by key) and carries its two scales as override tables:

    [scale.paper]          # the paper's budget (a GPU)
    train.epochs = 100
    [scale.cpu]            # sized for a 2-core CPU
    train.epochs = 2

``load_config(name, scale=..., overrides=["method.options.noise_dim=64"])`` merges base, file,
scale table and ``--set`` overrides, then checks every key and value: an unknown key, a wrong type
or an impossible value raises ``ConfigError`` naming the file, the dotted key and what is
allowed, before anything runs.
"""

from __future__ import annotations

import dataclasses
import hashlib
import inspect
import json
import math
import sys
import types
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Union, get_args, get_origin, get_type_hints

SCALES = ("paper", "cpu")
#: the user's own data: files (``data.train``/``data.test``) or a function (``data.source``)
OWN_DATA = ("files", "callable")
DATASETS = ("mnist", "cifar5", "embedded-mnist", *OWN_DATA)
TASKS = ("classification", "regression")
IMAGE_MODES = ("RGB", "L")
#: the ``[data]`` keys that hold paths (resolved against the config file's folder)
DATA_PATH_KEYS = ("train", "test", "train_targets", "test_targets")
#: the ``[data]`` keys of the user's own data (left out of the hash of a shipped set's run)
OWN_DATA_KEYS = (
    *DATA_PATH_KEYS,
    "source",
    "x_key",
    "y_key",
    "columns",
    "target",
    "image_mode",
    "task",
    "test_size",
)
OOD_SETS = ("notmnist", "cifar5-ood", "embedded-notmnist")
OPTIMIZERS = ("adam", "rmsprop")
KL_SCHEDULES = ("constant", "annealing")
LR_SCHEDULES = ("constant", "cosine", "cooldown")  # = bbh.training.schedules.LR_SCHEDULES (tested)
AUGMENTATIONS = ("none", "cifar")
DEVICES = ("cpu", "cuda", "auto")
TOY_SETTINGS = ("ours", "paper")
TOY_REFERENCES = ("gp", "hmc", "none")
DIST_BACKENDS = ("auto", "gloo", "nccl")


class ConfigError(ValueError):
    """A config that cannot run: names the file (or ``--set``), the dotted key and the problem."""


def _choices(*values: str) -> dict[str, Any]:
    return {"choices": values}


# ------------------------------------------------------------------------------ the schema


@dataclass(frozen=True)
class DataConfig:
    """Which data set; ``root`` None means ``$BBH_DATA`` or the user cache (``bbh.data``).

    ``name = "files"`` reads the user's own files and ``name = "callable"`` calls the user's
    function (``docs/own_data.md``); the keys after ``augment`` apply to them only. Relative
    paths are resolved against the folder of the config file that sets them (``--set``: the
    working directory)."""

    name: str = field(metadata=_choices(*DATASETS))
    root: str | None = None
    #: training images held out for per-epoch validation (MNIST: the paper's first 5,000)
    validation_size: int = field(default=0, metadata={"min": 0})
    #: None: the paper's split (MNIST: the first images; CIFAR-5, which had none: a random split
    #: with seed 0); an int: a random split with this seed
    validation_seed: int | None = None
    #: the out-of-distribution set for evaluation (None: none)
    ood: str | None = field(default=None, metadata=_choices(*OOD_SETS))
    #: training-time augmentation of each batch (``cifar``: the paper's crop/flip/colour jitter)
    augment: str = field(default="none", metadata=_choices(*AUGMENTATIONS))
    #: files: the training data (``.npz``, ``.npy``, ``.csv`` or an image folder) and the test data
    train: str | None = None
    test: str | None = None
    #: files: the ``.npy`` of the targets when ``train`` / ``test`` is a ``.npy`` of inputs
    train_targets: str | None = None
    test_targets: str | None = None
    #: files: the arrays of a ``.npz``
    x_key: str = "x"
    y_key: str = "y"
    #: files: a CSV's feature columns (empty: every column but ``target``) and its target column
    columns: tuple[str, ...] = ()
    target: str | None = None
    #: files: how an image folder's images are read (``L``: grayscale)
    image_mode: str = field(default="RGB", metadata=_choices(*IMAGE_MODES))
    #: callable: ``"package.module:function"`` (from ``sys.path``) or ``"file.py:function"``
    source: str | None = None
    #: own data: integer class labels, or real-valued targets (needs a gaussian likelihood)
    task: str = field(default="classification", metadata=_choices(*TASKS))
    #: own data without a test split: training examples held out as the test set
    test_size: int = field(default=0, metadata={"min": 0})


@dataclass(frozen=True)
class NetConfig:
    """The primary network: a name from ``bbh.nets.NETS`` and its options."""

    name: str
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class MethodConfig:
    """A method of the registry (``bbh.build(name, net, **options)``) and its options."""

    name: str
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class KLScheduleConfig:
    """``constant`` (weight ``value``) or the paper's ``annealing`` (0 until ``start_epochs``, then
    a linear ramp to 1 over ``length_epochs``); epochs may be fractional."""

    kind: str = field(default="constant", metadata=_choices(*KL_SCHEDULES))
    value: float = field(default=1.0, metadata={"min": 0.0})
    start_epochs: float = field(default=0.0, metadata={"min": 0.0})
    length_epochs: float = field(default=0.0, metadata={"min": 0.0})


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation. ``lr`` None: the method's ``default_lr``. ``steps`` (if set) overrides
    ``epochs``; ``num_data`` is N in ``KL / N`` (None: the training-set size)."""

    epochs: float = field(default=1.0, metadata={"gt": 0.0})
    steps: int | None = field(default=None, metadata={"min": 1})
    batch_size: int = field(default=100, metadata={"min": 1})
    optimizer: str = field(default="adam", metadata=_choices(*OPTIMIZERS))
    lr: float | None = field(default=None, metadata={"gt": 0.0})
    #: ``cooldown``, ``cosine`` or ``constant`` (the paper's runs): ``bbh.training.fit``'s
    lr_schedule: str = field(default="cooldown", metadata=_choices(*LR_SCHEDULES))
    #: the fraction of the run over which the rate first rises from near 0 (``fit``'s;
    #: ``bbh finetune`` sets 0.1)
    lr_warmup: float = field(default=0.0, metadata={"min": 0.0, "lt": 1.0})
    num_data: int | None = field(default=None, metadata={"min": 1})
    kl_schedule: KLScheduleConfig = field(default_factory=KLScheduleConfig)
    log_every: int = field(default=50, metadata={"min": 1})
    checkpoint_every: int = field(default=500, metadata={"min": 1})
    #: weight samples for the per-epoch validation accuracy and NLL
    val_samples: int = field(default=10, metadata={"min": 1})
    #: a temperature search's candidates in a row past the best that may fail to beat it
    #: (``fit``'s ``temperature_patience``; = ``TEMPERATURE_PATIENCE``, tested)
    temperature_patience: int = field(default=2, metadata={"min": 1})
    device: str = field(default="cpu", metadata=_choices(*DEVICES))
    #: CPU threads for training and evaluation (None: torch's default). Small nets, and any net
    #: on a machine shared with other jobs, run far faster on 1 thread.
    threads: int | None = field(default=None, metadata={"min": 1})


@dataclass(frozen=True)
class DistributedConfig:
    """How ``bbh train`` runs under ``torchrun`` (ignored in one process; none of it changes the
    config hash). ``backend``: ``auto`` is ``nccl`` on CUDA, ``gloo`` on CPUs.
    ``find_unused_parameters``: for nets or methods that leave parameters without a gradient in
    a step (DDP's option; every registered method uses all of its parameters).
    ``timeout_s``: how long a rank waits for the others in a collective (None: torch's default,
    30 minutes for gloo, 10 for nccl)."""

    backend: str = field(default="auto", metadata=_choices(*DIST_BACKENDS))
    find_unused_parameters: bool = False
    timeout_s: float | None = field(default=None, metadata={"gt": 0.0})


@dataclass(frozen=True)
class AttackSettings:
    """The attacks of ``bbh.evaluation.evaluate`` (see ``AttackConfig``); ``enabled = false``
    skips them."""

    enabled: bool = True
    num_images: int = field(default=100, metadata={"min": 1})
    epsilons: tuple[float, ...] = (0.0, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4)
    paper_fgsm: bool = True
    num_grad_samples: int = field(default=100, metadata={"min": 1})
    eot_fgsm: bool = True
    eot_pgd: bool = True
    attack_samples: int = field(default=10, metadata={"min": 1})
    pgd_steps: int = field(default=10, metadata={"min": 1})
    eval_samples: int | None = field(default=None, metadata={"min": 1})


@dataclass(frozen=True)
class EvalConfig:
    """``num_samples`` weight draws per input (the paper: 100), studies = the paper's rotation,
    mixup and class-spread figures (MNIST), ``weight_samples`` for the weight statistics."""

    num_samples: int = field(default=100, metadata={"min": 1})
    batch_size: int = field(default=500, metadata={"min": 1})
    studies: bool = True
    weight_samples: int = field(default=1000, metadata={"min": 0})
    attacks: AttackSettings = field(default_factory=AttackSettings)


@dataclass(frozen=True)
class ExperimentConfig:
    """One training run: ``name`` (e.g. ``mnist/map``), a display ``label`` and its parts."""

    name: str
    data: DataConfig
    net: NetConfig
    method: MethodConfig
    label: str = ""
    description: str = ""
    seed: int = 0
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    distributed: DistributedConfig = field(default_factory=DistributedConfig)

    @property
    def display_name(self) -> str:
        """The name a report shows: ``label``, else ``name``."""
        return self.label or self.name


@dataclass(frozen=True)
class ToyConfig:
    """The 1-D toy regression (``bbh.experiments.toy.run_toy``): ``methods`` ("all" or names),
    ``setting`` ours/paper, the trusted ``reference``; ``steps`` None keeps each method's own."""

    name: str
    methods: tuple[str, ...] = ("all",)
    setting: str = field(default="ours", metadata=_choices(*TOY_SETTINGS))
    reference: str = field(default="gp", metadata=_choices(*TOY_REFERENCES))
    seed: int = 0
    data_seed: int = 1
    steps: int | None = field(default=None, metadata={"min": 1})
    label: str = ""
    description: str = ""

    @property
    def display_name(self) -> str:
        """The name a report shows: ``label``, else ``name``."""
        return self.label or self.name


AnyConfig = ExperimentConfig | ToyConfig

# ------------------------------------------------------------------------------ loading


def config_root() -> Path:
    """The folder of the shipped configs (``bbh/configs``)."""
    return Path(str(resources.files("bbh") / "configs"))


def list_configs() -> list[str]:
    """The shipped config names, ``<experiment>/<run>`` (files starting with ``_`` are bases)."""
    root = config_root()
    return sorted(
        p.relative_to(root).with_suffix("").as_posix()
        for p in root.rglob("*.toml")
        if not p.name.startswith("_")
    )


def resolve_config_path(name_or_path: str | Path) -> Path:
    """A shipped config name (``mnist/map``) or a path to a TOML file."""
    text = str(name_or_path)
    path = Path(text)
    # a folder named like a shipped config (`bbh demo --out demo` leaves demo/map) is not one
    if path.suffix == ".toml" or path.is_file():
        if not path.is_file():
            raise ConfigError(f"{text}: no such config file")
        return path
    shipped = config_root() / f"{text}.toml"
    if shipped.is_file() and not shipped.name.startswith("_"):
        return shipped
    raise ConfigError(
        f"unknown config {text!r}: not a file, nor a shipped config (`bbh configs` lists them)"
    )


#: the sections whose ``--set`` overrides a config's label names (a label names the method)
LABELLED_SECTIONS = {"method"}


def load_config(
    name_or_path: str | Path, *, scale: str = "paper", overrides: Sequence[str] = ()
) -> AnyConfig:
    """Load, merge and check a config (see the module docstring); raises ``ConfigError``.

    An override of a ``method`` key (``LABELLED_SECTIONS``) is appended to the file's label,
    unless the overrides set ``label`` themselves.
    """
    if scale not in SCALES:
        raise ConfigError(f"unknown scale {scale!r}; allowed: {list(SCALES)}")
    path = resolve_config_path(name_or_path)
    raw = _read_with_bases(path, seen=())
    scales = raw.pop("scale", {})
    if not isinstance(scales, dict) or set(scales) - set(SCALES):
        extra = sorted(set(scales) - set(SCALES)) if isinstance(scales, dict) else scales
        raise ConfigError(f"{path}: scale: unknown scale table(s) {extra}; allowed: {SCALES}")
    raw = merge_tables(raw, _expand_dotted(scales.get(scale, {}), f"{path} [scale.{scale}]"))
    changed: list[str] = []
    for item in overrides:
        over = parse_override(item)
        _resolve_data_paths(over, Path.cwd(), "--set")
        raw = merge_tables(raw, over)
        if set(over) & LABELLED_SECTIONS:
            changed.append(item.strip())
    raw.setdefault("name", _default_name(path))
    if changed and raw.get("label") and not any(parse_override(i).get("label") for i in overrides):
        # a shipped label ("BbH (recommended)") names the file's method: say what --set changed
        # in it, so that reports do not credit the shipped method with another one's numbers
        raw["label"] = f"{raw['label']} [--set {', '.join(changed)}]"
    source = f"{path}" + (" (with --set)" if overrides else "")
    return config_from_dict(raw, source=source)


def config_from_dict(raw: Mapping[str, Any], *, source: str = "config") -> AnyConfig:
    """A checked config from a plain dict (as in a TOML file or a run folder's ``config.json``)."""
    data = dict(raw)
    kind = data.pop("kind", "train")
    if kind == "toy":
        return _build(ToyConfig, data, source, "")
    if kind != "train":
        raise ConfigError(f"{source}: kind: unknown kind {kind!r}; allowed: ['train', 'toy']")
    cfg = _build(ExperimentConfig, data, source, "")
    _check_experiment(cfg, source)
    return cfg


def config_to_dict(cfg: AnyConfig) -> dict[str, Any]:
    """The config as plain JSON types (tuples as lists), with its ``kind``."""
    out = plain_value(dataclasses.asdict(cfg))
    out["kind"] = "toy" if isinstance(cfg, ToyConfig) else "train"
    return out


def parse_override(item: str) -> dict[str, Any]:
    """``a.b.c=value`` -> ``{"a": {"b": {"c": value}}}``; the value is read as a TOML value
    (``64``, ``1e-3``, ``true``, ``[1, 2]``, ``"text"``), else taken as a plain string."""
    key, sep, text = item.partition("=")
    key = key.strip()
    if not sep or not key or any(not part for part in key.split(".")):
        raise ConfigError(f"--set {item!r}: expected key.path=value, e.g. train.epochs=2")
    try:
        value = _toml_loads(f"v = {text.strip()}")["v"]
    except Exception:
        value = text.strip()
    return _expand_dotted({key: value}, "--set")


#: per method, options added after runs were trained, at the values that train exactly as before
#: the option existed: left out of the hash there, so that those runs stay current (not retrained)
HASH_NEUTRAL_OPTIONS: dict[str, dict[str, Any]] = {
    "bbh": {"deterministic": [], "sigma_noise": "sample", "sigma_tensor_scale": False},
    "bbb": {"sigma_tensor_scale": False},
}


def config_hash(
    cfg: AnyConfig,
    resolved_method_options: Mapping[str, Any] | None = None,
    data_fingerprint: str | None = None,
) -> str:
    """A short hash of everything that changes the trained weights.

    Leaves out what does not: the data root, the device, logging and checkpoint intervals, the
    label, description, evaluation and distributed settings, and ``train.val_samples`` except
    where a method chooses its temperature on the validation split (there it can change the
    chosen temperature and so the weights) and the value is not the default.
    ``resolved_method_options`` (the method's options with its defaults filled in) makes a
    change of a method's defaults a different run. The user's own data counts by its content,
    ``data_fingerprint`` (``bbh.data.user_data.fingerprint``), not by where its files lie; a
    shipped data set's run hashes as before the own-data keys existed.
    """
    d = config_to_dict(cfg)
    for key in ("label", "description", "eval", "distributed"):
        d.pop(key, None)
    if isinstance(cfg, ExperimentConfig):
        d["data"].pop("root", None)
        own = cfg.data.name in OWN_DATA
        for key in (*DATA_PATH_KEYS, "source") if own else OWN_DATA_KEYS:
            d["data"].pop(key, None)
        if own:
            d["data"]["fingerprint"] = data_fingerprint
        for key in ("device", "threads", "log_every", "checkpoint_every"):
            d["train"].pop(key, None)
        searches = (resolved_method_options or {}).get("temperature") == "validation"
        if not searches or cfg.train.val_samples == TrainConfig.val_samples:
            # it only scores the epochs unless it scores a temperature search's candidates,
            # and at its default every run trained before this counted hashes as it did
            d["train"].pop("val_samples", None)
        if not searches or cfg.train.temperature_patience == 1:
            # patience 1 is the walk of every search trained before the option existed
            d["train"].pop("temperature_patience", None)
        if d["train"].get("lr_schedule") == "constant":  # as every run before the option existed
            del d["train"]["lr_schedule"]
        if d["train"].get("lr_warmup") == 0.0:  # likewise
            del d["train"]["lr_warmup"]
        if resolved_method_options is not None:
            options = plain_value(dict(resolved_method_options))
            for key, neutral in HASH_NEUTRAL_OPTIONS.get(cfg.method.name, {}).items():
                if key in options and options[key] == neutral:
                    del options[key]
            d["method"]["options"] = options
    text = json.dumps(d, sort_keys=True, default=repr)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def resolved_options(factory: Callable[..., Any], options: Mapping[str, Any]) -> dict[str, Any]:
    """``options`` with the keyword defaults of ``factory`` filled in (JSON-ready values)."""
    out: dict[str, Any] = {}
    for name, p in inspect.signature(factory).parameters.items():
        if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD) and name != "net":
            if name in options:
                out[name] = options[name]
            elif p.default is not p.empty:
                out[name] = p.default
    out.update({k: v for k, v in options.items() if k not in out})
    # a method whose defaults come from a preset (BbH) says what is in force
    resolve = getattr(factory, "resolve_options", None)
    if resolve is not None:
        out.update(resolve(options))
        for name in getattr(factory, "RECORDED_AS", {}):  # recorded under its old name
            out.pop(name, None)
    return plain_value(out)


def check_options(
    factory: Callable[..., Any], options: Mapping[str, Any], key: str, source: str
) -> None:
    """Raise ``ConfigError`` for option names that ``factory`` does not take."""
    params = inspect.signature(factory).parameters
    flat = getattr(factory, "FLAT_OPTIONS", None)  # keywords a ``**`` parameter takes (BbH)
    if flat is None and any(p.kind is p.VAR_KEYWORD for p in params.values()):
        return
    allowed = sorted(
        [
            n
            for n, p in params.items()
            if n != "net" and p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)
        ]
        + list(flat or ())
    )
    if getattr(factory, "PRESETS", None) is not None:  # named option sets (bbh.build)
        allowed = sorted([*allowed, "preset"])
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise ConfigError(f"{source}: {key}: unknown option(s) {unknown}; allowed: {allowed}")


# ------------------------------------------------------------------------------ helpers


def _toml_loads(text: str) -> dict[str, Any]:
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - Python 3.10
        try:
            import tomli as tomllib
        except ImportError as exc:
            raise ConfigError(
                "reading TOML configs on Python 3.10 needs tomli: "
                "pip install 'bayes-by-hypernet[experiments]'"
            ) from exc
    return tomllib.loads(text)


def _read_with_bases(path: Path, seen: tuple[Path, ...]) -> dict[str, Any]:
    try:
        raw = _toml_loads(path.read_text(encoding="utf-8"))
    except ConfigError:
        raise
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not a text file ({exc})") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read ({exc.strerror or exc})") from None
    except Exception as exc:  # tomllib.TOMLDecodeError and friends
        raise ConfigError(f"{path}: malformed TOML: {exc}") from None
    _resolve_data_paths(raw, path.parent, str(path))
    base = raw.pop("extends", None)
    if base is None:
        return raw
    if not isinstance(base, str):
        raise ConfigError(f"{path}: extends: expected a file name, got {base!r}")
    base_path = (path.parent / base).resolve()
    if base_path in seen or base_path == path.resolve():
        raise ConfigError(f"{path}: extends: {base!r} is a cycle")
    if not base_path.is_file():
        raise ConfigError(f"{path}: extends: no such file {base_path}")
    return merge_tables(_read_with_bases(base_path, (*seen, path.resolve())), raw)


def _resolve_data_paths(raw: dict[str, Any], folder: Path, source: str) -> None:
    """Make ``[data]`` paths (also those in ``[scale.*]`` tables) absolute against ``folder``."""
    tables = [raw.get("data")]
    scales = raw.get("scale")
    if isinstance(scales, dict):
        for table in scales.values():
            if isinstance(table, dict):
                expanded = _expand_dotted(table, f"{source} [scale]")
                table.clear()
                table.update(expanded)
                tables.append(table.get("data"))
    for data in tables:
        if not isinstance(data, dict):
            continue
        for key in DATA_PATH_KEYS:
            value = data.get(key)
            if isinstance(value, str) and value and value.lower() != "none":
                data[key] = _absolute(value, folder)
        spec = data.get("source")
        if isinstance(spec, str) and ".py:" in spec:  # a file of Python, not a module name
            file, _, function = spec.rpartition(":")
            data["source"] = f"{_absolute(file, folder)}:{function}"


def _absolute(path: str, folder: Path) -> str:
    return str((folder / Path(path).expanduser()).resolve())


def merge_tables(base: dict[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """``over`` merged into ``base`` table by table (a config over its ``extends``, an override
    over a config); an ``options`` table is merged one level deep, other values replace.

    Args:
        base: The table merged into (not changed).
        over: The table whose values win.

    Returns:
        The merged table.
    """
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict) and key != "options":
            out[key] = merge_tables(out[key], value)
        elif isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = {**out[key], **value}  # options: merged, values replaced whole
        else:
            out[key] = value
    return out


def _expand_dotted(table: Any, source: str) -> dict[str, Any]:
    """``{"train.epochs": 2}`` (TOML dotted keys already nest) -> nested dicts."""
    if not isinstance(table, dict):
        raise ConfigError(f"{source}: expected a table, got {table!r}")
    out: dict[str, Any] = {}
    for key, value in table.items():
        parts = key.split(".")
        node = out
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        leaf = _expand_dotted(value, source) if isinstance(value, dict) else value
        node[parts[-1]] = (
            merge_tables(node.get(parts[-1], {}), leaf) if isinstance(leaf, dict) else leaf
        )
    return out


def _default_name(path: Path) -> str:
    try:
        return path.resolve().relative_to(config_root().resolve()).with_suffix("").as_posix()
    except ValueError:
        return path.stem


def _build(cls: type[Any], raw: Any, source: str, prefix: str) -> Any:
    where = prefix.rstrip(".") or "top level"
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{source}: {where}: expected a table, got {raw!r}")
    hints = get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - set(fields))
    if unknown:
        raise ConfigError(
            f"{source}: {prefix}{unknown[0]}: unknown key; allowed in {where}: {sorted(fields)}"
        )
    values: dict[str, Any] = {}
    for name, f in fields.items():
        key = f"{prefix}{name}"
        if name not in raw:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise ConfigError(f"{source}: {key}: missing (required)")
            continue
        value = _convert(hints[name], raw[name], source, key)
        _check_value(f, value, source, key)
        values[name] = value
    return cls(**values)


def _convert(tp: Any, value: Any, source: str, key: str) -> Any:
    origin = get_origin(tp)
    if origin in (Union, types.UnionType):
        args = [a for a in get_args(tp) if a is not type(None)]
        if value is None or (isinstance(value, str) and value.lower() == "none"):
            return None
        return _convert(args[0], value, source, key)
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        return _build(tp, value, source, f"{key}.")
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{source}: {key}: expected a list, got {value!r}")
        (item,) = get_args(tp)[:1]
        return tuple(_convert(item, v, source, f"{key}[{i}]") for i, v in enumerate(value))
    if origin is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(f"{source}: {key}: expected a table, got {value!r}")
        return dict(value)
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{source}: {key}: expected true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{source}: {key}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{source}: {key}: expected a number, got {value!r}")
        if not math.isfinite(value):
            raise ConfigError(f"{source}: {key}: expected a finite number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{source}: {key}: expected a string, got {value!r}")
        return value
    return value  # pragma: no cover - Any


def _check_value(f: dataclasses.Field[Any], value: Any, source: str, key: str) -> None:
    if value is None:
        return
    meta = f.metadata
    if "choices" in meta and value not in meta["choices"]:
        raise ConfigError(f"{source}: {key}: {value!r} is not allowed; allowed: {meta['choices']}")
    if "min" in meta and value < meta["min"]:
        raise ConfigError(f"{source}: {key}: {value!r} must be >= {meta['min']:g}")
    if "gt" in meta and not value > meta["gt"]:
        raise ConfigError(f"{source}: {key}: {value!r} must be > {meta['gt']:g}")
    if "lt" in meta and not value < meta["lt"]:
        raise ConfigError(f"{source}: {key}: {value!r} must be < {meta['lt']:g}")


def _check_experiment(cfg: ExperimentConfig, source: str) -> None:
    """Cross-field checks, and method / net names and option names against their registries."""
    from bbh.methods import METHODS
    from bbh.nets import NETS

    if cfg.method.name not in METHODS:
        raise ConfigError(
            f"{source}: method.name: unknown method {cfg.method.name!r}; allowed: {sorted(METHODS)}"
        )
    check_options(METHODS[cfg.method.name], cfg.method.options, "method.options", source)
    if cfg.net.name not in NETS:
        raise ConfigError(
            f"{source}: net.name: unknown net {cfg.net.name!r}; allowed: {sorted(NETS)}"
        )
    check_options(NETS[cfg.net.name], cfg.net.options, "net.options", source)
    if cfg.data.augment == "cifar" and cfg.data.name != "cifar5":
        raise ConfigError(f"{source}: data.augment: 'cifar' applies only to data.name = 'cifar5'")
    _check_own_data(cfg, source)


def _check_own_data(cfg: ExperimentConfig, source: str) -> None:
    """The own-data keys against ``data.name``, and the task against the likelihood."""
    d = cfg.data
    defaults = DataConfig(name=d.name)
    given = [k for k in OWN_DATA_KEYS if getattr(d, k) != getattr(defaults, k)]
    if d.name not in OWN_DATA:
        if given:
            raise ConfigError(
                f"{source}: data.{given[0]}: applies only to data.name = 'files' or 'callable'"
            )
        return
    needed, foreign = ("train", "source") if d.name == "files" else ("source", "train")
    if getattr(d, needed) is None:
        what = "the training data file" if d.name == "files" else "'package.module:function'"
        raise ConfigError(f"{source}: data.{needed}: missing ({what}) for data.name = {d.name!r}")
    wrong = [foreign] if getattr(d, foreign) is not None else []
    if d.name == "callable":
        wrong += [k for k in given if k in (*DATA_PATH_KEYS, "x_key", "y_key", "columns",
                                             "target", "image_mode")]  # fmt: skip
    if wrong:
        raise ConfigError(f"{source}: data.{wrong[0]}: does not apply to data.name = {d.name!r}")
    if d.name == "files" and d.test is None and d.test_size == 0:
        raise ConfigError(f"{source}: data.test: missing; name the test data or set data.test_size")
    if d.name == "files" and d.test is not None and d.test_size:
        raise ConfigError(f"{source}: data.test_size: applies only without data.test")
    if d.ood is not None:
        raise ConfigError(f"{source}: data.ood: own data has no out-of-distribution set")
    likelihood = cfg.method.options.get("likelihood", "categorical")
    if d.task == "regression" and likelihood != "gaussian":
        raise ConfigError(
            f"{source}: data.task = 'regression' needs method.options.likelihood = 'gaussian' "
            "(and its noise_scale)"
        )
    if d.task == "classification" and likelihood != "categorical":
        raise ConfigError(
            f"{source}: method.options.likelihood = {likelihood!r} needs data.task = 'regression'"
        )


def plain_value(obj: Any) -> Any:
    """Tuples as lists, enums as values: JSON- and TOML-ready."""
    if isinstance(obj, dict):
        return {str(k): plain_value(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [plain_value(v) for v in obj]
    value = getattr(obj, "value", None)
    if value is not None and type(obj).__module__ != "builtins" and isinstance(value, str):
        return value
    return obj
