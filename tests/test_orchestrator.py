"""`mlsweep launch` end to end on a real local Ray, with real Parquet (and a real S3 API)."""

from __future__ import annotations

import contextlib
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml
from conftest import ROOT, load_yaml, write_sweep

from mlsweep import catalog, read_results, worker
from mlsweep.orchestrator import launch
from mlsweep.spec import expand, validate
from mlsweep.worker import EpochBatcher, rows_of

pytestmark = pytest.mark.usefixtures("ray_session")

TIMING = ["epoch_s", "samples_per_s", "eval_s"]
TRIAL_COLUMNS = ["trial_id", "sweep", "loss", "dataset", "margin", "seed", "epochs", "batch_size", "lr",
                 "model", "miner", "status", "error", "attempts", "started_at", "finished_at", "wall_s",
                 "device", "node", "loss_half_epoch", "loss_tenth_epoch", "loss_decay_rate"]
STEP_COLUMNS = ["trial_id", "sweep", "loss", "epoch", "step", "loss", "active_ratio", "grad_norm",
                "emb_grad_norm", "n_terms"]


def run(data: dict[str, Any], storage: Path, **kwargs: Any):
    return launch(validate(data, "test.yaml"), yaml.safe_dump(data), storage=str(storage), **kwargs)


def test_smoke_sweep_writes_every_table(smoke_run) -> None:
    data, storage, summary = smoke_run
    run_dir = storage / "smoke"
    expected = {t.trial_id for t in expand(validate(data))}
    assert summary.launched == len(expected) == 4 and summary.by_status == {"completed": 4}
    trials = read_results(str(run_dir), "trials")
    assert sorted(trials["trial_id"]) == sorted(expected)  # one row per trial
    assert set(TRIAL_COLUMNS) <= set(trials.columns)
    assert {f"final_{m}" for m in catalog.EPOCH_METRICS} <= set(trials.columns)
    assert (trials["status"] == "completed").all() and (trials["attempts"] == 1).all()
    # Two slots, two losses: each loss's two seeds trained as one pack, its members' rows apart.
    assert (trials["pack_size"] == 2).all() and trials.groupby("loss")["pack_id"].nunique().eq(1).all()
    assert trials["pack_id"].nunique() == 2 and trials["pack_id"].str.startswith("pack-").all()
    epochs = read_results(str(run_dir), "epochs")
    assert set(catalog.EPOCH_METRICS) <= set(epochs.columns)
    assert len(epochs) == 4 * data["parameters"]["epochs"]["value"]
    assert all(sorted(group) == [1, 2] for _, group in epochs.groupby("trial_id")["epoch"])
    steps = read_results(str(run_dir), "steps")
    assert set(STEP_COLUMNS) <= set(steps.columns) and steps["step"].min() == 1
    assert (run_dir / "sweep.yaml").read_text() == yaml.safe_dump(data)
    manifest = (run_dir / "manifest.json").read_text()
    assert all(tid in manifest for tid in expected) and '"ray"' in manifest


def test_trial_rows_match_an_in_process_run(smoke_run) -> None:
    """The numbers a sweep records are the trainer's own: every packed member's epochs equal
    its config trained alone in this process (timing aside)."""
    from mlsweep import run_trial

    data, storage, _ = smoke_run
    swept = read_results(str(storage / "smoke"), "epochs")
    for trial in expand(validate(data)):
        local = run_trial(trial.config).epochs.drop(columns=TIMING)
        mine = swept[swept["trial_id"] == trial.trial_id].sort_values("epoch")[local.columns]
        pd.testing.assert_frame_equal(mine.reset_index(drop=True), local, check_dtype=False,
                                      check_exact=False, rtol=1e-6, atol=0)


def _drop_trial(run_dir: Path, trial_id: str) -> None:
    for table in ("trials", "epochs", "steps"):
        (run_dir / "results" / table / f"{trial_id}.parquet").unlink()


