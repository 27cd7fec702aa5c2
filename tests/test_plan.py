"""`mlsweep plan`: which trials the storage has recorded, and the time estimate of the rest."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import load_yaml, write_sweep
from typer.testing import CliRunner

from mlsweep.cli import app
from mlsweep.estimate import RAY_FIXED_S
from mlsweep.results import write_trial
from mlsweep.spec import expand, validate

runner = CliRunner()


def test_plan_marks_recorded_trials_and_estimates_the_rest_from_history(tmp_path: Path) -> None:
    data = load_yaml("smoke.yaml")
    sweep_file = write_sweep(tmp_path, data)
    storage = tmp_path / "runs"
    trials = expand(validate(data))
    done = [t for t in trials if t.config["seed"] == 0]
    for trial in done:  # 2 epochs in 5 s: 2.5 s per epoch in the driver's view
        write_trial(str(storage / "smoke"), trial.trial_id, "smoke", trial.config,
                    {"status": "completed", "error": None, "attempts": 1, "wall_s": 5.0,
                     "epochs_run": 2, "device": "cpu"}, [], [])
    shown = runner.invoke(app, ["plan", str(sweep_file), "--storage", str(storage), "--format", "json"])
    assert shown.exit_code == 0, shown.output
    payload = json.loads(shown.stdout)
    assert {t["trial_id"]: t["recorded"] for t in payload["trials"]} == {
        t.trial_id: t in done for t in trials}
    assert payload["totals"]["recorded"] == 2 and payload["totals"]["pending"] == 2
    guess = payload["estimate"]
    assert guess["source"] == "history" and guess["slots"] == 2  # max_concurrent_trials: 2
    # The two pending trials (2 epochs x 2.5 s each) side by side, plus Ray's fixed cost.
    assert guess["trial_hours"] == pytest.approx(2 * 5.0 / 3600)
    assert guess["wall_s"] == pytest.approx(RAY_FIXED_S + 5.0)

    table = runner.invoke(app, ["plan", str(sweep_file), "--storage", str(storage)])
    assert table.exit_code == 0, table.output
    assert "4 (2 recorded, 2 to run)" in table.stdout
    wall = f"0:00:{RAY_FIXED_S + 5:02.0f}"
    assert f"estimate: {wall} wall, 0.00 trial-hours on 2 concurrent slots" in table.stdout
    assert "(history: 2 completed trials of matching groups in" in table.stdout
    rows = [line for line in table.stdout.splitlines() if any(t.trial_id in line for t in trials)]
    assert sum("completed" in row for row in rows) == 2
    assert sum(row.rstrip().endswith("no") for row in rows) == 2


def test_plan_without_history_says_there_is_no_estimate(tmp_path: Path) -> None:
    sweep_file = write_sweep(tmp_path, load_yaml("smoke.yaml"))
    shown = runner.invoke(app, ["plan", str(sweep_file), "--storage", str(tmp_path / "empty")])
    assert shown.exit_code == 0, shown.output
    assert "4 (0 recorded, 4 to run)" in shown.stdout
    assert "no estimate: no earlier trials in" in shown.stdout and "--calibrate" in shown.stdout


def test_plan_calibrate_times_one_short_trial_per_group(tmp_path: Path) -> None:
    data = load_yaml("smoke.yaml")
    sweep_file = write_sweep(tmp_path, data)
    shown = runner.invoke(app, ["plan", str(sweep_file), "--storage", str(tmp_path / "empty"),
                                "--calibrate", "--format", "json"])
    assert shown.exit_code == 0, shown.output
    guess = json.loads(shown.stdout)["estimate"]
    assert guess["source"] == "calibration" and "2 groups" in guess["detail"]
    assert guess["wall_s"] > RAY_FIXED_S and guess["trial_hours"] > 0
