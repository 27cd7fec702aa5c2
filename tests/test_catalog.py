"""The catalog: settings parsed the same way everywhere, ids that hash only what sets numbers,
entries whose pointers resolve, and imports that run one way."""

from __future__ import annotations

import ast
import dataclasses
import json
import math
import typing
from dataclasses import replace
from pathlib import Path
from typing import Annotated, Any

import pytest
import yaml
from conftest import ROOT, load_yaml
from typer.testing import CliRunner

from mlsweep import catalog
from mlsweep.catalog import SETTINGS, TrialConfig, parse_setting, resolve, trial_id
from mlsweep.cli import app
from mlsweep.errors import UserError
from mlsweep.spec import expand, validate

runner = CliRunner()

# A valid value of every numeric setting, to be written in each way people write numbers.
VALID = {"margin": 0.5, "seed": 3, "split_seed": 2, "test_size": 0.25, "epochs": 20, "batch_size": 64,
         "lr": 0.001, "weight_decay": 0.0001, "m_per_class": 4, "embedding_dim": 32, "eval_every": 5,
         "train_subset": 500, "fail_at_epoch": 0, "checkpoint_every": 2, "checkpoint_minutes": 0.5}


def spellings(value: float | int) -> list[Any]:
    """`value` as YAML and command lines give it: plain, scientific, upper-case E, leading dot."""
    out: list[Any] = [value, str(value), f"{value:e}", f"{value:E}"]
    if isinstance(value, float) and 0 < value < 1:
        out.append(str(value).removeprefix("0"))  # ".5"
    return out


def test_every_numeric_setting_of_the_catalog_is_exercised() -> None:
    assert set(VALID) == {name for name, s in SETTINGS.items() if s.numeric}


@pytest.mark.parametrize("name", sorted(VALID))
def test_numeric_settings_take_the_ways_people_write_numbers(name: str) -> None:
    value = VALID[name]
    for written in spellings(value):
        parsed = parse_setting(name, written)
        assert parsed == pytest.approx(value, rel=1e-12), (name, written)
        if SETTINGS[name].column == "int64":
            assert isinstance(parsed, int), (name, written)
    for bad in ("fast", "1e-3x", "", "nan", "inf", True, [1], {"a": 1}):
        with pytest.raises(ValueError, match="not a"):
            parse_setting(name, bad)


def test_whole_number_settings_refuse_fractions() -> None:
    with pytest.raises(ValueError, match="not a whole number"):
        parse_setting("epochs", ".5")
    assert parse_setting("epochs", "1e1") == 10