def test_a_partly_recorded_pack_runs_only_its_missing_member(smoke_run, tmp_path: Path) -> None:
    data, storage, _ = smoke_run
    shutil.copytree(storage / "smoke", tmp_path / "smoke")
    before = read_results(str(tmp_path / "smoke"), "trials").set_index("trial_id")
    lost = before.index[0]
    _drop_trial(tmp_path / "smoke", lost)
    summary = run(data, tmp_path)
    assert (summary.launched, summary.skipped, summary.by_status) == (1, 3, {"completed": 1})
    after = read_results(str(tmp_path / "smoke"), "trials").set_index("trial_id")
    assert after.loc[lost, "pack_size"] == 1 and after.loc[lost, "pack_id"] == lost
    kept = before.index.drop(lost)
    assert (after.loc[kept, "finished_at"] == before.loc[kept, "finished_at"]).all()
    assert after.loc[lost, "final_map_at_r"] == pytest.approx(before.loc[lost, "final_map_at_r"], rel=1e-6)


def test_pack_1_trains_every_trial_alone_with_the_same_numbers(smoke_run, tmp_path: Path) -> None:
    data, storage, _ = smoke_run
    summary = run({**data, "pack": 1}, tmp_path)
    assert summary.by_status == {"completed": 4}
    alone = read_results(str(tmp_path / "smoke"), "trials").set_index("trial_id").sort_index()
    assert (alone["pack_size"] == 1).all() and (alone["pack_id"] == alone.index).all()
    packed = read_results(str(storage / "smoke"), "trials").set_index("trial_id").sort_index()
    finals = [f"final_{m}" for m in ("train_loss", "map_at_r", "intra_var_mean", "active_ratio")]
    pd.testing.assert_frame_equal(alone[finals], packed[finals], check_exact=False, rtol=1e-6, atol=0)


def test_relaunch_runs_nothing_and_rewrites_nothing(smoke_run) -> None:
    data, storage, _ = smoke_run
    files = sorted((storage / "smoke" / "results").rglob("*.parquet"))
    stamps = [f.stat().st_mtime_ns for f in files]
    summary = run(data, storage)
    assert summary.launched == 0 and summary.skipped == 4
    assert [f.stat().st_mtime_ns for f in files] == stamps
    assert sorted((storage / "smoke" / "results").rglob("*.parquet")) == files


def test_extended_grid_runs_only_new_trials(tmp_path: Path) -> None:
    data = load_yaml("smoke.yaml")
    data["parameters"]["loss"] = {"value": "triplet"}
    first = run(data, tmp_path)
    data["parameters"]["seed"]["values"] += [2]
    second = run(data, tmp_path)
    assert (first.launched, second.launched, second.skipped) == (2, 1, 2)
    trials = read_results(str(tmp_path / "smoke"), "trials")
    assert sorted(trials["seed"]) == [0, 1, 2] and trials["trial_id"].is_unique


def batched(records: list[dict[str, Any]], every_s: float, last_epoch: int,
            monkeypatch: pytest.MonkeyPatch, members: int = 1) -> list[dict[str, Any]]:
    """What an EpochBatcher reports for these epoch records (one step row each), every member
    reporting the same records in turn, as a pack's members end each epoch together."""
    monkeypatch.setattr(worker, "REPORT_EVERY_S", every_s)
    reports: list[dict[str, Any]] = []
    batcher = EpochBatcher(reports.append, {"node": "here"}, members, last_epoch)
    for record in records:
        for member in range(members):
            batcher(member, record, [{"epoch": record["epoch"], "loss": record["train_loss"] + member}])
    batcher.flush()
    return reports


EPOCHS = [{"epoch": 1, "train_loss": 3.0, "map_at_r": 0.1}, {"epoch": 2, "train_loss": 2.0},
          {"epoch": 3, "train_loss": 1.0, "map_at_r": 0.3}, {"epoch": 4, "train_loss": 0.5}]


def test_epochs_reach_the_driver_in_one_report_when_fast(monkeypatch: pytest.MonkeyPatch) -> None:
    (report,) = batched(EPOCHS, 3600, 4, monkeypatch)
    (member,) = report["_members"]
    assert member["records"] == EPOCHS and report["_meta"] == {"node": "here"}
    assert member["steps"] == {"epoch": [1, 2, 3, 4], "loss": [3.0, 2.0, 1.0, 0.5]}
    assert rows_of(member["steps"])[1] == {"epoch": 2, "loss": 2.0}
    # Each metric at its latest value; the latest evaluated one for evaluation metrics.
    assert report["epoch"] == 4 and report["train_loss"] == 0.5 and report["map_at_r"] == 0.3
    assert math.isnan(report["knn_acc"])  # never measured, but present for Tune's checks


