"""The CLI's contract without Ray: one-line errors (exit 2) before any work, one wording for a
folder that is no run folder, exit codes a script can trust, `status --format json`."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import ROOT, load_yaml, write_sweep
from typer.testing import CliRunner

from mlsweep.cli import app
from mlsweep.results import write_trial
from mlsweep.spec import expand, validate

runner = CliRunner()
NOT_A_RUN_FOLDER = "not a run folder (no manifest.json or results/)"


def invoke(*args: str) -> Any:
    return runner.invoke(app, list(args))


def one_line_error(result: Any, code: int = 2) -> str:
    """The single `error:` line a refused command prints, checked to be just that."""
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output and result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith("error: ")
    return result.stderr


def smoke_sweep(folder: Path) -> tuple[Path, dict[str, Any]]:
    data = load_yaml("smoke.yaml")
    return write_sweep(folder, data), data


def record(run_dir: Path, data: dict[str, Any], status: str) -> list[str]:
    """Every trial of `data` recorded with `status` (real Parquet, as the driver writes it)."""
    ids = []
    for trial in expand(validate(data)):
        summary = {"status": status, "error": "boom" if status == "failed" else None, "attempts": 1,
                   "wall_s": 1.5, "epochs_run": 0, "device": "cpu"}
        write_trial(str(run_dir), trial.trial_id, data["name"], trial.config, summary, [], [])
        ids.append(trial.trial_id)
    return ids


def test_the_module_runs_as_the_cluster_entrypoint_does() -> None:
    done = subprocess.run([sys.executable, "-m", "mlsweep.cli", "--version"], capture_output=True,
                          text=True, timeout=60, cwd=ROOT)
    assert done.returncode == 0 and done.stdout.startswith("mlsweep ")


@pytest.mark.parametrize("command", ["plan", "status"])
def test_an_unknown_format_is_one_line(command: str, tmp_path: Path) -> None:
    target = smoke_sweep(tmp_path)[0] if command == "plan" else tmp_path
    assert "'xml' is not a format; known: table, json" in one_line_error(
        invoke(command, str(target), "--format", "xml"))


def test_status_analyze_and_report_name_a_non_run_folder_alike(tmp_path: Path) -> None:
    (tmp_path / "stray.txt").write_text("not a sweep")
    lines = {command: one_line_error(invoke(command, str(tmp_path)))
             for command in ("status", "analyze", "report")}
    assert set(lines.values()) == {f"error: {tmp_path}: {NOT_A_RUN_FOLDER}; give <storage>/<sweep name> "
                                   "of a launched sweep\n"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["stray.txt"]  # nothing written


@pytest.mark.parametrize("case", ["storage is a file", "storage under a file",
                                  "a file where the run folder goes", "storage read-only"])
def test_launch_refuses_an_unwritable_storage_before_starting(case: str, tmp_path: Path) -> None:
    sweep_file, _ = smoke_sweep(tmp_path)
    blocker = tmp_path / "file"
    blocker.write_text("keep me")
    storage, expected = {
        "storage is a file": (blocker, f"{blocker} is a file, not a folder"),
        "storage under a file": (blocker / "runs", f"{blocker} is a file, not a folder"),
        "a file where the run folder goes": (tmp_path / "runs", f"{tmp_path}/runs/smoke is a file"),
        # sysfs refuses new entries even to root: a folder nobody can write, found by trying.
        "storage read-only": (Path("/sys/mlsweep-test"), "cannot write there"),
    }[case]
    if case == "a file where the run folder goes":
        (tmp_path / "runs").mkdir()
        (tmp_path / "runs" / "smoke").write_text("keep me")
    line = one_line_error(invoke("launch", str(sweep_file), "--storage", str(storage)))
    assert expected in line and "--storage" in line
    assert blocker.read_text() == "keep me"


def test_train_out_at_a_file_fails_before_training(tmp_path: Path) -> None:
    target = tmp_path / "results.parquet"
    target.write_text("keep me")
    result = invoke("train", "--set", "epochs=50", "--out", str(target / "run"))
    assert f"--out {target}/run: {target} is a file, not a folder" in one_line_error(result)
    assert "epoch" not in result.stdout  # refused before the first epoch
    assert target.read_text() == "keep me"


def test_analyze_and_report_refuse_a_run_folder_they_cannot_write(tmp_path: Path) -> None:
    run_dir = tmp_path / "smoke"
    record(run_dir, load_yaml("smoke.yaml"), "completed")
    (run_dir / "analysis").write_text("")  # as root too, no folder can be made here
    (run_dir / "report.html").mkdir()  # nor a file written here
    assert "give --out DIR for the analysis tables" in one_line_error(invoke("analyze", str(run_dir)))
    assert "give --out FILE for the report" in one_line_error(invoke("report", str(run_dir)))
    blocked = one_line_error(invoke("analyze", str(run_dir), "--out", str(run_dir / "analysis" / "x")))
    assert "--out" in blocked and "is a file, not a folder" in blocked
    blocked = one_line_error(invoke("report", str(run_dir), "--out", str(run_dir / "analysis" / "r.html")))
    assert "--out" in blocked and "is a file, not a folder" in blocked


def test_status_exits_1_when_every_trial_failed_and_prints_json(tmp_path: Path) -> None:
    run_dir = tmp_path / "smoke"
    ids = record(run_dir, load_yaml("smoke.yaml"), "failed")
    result = invoke("status", str(run_dir), "--format", "json")
    assert result.exit_code == 1, result.output
    payload = json.loads(result.stdout)
    assert set(payload) == {"run_dir", "planned", "counts", "all_failed", "failed", "slowest", "unreadable"}
    assert payload["planned"] == 4 and payload["all_failed"] is True
    assert payload["counts"] == {"completed": 0, "failed": 4, "diverged": 0, "pending": 0}
    assert sorted(row["trial_id"] for row in payload["failed"]) == sorted(ids)
    assert {row["error"] for row in payload["failed"]} == {"boom"}
    assert set(payload["slowest"][0]) == {"trial_id", "loss", "dataset", "wall_s", "epochs_run", "device"}
    assert invoke("status", str(run_dir)).exit_code == 1


def test_status_exits_0_when_a_trial_completed(tmp_path: Path) -> None:
    data = load_yaml("smoke.yaml")
    record(tmp_path / "smoke", data, "failed")
    data["parameters"]["seed"] = {"value": 0}
    data["parameters"]["loss"] = {"value": "triplet"}
    record(tmp_path / "smoke", data, "completed")  # one of the four rewritten as completed
    result = invoke("status", str(tmp_path / "smoke"), "--format", "json")
    assert result.exit_code == 0 and json.loads(result.stdout)["counts"]["completed"] == 1


def test_relaunching_an_all_failed_sweep_says_so_and_exits_1(tmp_path: Path) -> None:
    sweep_file, data = smoke_sweep(tmp_path)
    record(tmp_path / "runs" / "smoke", data, "failed")
    result = invoke("launch", str(sweep_file), "--storage", str(tmp_path / "runs"))
    assert result.exit_code == 1, result.output
    assert ("nothing to run: all 4 trials are recorded, all of them failed; --retry-failed runs them "
            "again") in result.stdout
