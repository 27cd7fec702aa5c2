"""Every trainer setting a sweep may set: its type, default, meaning and role in trial ids.

One table serves the sweep validator and `--set` (each value is parsed and checked against its
setting's type, the same way for a sweep file, the command line and `run_trial`), the grid
expansion (defaults filled in, loss-dependent settings dropped), the results' column types and
every help screen.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import math
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator, Field, StrictBool, TypeAdapter, ValidationError

from mlsweep.catalog.datasets import DATASETS
from mlsweep.catalog.losses import LOSS_DEPENDENT_SETTINGS, LOSSES
from mlsweep.catalog.miners import MINERS
from mlsweep.catalog.models import MODELS
from mlsweep.catalog.reporters import REPORTERS
from mlsweep.errors import UserError

SPLITS = ("stratified", "class_disjoint", "official")
OPTIMIZERS = ("adam", "adamw", "sgd")
SAMPLERS = ("random", "m_per_class")

# The ways people write numbers: 5, -2, .5, 1e-3, 1E-3, 1.0e-3 (YAML 1.1 reads `1e-3` as text).
_NUMBER = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")


def parse_number(value: Any) -> Any:
    """A number as written in YAML or on the command line; anything else is refused."""
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a number")
    if isinstance(value, str):
        text = value.strip()
        if not _NUMBER.fullmatch(text):
            raise ValueError(f"{value!r} is not a number")
        return float(text) if any(c in text for c in ".eE") else int(text)
    if not isinstance(value, int | float):
        raise ValueError(f"{value!r} is not a number")
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"{value!r} is not a finite number")
    return value


def _whole(value: Any) -> Any:
    """A number that is a whole number (`5`, `5.0`, `"1e3"`) as an int."""
    value = parse_number(value)
    if isinstance(value, float):
        if not value.is_integer():
            raise ValueError(f"{value!r} is not a whole number")
        return int(value)
    return value


def not_one_of(value: Any, known: Iterable[str], what: str) -> str:
    """`'tripplet' is not a loss; did you mean 'triplet'? known: ...`: the line for a name
    outside a catalog table, with the closest known name when one is close."""
    known = list(known)
    close = difflib.get_close_matches(str(value), known, n=1, cutoff=0.6)
    hint = f"; did you mean {close[0]!r}?" if close else ";"
    return f"{value!r} is not {what}{hint} known: {', '.join(known)}"


def _one_of(known: Mapping[str, Any] | tuple[str, ...], what: str) -> Callable[[Any], Any]:
    def check(value: Any) -> Any:
        if value is not None and value not in known:
            raise ValueError(not_one_of(value, known, what))
        return value

    return check


def _reporters_known(values: list[str]) -> list[str]:
    for value in values:
        _one_of(REPORTERS, "a diagnostic")(value)
    return values


# A float setting keeps an integer as written (`margin: 1`): converting it would change the trial
# ids of configs written that way (ids hash the canonical JSON, where 1 and 1.0 differ).
Float = Annotated[int | float, BeforeValidator(parse_number)]
Int = Annotated[int, BeforeValidator(_whole)]
PosInt = Annotated[Int, Field(gt=0)]
NonNegInt = Annotated[Int, Field(ge=0)]


def _name(known: Mapping[str, Any] | tuple[str, ...], what: str, optional: bool = False) -> Any:
    return Annotated[str | None if optional else str, AfterValidator(_one_of(known, what))]


@dataclass(frozen=True)
class Setting:
    """One trainer setting.

    `column` is its Parquet type (float64, int64, string, bool, or json: a list stored as
    JSON text). `sets_numbers` is False for execution details that leave a trial's numbers
    equal (where the data lies, whether to download); those never change a trial id.
    `since` is the mlsweep version that added it: a setting added after the first ids were
    made enters the id only when it differs from its default, so old ids stay.
    """

    name: str
    type: Any
    default: Any
    doc: str
    column: str
    sets_numbers: bool = True
    since: str = "0.1"

    @property
    def numeric(self) -> bool:
        return self.column in ("float64", "int64")

    @property
    def adapter(self) -> TypeAdapter:
        return _adapter(self.name)


SETTINGS: dict[str, Setting] = {
    s.name: s
    for s in [
        Setting("loss", _name(LOSSES, "a loss"), "triplet", "metric-learning loss", "string"),
        Setting("dataset", _name(DATASETS, "a dataset"), "synthetic", "data set", "string"),
        Setting("margin", Annotated[Float, Field(ge=0)], 1.0,
                "margin m of margin losses (contrastive, triplet)", "float64"),
        Setting("miner", _name(MINERS, "a miner"), "random",
                "which pairs/triplets a batch forms (pair/triplet losses)", "string"),
        Setting("seed", NonNegInt, 0, "fixes initialisation, batch order and augmentation", "int64"),
        Setting("split_seed", NonNegInt, 0, "fixes the train/test split (same for every seed)",
                "int64"),
        Setting("split", _name(SPLITS, "a split", optional=True), None,
                "stratified | class_disjoint | official (default: the data set's)", "string"),
        Setting("test_size", Annotated[Float, Field(gt=0, lt=1)], 0.25,
                "share of samples (stratified) or classes (class_disjoint) held out", "float64"),
        Setting("epochs", PosInt, 20, "training epochs", "int64"),
        Setting("batch_size", Annotated[Int, Field(ge=2)], 128, "samples per batch", "int64"),
        Setting("lr", Annotated[Float, Field(gt=0)], 1.0e-3, "learning rate", "float64"),
        Setting("weight_decay", Annotated[Float, Field(ge=0)], 0.0, "weight decay", "float64"),
        Setting("optimizer", _name(OPTIMIZERS, "an optimizer"), "adam", "adam | adamw | sgd", "string"),
        Setting("model", _name(MODELS, "a model", optional=True), None,
                "network (default: the data set's)", "string"),
        Setting("hidden_sizes", list[PosInt], [64], "hidden layer widths of the mlp", "json"),
        Setting("embedding_dim", PosInt, 32, "embedding size", "int64"),
        Setting("pretrained", str, "none", "none | imagenet | path to a state dict", "string"),
        Setting("freeze_backbone", StrictBool, False, "train only the embedding head", "bool"),
        Setting("feature_cache", StrictBool, True,
                "frozen backbone, no augmentation: compute its features once, cached in the data "
                "folder, and train the head on them (same numbers)", "bool", sets_numbers=False,
                since="0.2"),
        Setting("sampler", _name(SAMPLERS, "a sampler"), "random", "random | m_per_class", "string"),
        Setting("m_per_class", Annotated[Int, Field(ge=2)], 4,
                "samples per class in a batch (m_per_class sampler)", "int64"),
        Setting("eval_every", PosInt, 10, "evaluate every N epochs (the last always)", "int64"),
        Setting("diagnostics", Annotated[list[str], AfterValidator(_reporters_known)],
                list(REPORTERS), "reporters to run", "json"),
        Setting("train_subset", PosInt, 5000, "train samples used for train_ metrics and kNN", "int64"),
        Setting("augment", StrictBool | None, None,
                "random crop + flip on the device (default: on for colour image sets)", "bool"),
        Setting("torch_device", str, "auto", "where to train: auto | cpu | cuda | cuda:N", "string"),
        Setting("data_dir", str | None, None,
                "data folder (default: $MLSWEEP_DATA or ~/.cache/mlsweep/data)", "string",
                sets_numbers=False),
        Setting("download", StrictBool, False, "try to download a missing data set", "bool",
                sets_numbers=False),
        Setting("checkpoint_every", NonNegInt, 0,
                "save a checkpoint every N epochs (0: only by time) into the run folder, "
                "where a retry or relaunch resumes", "int64", sets_numbers=False, since="0.2"),
        Setting("checkpoint_minutes", Annotated[Float, Field(ge=0)], 5.0,
                "also save a checkpoint after this many minutes of training since the last "
                "(0: only by epochs)", "float64", sets_numbers=False, since="0.2"),
        Setting("fail_at_epoch", NonNegInt, 0,
                "testing aid: raise at this epoch (0: never), to exercise retries; a run "
                "resumed from a checkpoint does not", "int64"),
    ]
}

# Per-name dictionaries that are merged over the catalog's defaults for the trial's loss/dataset.
NESTED = {"loss_params": LOSSES, "dataset_params": DATASETS}

# Settings that only some trials read, each with the test of whether a resolved config reads
# it: `resolve` drops it from the others, so no trial id holds a setting its trial ignores.
CONDITIONAL: dict[str, Callable[[Mapping[str, Any]], bool]] = {
    "hidden_sizes": lambda config: config["model"] == "mlp",
    **{name: (lambda config, name=name: name in LOSSES[config["loss"]].uses)
       for name in LOSS_DEPENDENT_SETTINGS},
    "m_per_class": lambda config: config["sampler"] == "m_per_class",
}

_ADAPTERS: dict[str, TypeAdapter] = {}


def _adapter(name: str) -> TypeAdapter:
    if name not in _ADAPTERS:
        _ADAPTERS[name] = TypeAdapter(SETTINGS[name].type)
    return _ADAPTERS[name]


def _param_type(default: Any) -> Any:
    """A loss's or data set's own parameter takes the type of its default."""
    if isinstance(default, bool):
        return StrictBool
    return Int if isinstance(default, int) else Float


def _message(err: ValidationError) -> str:
    first = err.errors()[0]
    msg = first["msg"].removeprefix("Value error, ")
    loc = "".join(f"[{p}]" for p in first["loc"] if isinstance(p, int))
    return f"{loc}: {msg}".lstrip(": ") if loc else msg


def parse_setting(name: str, value: Any) -> Any:
    """`value` parsed as setting `name`'s type (`"1e-3"` -> 0.001); ValueError with one line."""
    try:
        return SETTINGS[name].adapter.validate_python(value)
    except ValidationError as err:
        raise ValueError(_message(err)) from None