def test_a_packs_members_are_reported_apart_and_once_all_have_ended(monkeypatch: pytest.MonkeyPatch) -> None:
    (report,) = batched(EPOCHS, 3600, 4, monkeypatch, members=3)
    assert [m["records"] for m in report["_members"]] == [EPOCHS] * 3
    assert [m["steps"]["loss"][0] for m in report["_members"]] == [3.0, 4.0, 5.0]
    reports = batched(EPOCHS, 0, 4, monkeypatch, members=2)  # every call past the interval
    assert [[len(m["records"]) for m in r["_members"]] for r in reports] == [[1, 0], [0, 1]] * 4


def test_epochs_are_reported_at_the_interval_and_on_divergence(monkeypatch: pytest.MonkeyPatch) -> None:
    assert [r["epoch"] for r in batched(EPOCHS, 0, 4, monkeypatch)] == [1, 2, 3, 4]
    diverged = [*EPOCHS[:2], {"epoch": 3, "train_loss": math.inf}]
    reports = batched(diverged, 3600, 10, monkeypatch)  # ended before its last epoch
    assert len(reports) == 1 and reports[0]["_members"][0]["records"] == diverged
    # Epochs left when a trial raises are delivered by the final flush; nothing twice.
    assert [len(r["_members"][0]["records"]) for r in batched(EPOCHS[:2], 3600, 4, monkeypatch)] == [2]


