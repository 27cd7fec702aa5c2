"""The sweep file: model, validation (every problem at once, one line each) and grid expansion."""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from mlsweep.catalog import (
    EPOCH_METRICS,
    NESTED,
    SETTINGS,
    not_one_of,
    param_problems,
    parse_setting,
    resolve,
    trial_id,
)
from mlsweep.errors import UserError

NAME_PATTERN = r"^[A-Za-z0-9_-][A-Za-z0-9._-]*$"  # no leading dot: not ".", "..", hidden
NUMERIC_SETTINGS = tuple(name for name, setting in SETTINGS.items() if setting.numeric)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Parameter(_Strict):
    """`{value: x}`, `{values: [...]}`, or (optuna) `{min, max, distribution}`."""

    value: Any = None
    values: list[Any] | None = None
    min: float | None = None
    max: float | None = None
    distribution: Literal["uniform", "log_uniform", "int"] | None = None

    @model_validator(mode="after")
    def _one_form(self) -> Parameter:
        given = self.model_fields_set
        forms = [("value" in given), ("values" in given),
                 bool(given & {"min", "max", "distribution"})]
        if sum(forms) != 1:
            raise ValueError("give exactly one of value, values, or min/max/distribution")
        if forms[1] and not self.values:
            raise ValueError("values must not be empty")
        if forms[2]:
            if self.min is None or self.max is None:
                raise ValueError("a range needs both min and max")
            if self.min >= self.max:
                raise ValueError(f"min ({self.min}) must be below max ({self.max})")
            if self.distribution == "log_uniform" and self.min <= 0:
                raise ValueError("log_uniform needs min > 0")
        return self

    @property
    def is_range(self) -> bool:
        return bool(self.model_fields_set & {"min", "max", "distribution"})

    @property
    def choices(self) -> list[Any]:
        """The values this parameter takes in a grid (one for `value`)."""
        return list(self.values) if "values" in self.model_fields_set else [self.value]


class Metric(_Strict):
    name: str = "map_at_r"
    goal: Literal["maximize", "minimize"] = "maximize"

    @field_validator("name")
    @classmethod
    def _known(cls, name: str) -> str:
        if name not in EPOCH_METRICS:
            raise ValueError(not_one_of(name, EPOCH_METRICS, "a metric"))
        return name


class Resources(_Strict):
    """Per trial; a fractional gpu (0.25) packs several trials on one GPU."""

    cpu: float = Field(1.0, gt=0)
    gpu: float = Field(0.0, ge=0)

    @field_validator("gpu")
    @classmethod
    def _whole_above_one(cls, gpu: float) -> float:
        if gpu > 1 and not float(gpu).is_integer():
            raise ValueError(f"gpu above 1 must be a whole number, got {gpu}")
        return gpu


class MlflowTracking(_Strict):
    uri: str | None = Field(None, min_length=1)  # None: MLflow's default (MLFLOW_TRACKING_URI)
    experiment: str | None = Field(None, min_length=1)  # None: the sweep's name


class WandbTracking(_Strict):
    project: str = Field(min_length=1)
    mode: Literal["online", "offline"] = "online"
    entity: str | None = Field(None, min_length=1)


class Tracking(_Strict):
    """Experiment trackers each trial is also sent to (Parquet stays the source of truth)."""

    mlflow: MlflowTracking | None = None
    wandb: WandbTracking | None = None


_TRACKERS: dict[str, type[BaseModel]] = {"mlflow": MlflowTracking, "wandb": WandbTracking}


class Sweep(_Strict):
    name: str = Field(pattern=NAME_PATTERN)
    description: str | None = None
    method: Literal["grid", "optuna"] = "grid"
    metric: Metric = Metric()
    parameters: dict[str, Parameter]
    loss_params: dict[str, dict[str, Any]] = {}
    dataset_params: dict[str, dict[str, Any]] = {}
    resources: Resources = Resources()
    max_concurrent_trials: int | None = Field(None, ge=1)
    max_failures: int = Field(2, ge=0)
    storage: str = "runs"
    claims: str | list[dict[str, Any]] | None = None
    num_samples: int = Field(20, ge=1, description="optuna: trials to sample")
    scheduler: Literal["none", "asha"] = "none"
    pack: Literal["auto"] | int = Field("auto", description="members per pack: auto, or at most N")
    tracking: Tracking = Tracking()

    @field_validator("pack", mode="before")
    @classmethod
    def _pack(cls, pack: Any) -> Literal["auto"] | int:
        if pack == "auto" or (isinstance(pack, int) and not isinstance(pack, bool) and pack >= 1):
            return pack
        raise ValueError(f"must be auto or a whole number of members >= 1 (1: no packing), not {pack!r}")

    def fixed(self) -> dict[str, Any]:
        """Settings with a single value."""
        return {k: p.value for k, p in self.parameters.items() if "value" in p.model_fields_set}

    def overrides(self) -> dict[str, dict[str, dict[str, Any]]]:
        return {"loss_params": self.loss_params, "dataset_params": self.dataset_params}


@dataclass(frozen=True)
class Trial:
    trial_id: str
    config: dict[str, Any]


def _path(prefix: str, loc: Sequence[Any]) -> str:
    out = prefix
    for part in loc:
        if isinstance(part, str) and "[" in part:  # pydantic's union-member tags
            continue
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _model_at(loc: Sequence[Any]) -> type[BaseModel]:
    """The part of the sweep model a pydantic error location points into."""
    if len(loc) >= 2 and loc[0] == "parameters":
        return Parameter
    if len(loc) >= 3 and loc[0] == "tracking":
        return _TRACKERS.get(str(loc[1]), Tracking)
    sections: dict[str, type[BaseModel]] = {"metric": Metric, "resources": Resources, "tracking": Tracking}
    return sections.get(str(loc[0]), Sweep) if len(loc) > 1 else Sweep