def parse_param(owner: str, name: str, value: Any) -> Any:
    """A `loss_params` / `dataset_params` value parsed as its default's type."""
    section = LOSSES[owner].params if owner in LOSSES else DATASETS[owner].params
    try:
        return TypeAdapter(_param_type(section[name])).validate_python(value)
    except ValidationError as err:
        raise ValueError(_message(err)) from None


def param_problems(section: Any, owner: str, key: str) -> list[tuple[str, str]]:
    """(where, problem) of one loss's or data set's parameters: unknown names, bad values."""
    if not isinstance(section, Mapping):
        return [("", f"must be a mapping of {owner}'s parameters, not {section!r}")]
    allowed = (LOSSES[owner] if key == "loss_params" else DATASETS[owner]).params
    problems = []
    for param, value in section.items():
        if param not in allowed:
            problems.append((f".{param}", not_one_of(param, allowed, f"a parameter of {owner}") if allowed
                             else f"unknown; {owner} takes no parameters"))
            continue
        try:
            parse_param(owner, param, value)
        except ValueError as err:
            problems.append((f".{param}", str(err)))
    return problems


def config_problems(settings: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(key, problem) for every bad entry of one trial's settings, as `--set` and `run_trial`
    give them (nested parameters for the trial's own loss and data set)."""
    problems: list[tuple[str, str]] = []
    for name, value in settings.items():
        if name in NESTED:
            continue
        if name not in SETTINGS:
            problems.append((name, not_one_of(name, SETTINGS, "a setting")))
            continue
        try:
            parse_setting(name, value)
        except ValueError as err:
            problems.append((name, str(err)))
    for key in NESTED:
        if key in settings:
            owner_key = "loss" if key == "loss_params" else "dataset"
            owner = settings.get(owner_key, SETTINGS[owner_key].default)
            if owner in NESTED[key]:
                problems += [(f"{key}{where}", msg)
                             for where, msg in param_problems(settings[key], owner, key)]
    return problems


def validate_config(settings: Mapping[str, Any], where: Callable[[str], str]) -> dict[str, Any]:
    """One trial's settings checked and resolved; UserError with one line per problem, each
    naming the key as `where(key)` gives it (`--set lr`, `run_trial: lr`)."""
    problems = config_problems(settings)
    if problems:
        raise UserError(*(f"{where(key)}: {msg}" for key, msg in problems))
    return resolve(settings)


def resolve(partial: Mapping[str, Any], overrides: Mapping[str, Mapping[str, Any]] | None = None,
            ) -> dict[str, Any]:
    """Fill defaults, apply data-set defaults, parse every value as its setting's type and drop
    what the trial does not read (CONDITIONAL).

    `overrides` holds `loss_params` / `dataset_params` keyed by loss / data set name. Values
    are assumed valid (checked by the sweep validator or `config_problems`). Idempotent: a
    resolved config (or a partial one from `mlsweep train`) comes back the same.
    """
    config = {name: parse_setting(name, partial[name]) if name in partial else setting.default
              for name, setting in SETTINGS.items()}
    config = json.loads(json.dumps(config))  # deep copy; also normalises tuples to lists
    dataset = DATASETS[config["dataset"]]
    loss = LOSSES[config["loss"]]
    config["model"] = config["model"] or dataset.default_model
    config["split"] = config["split"] or dataset.default_split
    if config["augment"] is None:
        config["augment"] = dataset.colour
    for name in [name for name, reads in CONDITIONAL.items() if not reads(config)]:
        del config[name]
    overrides = overrides or {}
    for key, info in (("loss_params", loss), ("dataset_params", dataset)):
        # Catalog defaults, then what a resolved config already holds, then the sweep's section.
        given = {**partial.get(key, {}), **overrides.get(key, {}).get(info.name, {})}
        config[key] = {**info.params, **{k: parse_param(info.name, k, v) for k, v in given.items()}}
    return config


def identity(config: Mapping[str, Any]) -> dict[str, Any]:
    """The part of a resolved config that sets a trial's numbers, as its id hashes it.

    Execution details are hashed at their default (where the data lies never changes an id),
    and a setting added after 0.1 is left out while it holds its default, so the ids of
    configs made before it stay the same."""
    view = dict(config)
    for name, setting in SETTINGS.items():
        if name not in view:
            continue
        if not setting.sets_numbers:
            if setting.since == "0.1":
                view[name] = setting.default
            else:
                del view[name]
        elif setting.since != "0.1" and view[name] == setting.default:
            del view[name]
    return view


def trial_id(config: Mapping[str, Any]) -> str:
    """Short hash of the canonical JSON of a resolved config's identity: same numbers, same id."""
    canonical = json.dumps(identity(config), sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(canonical.encode()).hexdigest()[:12]
