"""`mlsweep plan`: which trials the storage has recorded, and the time estimate of the rest."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import load_yaml, write_sweep
from typer.testing import CliRunner

from mlsweep.cli import app
from mlsweep.estimate import RAY_FIXED_S, TUNE_SETUP_S
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
    assert "4 (2 recorded, 2 to run in 2 packs for 2 slots here)" in table.stdout
    wall = f"0:00:{RAY_FIXED_S + 5:02.0f}"
    assert f"estimate: {wall} wall, 0.00 trial-hours on 2 concurrent slots" in table.stdout
    assert "(history: 2 completed trials of matching groups in" in table.stdout
    rows = [line for line in table.stdout.splitlines() if any(t.trial_id in line for t in trials)]
    assert sum("completed" in row for row in rows) == 2
    assert sum(row.rstrip().endswith("no") for row in rows) == 2


def test_plan_shows_the_packs_a_launch_here_trains(tmp_path: Path) -> None:
    data = load_yaml("smoke.yaml")
    data["parameters"]["seed"] = {"values": [0, 1, 2, 3]}  # two losses x four seeds, two slots
    sweep_file = write_sweep(tmp_path, data)
    shown = runner.invoke(app, ["plan", str(sweep_file), "--storage", str(tmp_path), "--format", "json"])
    payload = json.loads(shown.stdout)
    packs = payload["packs"]
    assert payload["totals"]["packs"] == len(packs) == 2 and [len(p["trials"]) for p in packs] == [4, 4]
    by_trial = {t["trial_id"]: t for t in payload["trials"]}
    for pack in packs:
        assert len({by_trial[tid]["config"]["loss"] for tid in pack["trials"]}) == 1
        assert all(by_trial[tid]["pack_id"] == pack["pack_id"] for tid in pack["trials"])
    table = runner.invoke(app, ["plan", str(sweep_file), "--storage", str(tmp_path)]).stdout
    assert "8 to run in 2 packs for 2 slots here" in table
    assert sum(" 1 (4) " in line for line in table.splitlines()) == 4
    alone = runner.invoke(app, ["plan", str(write_sweep(tmp_path, {**data, "pack": 1}, "alone.yaml")),
                                "--storage", str(tmp_path), "--format", "json"])
    assert json.loads(alone.stdout)["totals"]["packs"] == 8


def test_plan_without_history_says_there_is_no_estimate(tmp_path: Path) -> None:
    sweep_file = write_sweep(tmp_path, load_yaml("smoke.yaml"))
    shown = runner.invoke(app, ["plan", str(sweep_file), "--storage", str(tmp_path / "empty")])
    assert shown.exit_code == 0, shown.output
    assert "4 (0 recorded, 4 to run in 2 packs for 2 slots here)" in shown.stdout
    assert "no estimate: no earlier trials in" in shown.stdout and "--calibrate" in shown.stdout


def test_plan_calibrate_times_one_short_trial_per_group(tmp_path: Path) -> None:
    data = load_yaml("smoke.yaml")
    sweep_file = write_sweep(tmp_path, data)
    shown = runner.invoke(app, ["plan", str(sweep_file), "--storage", str(tmp_path / "empty"),
                                "--calibrate", "--format", "json"])
    assert shown.exit_code == 0, shown.output
    guess = json.loads(shown.stdout)["estimate"]
    assert guess["source"] == "calibration" and "2 groups" in guess["detail"]
    assert "Ray's start and stop measured" in guess["detail"]
    assert guess["wall_s"] > TUNE_SETUP_S and guess["trial_hours"] > 0


def test_status_prints_whole_exception_names_and_seconds_at_one_precision(tmp_path: Path) -> None:
    """Each failure is one line (a terminal wraps it; a table would cut the exception's name)."""
    data = load_yaml("smoke.yaml")
    run_dir = tmp_path / "smoke"
    errors = ["torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB (GPU 0; "
              "79.1 GiB total capacity)\n  File loop.py, line 3", "non-finite loss at epoch 1, step 3"]
    walls = [1234.5678, 3.0, 12.04, 0.25]
    for i, trial in enumerate(expand(validate(data))):
        status = ("failed", "diverged", "completed", "completed")[i]
        write_trial(str(run_dir), trial.trial_id, "smoke", trial.config,
                    {"status": status, "error": errors[i] if i < 2 else None, "attempts": 1,
                     "wall_s": walls[i], "epochs_run": 2, "device": "cpu"}, [], [])
    shown = CliRunner().invoke(app, ["status", str(run_dir)], env={"COLUMNS": "80"}, terminal_width=80)
    assert shown.exit_code == 0, shown.output
    failed = [t.trial_id for t in expand(validate(data))[:2]]
    assert (f"  {failed[0]}  contrastive on digits  failed (1 attempt)  torch.OutOfMemoryError: CUDA out "
            "of memory. Tried to allocate 2.00 GiB (GPU 0; 79.1 GiB total capacity)\n") in shown.stdout
    diverged = f"  {failed[1]}  contrastive on digits  diverged (1 attempt)  non-finite loss at epoch 1, step"
    assert diverged + " 3\n" in shown.stdout
    for wall in ("1234.6", "3.0", "12.0", "0.2"):
        assert f" {wall} " in shown.stdout, shown.stdout
    assert "1234.57" not in shown.stdout and "12.04" not in shown.stdout


def test_analyze_help_points_to_the_claims_format() -> None:
    shown = CliRunner().invoke(app, ["analyze", "--help"], terminal_width=200)
    assert "docs/sweep-file.md#claims" in shown.stdout
    assert (Path(__file__).parents[1] / "docs" / "sweep-file.md").read_text().count("## Claims") == 1