def test_the_driver_side_imports_no_torch() -> None:
    """Importing torch costs the driver seconds before the first trial starts; only the
    workers train."""
    code = ("import sys, mlsweep.cli, mlsweep.orchestrator as o; from mlsweep.progress import "
            "SweepProgress; o._versions(); o.make_writer('run', 's', {}, {}, SweepProgress(0)); "
            "from ray import tune; print(sorted(m for m in sys.modules if m.split('.')[0] == 'torch'))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "RAY_AUTH_MODE": "disabled"})
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_failing_trial_is_retried_then_recorded_while_others_complete(tmp_path: Path) -> None:
    data = load_yaml("smoke.yaml")
    data["parameters"].update(loss={"value": "triplet"}, seed={"value": 0},
                              fail_at_epoch={"values": [0, 2]})
    data["max_failures"] = 1
    summary = run(data, tmp_path)
    assert summary.by_status == {"completed": 1, "failed": 1}
    trials = read_results(str(tmp_path / "smoke"), "trials").set_index("fail_at_epoch")
    assert trials.loc[2, "status"] == "failed" and trials.loc[2, "attempts"] == 2
    assert "fail_at_epoch=2: failing on purpose" in trials.loc[2, "error"]
    # The epoch trained before the failure still reaches the epochs table.
    epochs = read_results(str(tmp_path / "smoke"), "epochs")
    assert epochs[epochs["fail_at_epoch"] == 2]["epoch"].tolist() == [1]
    assert trials.loc[0, "status"] == "completed" and pd.isna(trials.loc[0, "error"])
    # Failed trials are not retried by a plain relaunch, only with --retry-failed.
    assert run(data, tmp_path).launched == 0
    assert run(data, tmp_path, retry_failed=True).launched == 1
    assert read_results(str(tmp_path / "smoke"), "trials")["trial_id"].is_unique


def test_diverged_trial_is_recorded_not_retried(tmp_path: Path) -> None:
    data = load_yaml("smoke.yaml")
    data["parameters"].update(loss={"value": "triplet"}, seed={"value": 0}, lr={"value": 1.0e30},
                              optimizer={"value": "sgd"},
                              epochs={"value": 3})
    summary = run(data, tmp_path)
    trials = read_results(str(tmp_path / "smoke"), "trials")
    assert summary.by_status == {"diverged": 1}
    assert trials.loc[0, "attempts"] == 1 and "non-finite" in trials.loc[0, "error"]


def test_killed_driver_loses_no_trial_and_relaunch_runs_each_once(tmp_path: Path) -> None:
    data = load_yaml("smoke.yaml")
    data["parameters"].update(seed={"values": [0, 1, 2]}, epochs={"value": 25})
    data["pack"] = 2  # packs of 2 and 1 per loss: four packs on two slots, ending apart
    sweep_file = write_sweep(tmp_path, data)
    storage = tmp_path / "runs"
    env = {**os.environ, "RAY_AUTH_MODE": "disabled"}
    proc = subprocess.Popen([sys.executable, "-m", "mlsweep.cli", "launch", str(sweep_file),
                             "--storage", str(storage)], env=env, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    trials_dir = storage / "smoke" / "results" / "trials"
    deadline = time.monotonic() + 120
    try:
        while not list(trials_dir.glob("*.parquet")) and time.monotonic() < deadline:
            assert proc.poll() is None, "launch ended before a trial was recorded"
            time.sleep(0.2)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the driver and the Ray it embedded, at once
        proc.wait()
    before = read_results(str(storage / "smoke"), "trials")
    assert 1 <= len(before) < 6
    summary = launch(validate(data), yaml.safe_dump(data), storage=str(storage))
    assert summary.launched == 6 - len(before)
    after = read_results(str(storage / "smoke"), "trials")
    assert len(after) == 6 and after["trial_id"].is_unique and (after["status"] == "completed").all()
    epochs = read_results(str(storage / "smoke"), "epochs")
    assert len(epochs) == 6 * 25 and not epochs.duplicated(["trial_id", "epoch"]).any()


def _launch_process(sweep_file: Path, storage: Path) -> subprocess.Popen:
    """`mlsweep launch` as a person runs it: its own process group, its own embedded Ray."""
    env = {**os.environ, "RAY_AUTH_MODE": "disabled"}
    return subprocess.Popen([sys.executable, "-m", "mlsweep.cli", "launch", str(sweep_file),
                             "--storage", str(storage)], env=env, start_new_session=True, cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for_a_recorded_trial(proc: subprocess.Popen, trials_dir: Path) -> None:
    deadline = time.monotonic() + 120
    while not list(trials_dir.glob("*.parquet")):
        assert proc.poll() is None, "launch ended before a trial was recorded"
        assert time.monotonic() < deadline, "no trial recorded in 120 s"
        time.sleep(0.2)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_stops_launch_cleanly_and_relaunch_runs_the_rest(signum: int, tmp_path: Path) -> None:
    """Ctrl-C reaches the whole process group (the driver and its Ray); SIGTERM only the
    driver, as `kill` or a stopped Ray Job sends it."""
    data = load_yaml("smoke.yaml")
    data["parameters"].update(seed={"values": [0, 1, 2]}, epochs={"value": 15})
    data["pack"] = 2  # packs of 2 and 1 per loss: four packs on two slots, ending apart
    sweep_file = write_sweep(tmp_path, data)
    storage = tmp_path / "runs"
    proc = _launch_process(sweep_file, storage)
    try:
        _wait_for_a_recorded_trial(proc, storage / "smoke" / "results" / "trials")
        (os.killpg if signum == signal.SIGINT else os.kill)(proc.pid, signum)
        stdout, stderr = proc.communicate(timeout=120)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
    name = signal.Signals(signum).name
    assert proc.returncode == 128 + signum, stderr
    before = read_results(str(storage / "smoke"), "trials")
    assert 1 <= len(before) < 6 and (before["status"] == "completed").all()  # none recorded as failed
    assert f"sweep smoke: {len(before)} of 6 pending ran" in stdout, stderr
    assert f"stopped by {name}: {6 - len(before)} trials not recorded" in stdout
    assert "Traceback" not in stderr and "Traceback" not in stdout
    epochs = read_results(str(storage / "smoke"), "epochs")
    recorded_epochs = epochs[epochs["trial_id"].isin(before["trial_id"])]
    assert len(recorded_epochs) == 15 * len(before)  # recorded trials are whole
    summary = launch(validate(data), yaml.safe_dump(data), storage=str(storage))
    assert summary.launched == 6 - len(before) and summary.by_status == {"completed": 6 - len(before)}
    after = read_results(str(storage / "smoke"), "trials")
    assert len(after) == 6 and after["trial_id"].is_unique
    kept = after.set_index("trial_id").loc[before["trial_id"], "finished_at"]
    assert (kept.to_numpy() == before.set_index("trial_id")["finished_at"].to_numpy()).all()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_results_on_s3_read_back_equal(tmp_path: Path, smoke_run) -> None:
    import boto3
    from moto.server import ThreadedMotoServer

    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port)
    server.start()
    try:
        boto3.client("s3", endpoint_url=f"http://127.0.0.1:{port}").create_bucket(Bucket="sweeps")
        data, local_storage, _ = smoke_run
        uri = f"s3://sweeps/runs?endpoint_override=127.0.0.1:{port}&scheme=http"
        summary = run(data, uri)
        assert summary.by_status == {"completed": 4}
        run_uri = summary.run_dir
        for table in ("trials", "epochs", "steps"):
            remote = read_results(run_uri, table)
            local = read_results(str(local_storage / "smoke"), table)
            keys = ["trial_id", "epoch", "step"][: {"trials": 1, "epochs": 2, "steps": 3}[table]]
            volatile = [c for c in (*TIMING, "wall_s", "started_at", "finished_at", "error")
                        if c in local.columns] + [c for c in local.columns if c.startswith("final_")
                                                  and c.removeprefix("final_") in TIMING]
            remote, local = (df.drop(columns=volatile).sort_values(keys).reset_index(drop=True)
                             for df in (remote, local))
            pd.testing.assert_frame_equal(remote[local.columns], local)
    finally:
        server.stop()


def test_cli_launch_prints_summary_and_status(tmp_path: Path) -> None:
    data = load_yaml("smoke.yaml")
    data["parameters"].update(loss={"value": "triplet"}, seed={"value": 0})
    sweep_file = write_sweep(tmp_path, data)
    env = {**os.environ, "RAY_AUTH_MODE": "disabled"}
    cmd = [sys.executable, "-m", "mlsweep.cli"]
    done = subprocess.run([*cmd, "launch", str(sweep_file), "--storage", str(tmp_path)], env=env,
                          capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert "completed" in done.stdout and f"{tmp_path}/smoke/results" in done.stdout
    assert "[1/1] done 1" in done.stderr
    status = subprocess.run([*cmd, "status", str(tmp_path / "smoke")], env=env, capture_output=True,
                            text=True, timeout=120)
    assert status.returncode == 0 and "completed" in status.stdout and "1 planned" in status.stdout
    missing = subprocess.run([*cmd, "status", str(tmp_path / "nope")], env=env, capture_output=True,
                             text=True, timeout=120)
    assert missing.returncode == 2 and missing.stderr.count("\n") == 1 and "Traceback" not in missing.stderr


def test_analyze_the_smoke_sweeps_real_results(smoke_run, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from mlsweep.cli import app

    _, storage, _ = smoke_run
    run_dir = storage / "smoke"
    result = CliRunner().invoke(app, ["analyze", str(run_dir)])
    assert result.exit_code == 0, result.output
    assert "analysed 4 of 4 trials" in result.stdout
    assert "triplet intra_var_mean > contrastive (final)" in result.stdout
    claims = pd.read_parquet(run_dir / "analysis" / "claims.parquet")
    assert set(claims["verdict"]) <= {"supported", "contradicted", "inconclusive"}
    assert (claims["n_pairs"] == 2).all()  # two seeds, paired
    tests = pd.read_parquet(run_dir / "analysis" / "tests.parquet")
    assert tests["note"].str.contains("cannot reach").all()  # 2 pairs: Wilcoxon can't reach 0.05
    empty = CliRunner().invoke(app, ["analyze", str(tmp_path)])
    assert empty.exit_code == 2 and "not a run folder" in empty.stderr


def test_optuna_search_with_asha_runs_num_samples_then_tops_up(tmp_path: Path) -> None:
    data = load_yaml("smoke.yaml")
    data.update(method="optuna", num_samples=3, scheduler="asha")
    data["parameters"].update(loss={"value": "triplet"}, seed={"value": 0},
                              lr={"min": 1.0e-4, "max": 1.0e-2, "distribution": "log_uniform"},
                              margin={"values": [0.2, 0.5]})
    assert run(data, tmp_path).launched == 3
    trials = read_results(str(tmp_path / "smoke"), "trials")
    assert len(trials) == 3 and trials["trial_id"].is_unique
    assert trials["lr"].between(1.0e-4, 1.0e-2).all() and set(trials["margin"]) <= {0.2, 0.5}
    data["num_samples"] = 4
    assert run(data, tmp_path).launched == 1  # only the difference is sampled
