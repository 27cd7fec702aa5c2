"""The sweep file: expansion, trial ids, and every validation error through the real CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import ROOT, load_yaml, write_sweep
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from mlsweep import catalog
from mlsweep.catalog import SETTINGS, resolve, trial_id
from mlsweep.cli import app
from mlsweep.spec import expand, validate

runner = CliRunner()


def plan(path: Path, *args: str) -> Any:
    return runner.invoke(app, ["plan", str(path), *args])


def errors_of(tmp_path: Path, data: Any) -> tuple[int, list[str]]:
    path = tmp_path / "quickstart.yaml"
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data))
    result = plan(path)
    return result.exit_code, [ln for ln in result.stderr.splitlines() if ln]


# --------------------------------------------------------------------------- expansion


def test_quickstart_expands_to_the_full_grid() -> None:
    trials = expand(validate(load_yaml("quickstart.yaml")))
    assert len(trials) == 2 * 2 * 3 * 6
    assert len({t.trial_id for t in trials}) == len(trials)
    first = trials[0].config
    assert set(first) >= {"loss", "dataset", "margin", "seed", "epochs", "batch_size", "lr", "model",
                          "miner", "split_seed", "loss_params", "dataset_params"}
    assert {t.config["model"] for t in trials} == {"mlp"}  # the data sets' default model


def test_margin_free_loss_appears_once_not_once_per_margin() -> None:
    data = load_yaml("quickstart.yaml")
    data["parameters"]["loss"]["values"] = ["triplet", "infonce", "supcon"]
    trials = expand(validate(data))
    by_loss = {loss: [t for t in trials if t.config["loss"] == loss] for loss in ("triplet", "infonce")}
    assert len(by_loss["triplet"]) == 2 * 3 * 6 and len(by_loss["infonce"]) == 2 * 6
    assert all("margin" not in t.config and "miner" not in t.config for t in by_loss["infonce"])
    assert by_loss["infonce"][0].config["loss_params"] == {"temperature": 0.1}


def test_loss_params_reach_only_their_loss() -> None:
    data = load_yaml("smoke.yaml")
    data["parameters"]["loss"]["values"] = ["arcface", "triplet"]
    data["loss_params"] = {"arcface": {"scale": 30}}
    configs = {t.config["loss"]: t.config for t in expand(validate(data))}
    assert configs["arcface"]["loss_params"] == {"margin_deg": 28.6, "scale": 30}
    assert configs["triplet"]["loss_params"] == {}


def test_trial_id_is_stable_across_processes_and_key_order() -> None:
    config = expand(validate(load_yaml("smoke.yaml")))[0].config
    shuffled = dict(reversed(list(config.items())))
    code = ("import json, sys; from mlsweep.catalog import trial_id; "
            "print(trial_id(json.loads(sys.stdin.read())))")
    other = subprocess.run([sys.executable, "-c", code], input=json.dumps(shuffled), text=True,
                           capture_output=True, check=True, env={"PYTHONHASHSEED": "123"})
    assert other.stdout.strip() == trial_id(config) == trial_id(shuffled)
    assert trial_id({**config, "seed": 99}) != trial_id(config)


def test_resolve_is_idempotent() -> None:
    for trial in expand(validate(load_yaml("quickstart.yaml")))[:5]:
        assert resolve(trial.config) == trial.config


@settings(max_examples=40, deadline=None)
@given(
    losses=st.lists(st.sampled_from(sorted(catalog.LOSSES)), min_size=1, max_size=4, unique=True),
    datasets=st.lists(st.sampled_from(["synthetic", "digits"]), min_size=1, max_size=2, unique=True),
    margins=st.lists(st.floats(0, 2, allow_nan=False), min_size=1, max_size=3, unique=True),
    seeds=st.lists(st.integers(0, 100), min_size=1, max_size=4, unique=True),
)
def test_expansion_counts(losses: list[str], datasets: list[str], margins: list[float],
                          seeds: list[int]) -> None:
    data = {"name": "p", "parameters": {"loss": {"values": losses}, "dataset": {"values": datasets},
                                        "margin": {"values": margins}, "seed": {"values": seeds}}}
    trials = expand(validate(data))
    per_loss = [len(margins) if "margin" in catalog.LOSSES[loss].uses else 1 for loss in losses]
    assert len(trials) == sum(per_loss) * len(datasets) * len(seeds)
    assert len({t.trial_id for t in trials}) == len(trials)


# --------------------------------------------------------------------------- validation


def test_every_problem_is_reported_at_once_one_line_each(tmp_path: Path) -> None:
    data = load_yaml("quickstart.yaml")
    data["parameters"]["loss"]["values"] = ["contrastive", "tripplet"]
    data["parameters"]["epochs"] = {"value": 0}
    data["parameters"]["batch_size"] = {"value": 1}
    data["parameters"]["margin"] = {"values": [0.5, -1]}
    data["parameters"]["lr"] = {"min": 1e-4, "max": 1e-2, "distribution": "log_uniform"}
    data["parameters"]["depth"] = {"value": 3}
    data["parameters"]["seed"] = {"values": []}
    data["resources"] = {"cpu": 1, "gpu": 1.5}
    data["name"] = "../escape"
    data["colour"] = "blue"
    code, lines = errors_of(tmp_path, data)
    assert code == 2
    expected = [
        "quickstart.yaml: parameters.loss.values[1]: 'tripplet' is not a loss; did you mean 'triplet'? "
        "known: contrastive,",
        "quickstart.yaml: parameters.epochs.value: Input should be greater than 0",
        "quickstart.yaml: parameters.batch_size.value: Input should be greater than or equal to 2",
        "quickstart.yaml: parameters.margin.values[1]: Input should be greater than or equal to 0",
        "quickstart.yaml: parameters.lr: a min/max range needs method: optuna",
        "quickstart.yaml: parameters.depth: 'depth' is not a setting; known: loss, dataset,",
        "quickstart.yaml: parameters.seed: values must not be empty",
        "quickstart.yaml: resources.gpu: gpu above 1 must be a whole number, got 1.5",
        "quickstart.yaml: name: '../escape' must be a plain folder name",
        "quickstart.yaml: colour: unknown key",
    ]
    for start in expected:
        assert sum(ln.startswith(f"error: {start}") for ln in lines) == 1, (start, lines)
    assert len(lines) == len(expected)
    assert not any("Traceback" in ln for ln in lines)


@pytest.mark.parametrize(("data", "message"), [
    ("name: x\nparameters: {loss: {values: [a}\n", "quickstart.yaml: malformed YAML at line 2"),
    ("- just\n- a list\n", "the sweep file must be a mapping"),
    ("name: x\nparameters: {loss: !!python/object/apply:os.system [echo hi]}\n", "malformed YAML"),
    ({"name": "x", "parameters": {"loss": {"value": "triplet", "values": ["triplet"]}}},
     "parameters.loss: give exactly one of value, values"),
    ({"name": "x", "parameters": {"epochs": {"value": "ten"}}},
     "parameters.epochs.value: 'ten' is not a number"),
    ({"name": "x", "parameters": {"dataset": {"values": ["digits", "imagenet"]}}},
     "parameters.dataset.values[1]: 'imagenet' is not a dataset; did you mean 'tiny_imagenet'?"),
    ({"name": "x", "method": "bayes", "parameters": {}}, "method: Input should be 'grid' or 'optuna'"),
    ({"name": "x", "method": "optuna", "parameters": {"loss": {"min": 0, "max": 1}}},
     "parameters.loss: a range is only for numeric settings"),
    ({"name": "x", "parameters": {}, "metric": {"name": "acc"}}, "metric.name: 'acc' is not a metric"),
    ({"name": "x", "parameters": {}, "loss_params": {"arcfce": {}}},
         "loss_params.arcfce: 'arcfce' is not a loss; did you mean 'arcface'?"),
    ({"name": "x", "parameters": {}, "max_failures": -1},
     "max_failures: Input should be greater than or equal to 0"),
    ({"parameters": {}}, "name: Field required"),
    ({"name": ".hidden", "parameters": {}}, "name: '.hidden' must be a plain folder name"),
])
def test_bad_sweep_files_exit_2_with_a_clear_line(tmp_path: Path, data: Any, message: str) -> None:
    code, lines = errors_of(tmp_path, data)
    assert code == 2
    assert any(message in ln for ln in lines), lines
    assert all(ln.startswith("error: ") for ln in lines)


def test_missing_sweep_file(tmp_path: Path) -> None:
    result = plan(tmp_path / "nope.yaml")
    assert result.exit_code == 2 and "cannot read the sweep file" in result.stderr


def test_whole_gpus_and_fractions_are_fine(tmp_path: Path) -> None:
    for gpu in (0.25, 1, 2):
        data = {**load_yaml("smoke.yaml"), "resources": {"cpu": 1, "gpu": gpu}}
        assert plan(write_sweep(tmp_path, data)).exit_code == 0


# --------------------------------------------------------------------------- plan


def test_plan_json_lists_every_trial_with_its_runnable_config() -> None:
    result = plan(ROOT / "sweeps" / "quickstart.yaml", "--format", "json")
    assert result.exit_code == 0
    payload = json.loads(result.stdout)
    trials = expand(validate(load_yaml("quickstart.yaml")))
    assert payload["sweep"] == "quickstart"
    assert [t["trial_id"] for t in payload["trials"]] == [t.trial_id for t in trials]
    assert payload["trials"][0]["config"] == trials[0].config
    assert payload["totals"]["trials"] == 72 and payload["totals"]["trial_epochs"] == 72 * 20
    assert set(payload["trials"][0]["config"]) - {"loss_params", "dataset_params"} <= set(SETTINGS)


def test_plan_table_shows_trials_and_totals() -> None:
    result = plan(ROOT / "sweeps" / "smoke.yaml")
    assert result.exit_code == 0
    for trial in expand(validate(load_yaml("smoke.yaml"))):
        assert trial.trial_id in result.stdout
    assert "trials: 4" in result.stdout and "trial-epochs: 8" in result.stdout


def test_every_command_has_help() -> None:
    top = runner.invoke(app, ["--help"])
    assert top.exit_code == 0
    for command in ("plan", "train", "launch", "status"):
        assert command in top.stdout
        sub = runner.invoke(app, [command, "--help"])
        assert sub.exit_code == 0 and "Usage" in sub.stdout


def test_train_rejects_bad_settings_in_one_line_each() -> None:
    result = runner.invoke(app, ["train", "--loss", "tripplet", "--set", "epochs=0"])
    lines = [ln for ln in result.stderr.splitlines() if ln]
    assert result.exit_code == 2 and len(lines) == 2
    assert "'tripplet' is not a loss" in lines[1] or "'tripplet' is not a loss" in lines[0]


def test_train_runs_one_trial_and_writes_its_tables(tmp_path: Path) -> None:
    from mlsweep import read_results

    result = runner.invoke(app, ["train", "--loss", "triplet", "--dataset", "digits", "--set", "epochs=2",
                                 "--set", "hidden_sizes=[16]", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "epoch   2" in result.stdout and "map_at_r" in result.stdout
    # The closing table has every epoch column, each on its own line (metrics as rows).
    lines = result.stdout.splitlines()
    for column in catalog.EPOCH_METRICS:
        assert any(line.split()[:1] == [column] for line in lines), column
    assert "status: completed" in result.stdout
    assert len(read_results(str(tmp_path), "epochs")) == 2


@pytest.mark.parametrize("path", sorted((ROOT / "sweeps").glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_sweep_file_is_valid(path: Path) -> None:
    result = plan(path, "--format", "json")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["totals"]["trials"] > 0