def _pydantic_lines(err: ValidationError, prefix: str = "") -> list[str]:
    lines = []
    for e in err.errors():
        msg = e["msg"].removeprefix("Value error, ")
        if e["type"] == "extra_forbidden":
            known = _model_at(e["loc"]).model_fields
            msg = "unknown key; " + not_one_of(e["loc"][-1], known, "a key here").split("; ", 1)[1]
        elif e["type"] == "literal_error":
            msg = f"{msg}, not {e['input']!r}"
        elif e["type"] == "string_pattern_mismatch":
            msg = f"{e['input']!r} must be a plain folder name (letters, digits, '-', '_', '.')"
        lines.append(f"{_path(prefix, e['loc'])}: {msg}")
    return lines


def _check_parameters(method: str, parameters: dict[str, Parameter]) -> Iterator[str]:
    for name, param in parameters.items():
        where = f"parameters.{name}"
        if name not in SETTINGS:
            yield f"{where}: {not_one_of(name, SETTINGS, 'a setting')}"
            continue
        if param.is_range:
            if method != "optuna":
                yield f"{where}: a min/max range needs method: optuna; a grid takes values"
            elif name not in NUMERIC_SETTINGS:
                yield f"{where}: a range is only for numeric settings ({', '.join(NUMERIC_SETTINGS)})"
            continue
        many = "values" in param.model_fields_set
        for i, value in enumerate(param.choices):
            try:
                parse_setting(name, value)
            except ValueError as err:
                yield f"{where}.values[{i}]: {err}" if many else f"{where}.value: {err}"


def _check_nested(data: dict[str, Any]) -> Iterator[str]:
    for key, known in NESTED.items():
        section = data.get(key)
        if not isinstance(section, dict):
            continue  # absent, or a type error the model already reported
        for name, params in section.items():
            if name not in known:
                yield f"{key}.{name}: {not_one_of(name, known, 'a ' + key.split('_')[0])}"
                continue
            if not isinstance(params, dict):
                continue  # a type error the model already reported
            for where, problem in param_problems(params, name, key):
                yield f"{key}.{name}{where}: {problem}"


def _check_claims(claims: Any) -> Iterator[str]:
    if claims is None:
        return
    from mlsweep.claims import load_claims

    try:
        load_claims(claims)
    except ValueError as err:
        yield f"claims: {err}"


def _shorthand(data: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """`loss: triplet` means `loss: {value: triplet}`; a bare list is ambiguous (values to sweep,
    or one list-valued setting such as hidden_sizes), so it is refused with both spellings."""
    raw = data.get("parameters")
    if not isinstance(raw, dict):
        return data, []
    parameters, problems = {}, []
    for name, spec in raw.items():
        if isinstance(spec, list):
            problems.append(f"parameters.{name}: write {{values: {spec}}} to sweep over these values, "
                            f"or {{value: {spec}}} for one list-valued setting")
            continue
        parameters[name] = spec if isinstance(spec, dict) else {"value": spec}
    return {**data, "parameters": parameters}, problems


def _parsable_parameters(raw: Any) -> dict[str, Parameter]:
    """The parameters that are well-formed, so their values get checked even when a sibling
    key is broken (every problem is reported at once)."""
    parsed = {}
    for name, spec in (raw if isinstance(raw, dict) else {}).items():
        try:
            parsed[str(name)] = Parameter.model_validate(spec)
        except ValidationError:
            continue  # reported by the model's own pass
    return parsed


def validate(data: Any, source: str = "<sweep>") -> Sweep:
    """Validate a parsed sweep file; raise UserError with every problem, one line each."""
    if not isinstance(data, dict):
        raise UserError(f"{source}: the sweep file must be a mapping of keys (name, parameters, ...)")
    data, problems = _shorthand(data)
    try:
        sweep = Sweep.model_validate(data)
    except ValidationError as err:
        problems += _pydantic_lines(err)
    problems += [
        *_check_parameters(data.get("method", "grid"), _parsable_parameters(data.get("parameters"))),
        *_check_nested(data),
        *_check_claims(data.get("claims")),
    ]
    if problems:
        raise UserError(*(f"{source}: {line}" for line in problems))
    return sweep


def load_sweep(path: str | Path) -> Sweep:
    """Read a sweep file with a safe YAML loader and validate it."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as err:
        raise UserError(f"{path}: cannot read the sweep file ({err.strerror})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(err, "problem", None) or "malformed YAML"
        raise UserError(f"{path.name}: malformed YAML{where}: {problem}") from None
    return validate(data, path.name)


def expand(sweep: Sweep) -> list[Trial]:
    """Resolved trials of a grid: the product of every `values`, defaults filled in, settings a
    loss does not read dropped, and duplicates (a margin-free loss under several margins) merged."""
    if sweep.method != "grid":
        raise UserError(f"{sweep.name}: method {sweep.method} samples trials while it runs; "
                        "only a grid expands ahead")
    names = list(sweep.parameters)
    trials: dict[str, Trial] = {}
    for combo in itertools.product(*(sweep.parameters[n].choices for n in names)):
        config = resolve(dict(zip(names, combo, strict=True)), sweep.overrides())
        tid = trial_id(config)
        trials.setdefault(tid, Trial(tid, config))
    return list(trials.values())


def totals(sweep: Sweep, trials: Sequence[Trial]) -> dict[str, Any]:
    """Counts people check before launching: trials, trial-epochs, resources per trial."""
    return {
        "trials": len(trials),
        "trial_epochs": sum(t.config["epochs"] for t in trials),
        "resources_per_trial": sweep.resources.model_dump(),
        "max_concurrent_trials": sweep.max_concurrent_trials,
    }