def test_a_sweep_file_with_1e_3_plans_and_resolves_a_number(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text("name: s\nparameters:\n  lr: {value: 1e-3}\n  margin: {values: [.5, 1E-1]}\n")
    result = runner.invoke(app, ["plan", str(path), "--format", "json"])
    assert result.exit_code == 0, result.stderr
    configs = [t["config"] for t in json.loads(result.stdout)["trials"]]
    assert [c["lr"] for c in configs] == [0.001, 0.001]
    assert sorted(c["margin"] for c in configs) == [0.1, 0.5]
    path.write_text("name: s\nparameters:\n  lr: {value: fast}\n")
    bad = runner.invoke(app, ["plan", str(path)])
    assert bad.exit_code == 2
    assert bad.stderr.strip() == "error: s.yaml: parameters.lr.value: 'fast' is not a number"


def test_sweep_files_take_the_scalar_shorthand_and_suggest_close_names(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text("name: s\nparameters:\n  loss: triplet\n  epochs: 3\n")
    configs = [t["config"] for t in json.loads(runner.invoke(app, ["plan", str(path), "--format", "json"])
                                                .stdout)["trials"]]
    assert [(c["loss"], c["epochs"]) for c in configs] == [("triplet", 3)]
    path.write_text("name: s\nmethod: gird\nparamters: {}\nparameters:\n  hidden_sizes: [32]\n"
                    "  epochs: {valu: 3}\n")
    result = runner.invoke(app, ["plan", str(path)])
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [
        "error: s.yaml: parameters.hidden_sizes: write {values: [32]} to sweep over these values, "
        "or {value: [32]} for one list-valued setting",
        "error: s.yaml: method: Input should be 'grid' or 'optuna', not 'gird'",
        "error: s.yaml: parameters.epochs.valu: unknown key; did you mean 'value'? known: value, values, "
        "min, max, distribution",
        "error: s.yaml: paramters: unknown key; did you mean 'parameters'? known: name, description, "
        "method, metric, parameters, loss_params, dataset_params, resources, max_concurrent_trials, "
        "max_failures, storage, claims, num_samples, scheduler, pack, tracking"]


def test_set_and_run_trial_parse_numbers_the_same_way() -> None:
    from mlsweep import run_trial

    tiny = {"dataset": "digits", "epochs": 1, "hidden_sizes": [8], "embedding_dim": 8,
            "train_subset": 100, "diagnostics": ["greediness"]}
    result = run_trial({**tiny, "lr": "1e-3", "batch_size": "64"})
    assert result.summary["status"] == "completed"
    with pytest.raises(UserError, match=r"^run_trial: lr: 'fast' is not a number$"):
        run_trial({**tiny, "lr": "fast"})
    cli = runner.invoke(app, ["train", "--format", "json", "--dataset", "digits", "--set", "lr=1e-3",
                              "--set", "epochs=1", "--set", "hidden_sizes=[8]",
                              "--set", "diagnostics=[greediness]"])
    assert cli.exit_code == 0, cli.output
    assert json.loads(cli.stdout)["config"]["lr"] == 0.001
    bad = runner.invoke(app, ["train", "--set", "lr=fast"])
    assert bad.exit_code == 2 and bad.stderr.strip() == "error: --set lr: 'fast' is not a number"


# --------------------------------------------------------------------------- --set like a sweep file


def train_errors(*args: str) -> tuple[int, list[str]]:
    result = runner.invoke(app, ["train", *args])
    return result.exit_code, [ln for ln in result.stderr.splitlines() if ln]


def test_set_checks_loss_params_as_a_sweep_file_does() -> None:
    assert train_errors("--loss", "arcface", "--set", "loss_params={scale:64}") == (
        2, ["error: --set loss_params.scale:64: 'scale:64' is not a parameter of arcface; did you mean "
            "'scale'? known: margin_deg, scale"])
    assert train_errors("--loss", "arcface", "--set", "loss_params={bogus: 1}") == (
        2, ["error: --set loss_params.bogus: 'bogus' is not a parameter of arcface; "
            "known: margin_deg, scale"])
    assert train_errors("--loss", "arcface", "--set", "loss_params={scale: big}") == (
        2, ["error: --set loss_params.scale: 'big' is not a number"])


def test_set_and_options_must_agree() -> None:
    code, lines = train_errors("--set", "dataset=digits", "--dataset", "synthetic")
    assert code == 2 and lines == ["error: --dataset synthetic and --set dataset=digits disagree: give one"]
    code, lines = train_errors("--set", "epochs=1", "--set", "epochs=2")
    assert code == 2 and lines == ["error: --set epochs: given twice"]
    code, lines = train_errors("--loss", "tripplet")
    assert code == 2 and lines[0].startswith(
        "error: --loss: 'tripplet' is not a loss; did you mean 'triplet'? known: ")


def test_set_loss_is_the_loss_that_trains() -> None:
    result = runner.invoke(app, ["train", "--format", "json", "--set", "loss=contrastive", "--dataset",
                                 "digits", "--set", "epochs=1", "--set", "hidden_sizes=[8]",
                                 "--set", "diagnostics=[greediness]", "--set", "loss_params={}"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["config"]["loss"] == "contrastive"


@pytest.mark.parametrize(("claim", "message"), [
    ({"a": "tripplet", "b": "contrastive", "metric": "map_at_r"}, "'tripplet' is not a loss"),
    ({"a": "triplet", "b": "contrastive", "metric": "map_at_rr"}, "'map_at_rr' is not a metric"),
])
def test_a_claims_file_naming_an_unknown_loss_or_metric_is_refused(tmp_path: Path, claim: dict[str, str],
                                                                     message: str) -> None:
    (tmp_path / "results").mkdir()  # a run folder, as `mlsweep train --out` leaves one
    claims = tmp_path / "claims.yaml"
    claims.write_text(yaml.safe_dump([claim]))
    result = runner.invoke(app, ["analyze", str(tmp_path), "--claims", str(claims)])
    assert result.exit_code == 2
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1


# --------------------------------------------------------------------------- trial ids


def test_ids_of_the_smoke_and_quickstart_sweeps_stay() -> None:
    held = json.loads((Path(__file__).parent / "trial_ids.json").read_text())
    for name, ids in held.items():
        assert sorted(t.trial_id for t in expand(validate(load_yaml(name)))) == ids, name


def test_where_the_data_lies_never_changes_an_id() -> None:
    config = expand(validate(load_yaml("smoke.yaml")))[0].config
    moved = {**config, "data_dir": "/mnt/other-node/data", "download": True}
    assert trial_id(moved) == trial_id(config)
    assert trial_id({**config, "lr": 0.01}) != trial_id(config)


def test_a_setting_added_later_changes_no_id_at_its_default(monkeypatch: pytest.MonkeyPatch) -> None:
    config = expand(validate(load_yaml("smoke.yaml")))[0].config
    before = trial_id(config)
    sets_numbers = replace(SETTINGS["seed"], name="new_knob", default=3, since="0.2")
    detail = replace(SETTINGS["download"], name="new_detail", since="0.2")
    monkeypatch.setitem(SETTINGS, "new_knob", sets_numbers)
    monkeypatch.setitem(SETTINGS, "new_detail", detail)
    assert trial_id({**config, "new_knob": 3, "new_detail": True}) == before
    assert trial_id({**config, "new_knob": 4}) != before


def test_every_execution_detail_is_outside_the_id() -> None:
    details = {name for name, s in SETTINGS.items() if not s.sets_numbers}
    assert {"data_dir", "download"} <= details
    config = resolve({"dataset": "digits"})
    for name in details:
        changed = {**config, name: not config[name] if isinstance(config[name], bool) else "elsewhere"}
        assert trial_id(changed) == trial_id(config), name


# --------------------------------------------------------------------------- entries


@pytest.mark.parametrize(("table", "attribute"), [
    (catalog.LOSSES, "builder"), (catalog.DATASETS, "loader"), (catalog.MODELS, "builder"),
    (catalog.REPORTERS, "impl")])
def test_every_entry_points_at_its_implementation(table: dict[str, Any], attribute: str) -> None:
    for name, info in table.items():
        assert callable(catalog.load(getattr(info, attribute))), name


def test_dataset_defaults_name_catalog_entries() -> None:
    for info in catalog.DATASETS.values():
        assert info.default_model in catalog.MODELS and info.default_split in catalog.SPLITS
        assert not info.colour or info.image


def test_every_metric_has_a_direction_only_where_comparable() -> None:
    for name, metric in catalog.METRICS.items():
        assert metric.comparable or metric.better is None, name
        assert metric.reporter is None or metric.reporter in catalog.REPORTERS, name
    assert not catalog.METRICS["eval_s"].comparable and not catalog.METRICS["train_loss"].comparable
    assert catalog.METRICS["grad_norm"].better is None and catalog.METRICS["map_at_r"].better == "higher"


def test_defaults_are_valid_values_of_their_own_settings() -> None:
    for name, setting in SETTINGS.items():
        if setting.default is not None:
            parsed = parse_setting(name, setting.default)
            assert parsed == setting.default or (isinstance(parsed, float) and math.isclose(
                parsed, setting.default)), name


# --------------------------------------------------------------------------- the trial config

# A result column's type as a TrialConfig field holds it (a json column is a list: a tuple).
FIELD_TYPES = {"float64": float, "int64": int, "string": str, "bool": bool}


def _bare(hint: Any) -> Any:
    """`hint` without its pydantic Annotated metadata (validators, bounds)."""
    while typing.get_origin(hint) is Annotated:
        hint = typing.get_args(hint)[0]
    return hint


def _expected_field_type(name: str, setting: catalog.Setting) -> Any:
    """The type the catalog gives a TrialConfig field: its column's, None where a resolved
    config may lack it (CONDITIONAL) or leave it unset (its default None, not filled in)."""
    if setting.column == "json":
        (element,) = typing.get_args(_bare(setting.type))
        base: Any = tuple[_bare(element), ...]
    else:
        base = FIELD_TYPES[setting.column]
    optional = name in catalog.CONDITIONAL or resolve({})[name] is None
    return base | None if optional else base


def test_trial_config_fields_are_the_catalog_settings() -> None:
    hints = typing.get_type_hints(TrialConfig)
    assert list(hints) == [*SETTINGS, *catalog.NESTED]
    for name, setting in SETTINGS.items():
        assert hints[name] == _expected_field_type(name, setting), name
    for key in catalog.NESTED:
        assert hints[key] == dict[str, int | float | bool], key


def test_a_setting_without_a_field_is_refused_not_dropped(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(SETTINGS, "new_knob", replace(SETTINGS["seed"], name="new_knob", since="0.2"))
    with pytest.raises(TypeError, match="new_knob"):
        TrialConfig.from_mapping({})


def _spread() -> list[dict[str, Any]]:
    """Partial configs reaching every loss, data set, model and sampler, and so every
    setting's presence and absence (CONDITIONAL)."""
    out: list[dict[str, Any]] = [{"loss": loss, "dataset": dataset}
                                 for loss in catalog.LOSSES for dataset in catalog.DATASETS]
    out += [{"model": model} for model in catalog.MODELS]
    out += [{"sampler": "m_per_class", "m_per_class": 8, "margin": 1, "hidden_sizes": [4, 2],
             "data_dir": "/data", "augment": True, "loss_params": {"margin": 0.2},
             "loss": "proxy_anchor"}]
    return out


@pytest.mark.parametrize("partial", _spread(), ids=lambda p: "-".join(map(str, p.values()))[:60])
def test_a_trial_config_holds_exactly_the_resolved_config(partial: dict[str, Any]) -> None:
    from pydantic import TypeAdapter

    resolved = resolve(partial)
    config = TrialConfig.from_mapping(partial)
    as_dict = config.as_dict()
    assert as_dict == resolved and list(as_dict) == list(resolved)
    assert json.dumps(as_dict) == json.dumps(resolved)  # 1 stays 1, lists stay lists
    assert trial_id(as_dict) == trial_id(resolved)
    assert TrialConfig.from_mapping(as_dict) == config
    for name, hint in typing.get_type_hints(TrialConfig).items():
        TypeAdapter(hint).validate_python(getattr(config, name), strict=True)  # raises if not
    for name in catalog.CONDITIONAL:
        assert (getattr(config, name) is None) == (name not in resolved), name


def test_trial_configs_keep_the_held_trial_ids() -> None:
    for name in json.loads((Path(__file__).parent / "trial_ids.json").read_text()):
        for trial in expand(validate(load_yaml(name))):
            assert trial_id(TrialConfig.from_mapping(trial.config).as_dict()) == trial.trial_id


def test_a_trial_config_is_read_only_and_checked() -> None:
    config = TrialConfig.from_mapping({"batch_size": "64"})
    assert config.batch_size == 64
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.batch_size = 32  # type: ignore[misc]
    with pytest.raises(AttributeError):
        config.batchsize  # type: ignore[attr-defined]  # noqa: B018
    with pytest.raises(UserError) as err:
        TrialConfig.from_mapping({"lr": "fast", "batchsize": 64}, lambda key: f"here: {key}")
    assert str(err.value).splitlines() == [
        "here: lr: 'fast' is not a number",
        "here: batchsize: 'batchsize' is not a setting; did you mean 'batch_size'? "
        f"known: {', '.join(SETTINGS)}"]


# --------------------------------------------------------------------------- import direction

# Each room may import only rooms of a lower layer: the catalog below all, the CLI on top.
LAYERS = {"errors": 0, "catalog": 1, "claims": 2, "spec": 3, "results": 3, "runfolder": 4,
          "packs": 4, "diagnostics": 4, "trainer": 5, "progress": 5, "signals": 5, "tracking": 5,
          "writeback": 5, "raywatch": 5, "rayfast": 5, "rayconnect": 6, "worker": 6, "orchestrator": 7,
          "cluster": 7, "status": 7, "estimate": 7, "analysis": 8, "report_charts": 8, "report": 9, "cli": 10}


def _is_room(name: str) -> bool:
    """A module or subpackage of mlsweep (not a name its __init__ re-exports)."""
    package = ROOT / "mlsweep"
    return (package / f"{name}.py").exists() or (package / name / "__init__.py").exists()


def imported_rooms(path: Path) -> set[str]:
    rooms = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                 else [node.module] if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module
                 else [])
        if isinstance(node, ast.ImportFrom) and node.module == "mlsweep":  # from mlsweep import results
            names = [f"mlsweep.{a.name}" for a in node.names if _is_room(a.name)]
        rooms |= {n.split(".")[1] for n in names if n.startswith("mlsweep.")}
    return rooms


def test_imports_run_one_way_down_the_layers() -> None:
    package = ROOT / "mlsweep"
    against = []
    for path in sorted(package.rglob("*.py")):
        parts = path.relative_to(package).with_suffix("").parts
        room = parts[0]
        if room in ("__init__", "__main__"):
            continue
        assert room in LAYERS, f"{room}: place the new room in LAYERS"
        for other in imported_rooms(path) - {room, "__init__"}:
            assert other in LAYERS, f"{path}: imports the unknown room {other}"
            if LAYERS[other] >= LAYERS[room]:
                against.append(f"{path.relative_to(ROOT)} imports {other}")
    assert not against, against


def test_the_catalog_imports_no_torch_and_nothing_above_it() -> None:
    import subprocess
    import sys

    code = ("import sys, mlsweep.catalog; "
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'ray', 'pandas'}), "
            "sorted(m for m in sys.modules if m.startswith('mlsweep.') and not m.startswith("
            "('mlsweep.catalog', 'mlsweep.errors'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[] []"


def test_the_reference_docs_are_the_catalog() -> None:
    from mlsweep.catalog.describe import reference_markdown

    assert (ROOT / "docs" / "reference.md").read_text() == reference_markdown(), (
        "regenerate: python -m mlsweep.catalog.describe > docs/reference.md")


def test_help_screens_read_the_catalog() -> None:
    plan = runner.invoke(app, ["plan", "--help"], terminal_width=400).stdout
    for table in (catalog.LOSSES, catalog.DATASETS, catalog.MODELS):
        for name, info in table.items():
            assert f"{name}: {info.doc}" in " ".join(plan.split()), name
    train = " ".join(runner.invoke(app, ["train", "--help"], terminal_width=400).stdout.split())
    for name, setting in SETTINGS.items():
        assert f"{name} (default {setting.default!r}): {setting.doc}" in train, name
    assert all(loss in train for loss in catalog.LOSSES)
