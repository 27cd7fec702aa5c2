"""Faults a user meets, with real parts: files cut short in a real run folder, a real moto S3
server behind a TCP proxy that refuses or hangs, real subprocess launches killed or run twice."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml
from conftest import ROOT, free_port, load_yaml, numbers, write_sweep
from typer.testing import CliRunner

from mlsweep import read_results
from mlsweep.cli import app
from mlsweep.orchestrator import launch
from mlsweep.spec import expand, validate

pytestmark = pytest.mark.usefixtures("ray_session")


def run(data: dict[str, Any], storage: str | Path, **kwargs: Any):
    return launch(validate(data, "test.yaml"), yaml.safe_dump(data), storage=str(storage), **kwargs)


def warnings_of(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("warning:")]


# --------------------------------------------------------------------------- bad files


@pytest.fixture
def damaged_run(smoke_run, tmp_path: Path) -> tuple[dict[str, Any], Path, dict[str, Path]]:
    """A copy of the session's smoke run folder with one trials file and another trial's
    epochs file cut to 100 bytes (as an interrupted rsync or a full disk leaves them)."""
    data, storage, _ = smoke_run
    run_dir = tmp_path / "smoke"
    shutil.copytree(storage / "smoke", run_dir)
    trials_file, other = sorted((run_dir / "results" / "trials").glob("*.parquet"))[:2]
    epochs_file = run_dir / "results" / "epochs" / other.name
    for path in (trials_file, epochs_file):
        with path.open("r+b") as f:
            f.truncate(100)
    return data, run_dir, {"trials": trials_file, "epochs": epochs_file}


def test_status_analyze_and_report_name_a_truncated_file_and_go_on(damaged_run) -> None:
    _, run_dir, cut = damaged_run
    status = CliRunner().invoke(app, ["status", str(run_dir), "--format", "json"])
    assert status.exit_code == 0, status.output
    shown = warnings_of(status.stderr)
    assert len(shown) == 2 and str(cut["trials"]) in shown[0] and "unreadable" in shown[0]
    assert "1 unreadable file left out" in shown[1]
    payload = json.loads(status.stdout)
    assert payload["counts"]["completed"] == 3 and payload["counts"]["pending"] == 1
    assert payload["planned"] == 4 and payload["unreadable"] == [str(cut["trials"])]
    for command in (["analyze", str(run_dir)], ["report", str(run_dir)]):
        result = CliRunner().invoke(app, command)
        assert result.exit_code == 0, (command, result.output, result.exception)
        shown = warnings_of(result.stderr)
        assert len(shown) == 3, result.stderr  # one line per file, one with the count
        assert {str(cut["trials"]), str(cut["epochs"])} == {
            line.split(": ")[1] for line in shown[:2]}
        assert "2 unreadable files left out" in shown[2] and "Traceback" not in result.output


def test_launch_sets_bad_files_aside_and_reruns_exactly_their_trials(damaged_run) -> None:
    data, run_dir, cut = damaged_run
    before = read_results(str(run_dir), "trials", bad=[]).set_index("trial_id")
    lines: list[str] = []
    summary = run(data, run_dir.parent, notice=lines.append)
    redone = {cut["trials"].stem, cut["epochs"].stem}
    assert summary.launched == 2 and summary.by_status == {"completed": 2} and summary.skipped == 2
    assert len(lines) == 2 and all("its trial runs again" in line for line in lines)
    assert {str(cut["trials"]), str(cut["epochs"])} == {line.split(": ")[0] for line in lines}
    trials = read_results(str(run_dir), "trials", bad=[])
    assert sorted(trials["trial_id"]) == sorted([*before.index, cut["trials"].stem])
    assert (trials["status"] == "completed").all() and (trials["attempts"] == 1).all()
    kept = trials.set_index("trial_id").drop(index=list(redone))
    assert (kept["finished_at"] == before.drop(index=cut["epochs"].stem)["finished_at"]).all()
    epochs = read_results(str(run_dir), "epochs", bad=[])
    assert len(epochs) == 4 * 2 and not epochs.duplicated(["trial_id", "epoch"]).any()
    aside = sorted(p.name.split("-")[0] for p in (run_dir / "results").rglob(".corrupt/*.parquet"))
    assert aside == sorted([cut["trials"].stem, cut["epochs"].stem, cut["epochs"].stem])
    assert CliRunner().invoke(app, ["status", str(run_dir)]).stderr == ""  # nothing left to warn of


def test_a_bad_manifest_and_sweep_file_warn_then_launch_rebuilds_them(smoke_run, tmp_path: Path) -> None:
    data, storage, _ = smoke_run
    run_dir = tmp_path / "smoke"
    shutil.copytree(storage / "smoke", run_dir)
    planned = set(json.loads((run_dir / "manifest.json").read_text())["trials"])
    (run_dir / "manifest.json").write_bytes(b'{"trials": {"ab')  # cut short
    (run_dir / "sweep.yaml").write_bytes(b"name: [smoke\n")
    status = CliRunner().invoke(app, ["status", str(run_dir)])
    assert status.exit_code == 0 and "4 planned" in status.stdout
    assert str(run_dir / "manifest.json") in warnings_of(status.stderr)[0]
    lines: list[str] = []
    summary = run(data, tmp_path, notice=lines.append)
    assert summary.launched == 0 and summary.skipped == 4
    assert [line.split(": ")[0] for line in lines] == [str(run_dir / "manifest.json"),
                                                       str(run_dir / "sweep.yaml")]
    assert (run_dir / "manifest.json.corrupt-1").read_bytes() == b'{"trials": {"ab'
    assert (run_dir / "sweep.yaml.corrupt-1").read_bytes() == b"name: [smoke\n"
    rebuilt = json.loads((run_dir / "manifest.json").read_text())
    assert set(rebuilt["trials"]) == planned and rebuilt["spec_hash"]
    assert yaml.safe_load((run_dir / "sweep.yaml").read_text()) == data


# --------------------------------------------------------------------------- storage outages


class Proxy:
    """A TCP proxy on 127.0.0.1 in front of `target`: `close` refuses connections (and cuts the
    open ones), `freeze` accepts but forwards nothing, `reopen` and `thaw` undo them."""

    def __init__(self, target: int) -> None:
        self.target, self.port = target, free_port()
        self.thawed = threading.Event()
        self.thawed.set()
        self.conns: list[socket.socket] = []
        self.listener: socket.socket | None = None
        self.reopen()

    def reopen(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self.listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def close(self) -> None:
        assert self.listener is not None
        self.listener.close()
        self.listener = None
        for conn in self.conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
            conn.close()
        self.conns.clear()

    def freeze(self) -> None:
        self.thawed.clear()

    def thaw(self) -> None:
        self.thawed.set()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.target))
            self.conns += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while chunk := src.recv(65536):
                self.thawed.wait()
                dst.sendall(chunk)
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)


def outage_sweep() -> dict[str, Any]:
    data = load_yaml("smoke.yaml")
    data["parameters"].update(seed={"values": [0, 1, 2]}, epochs={"value": 6})
    data["max_failures"] = 0  # a write failure charged to a trial would fail it at once
    data["pack"] = 1  # six trials ending apart, so that some end while storage is down
    return data


def _after_first_trial(client: Any, bucket: str, then: Any) -> threading.Thread:
    """Run `then()` once the first trials row is in the bucket (read past the proxy)."""
    def wait() -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            listed = client.list_objects_v2(Bucket=bucket, Prefix="runs/smoke/results/trials/")
            if any(o["Key"].endswith(".parquet") for o in listed.get("Contents", [])):
                then()
                return
            time.sleep(0.1)

    thread = threading.Thread(target=wait, daemon=True)
    thread.start()
    return thread


def test_a_short_outage_costs_no_trial_and_no_retry(s3) -> None:
    port, client = s3
    client.create_bucket(Bucket="short")
    proxy = Proxy(port)
    window: list[pd.Timestamp] = []

    def outage() -> None:
        window.append(pd.Timestamp.now(tz="UTC"))
        proxy.close()  # refused
        time.sleep(8)  # long enough for trials to end meanwhile on a busy machine
        proxy.freeze()  # accepts, never answers
        proxy.reopen()
        time.sleep(8)
        proxy.thaw()
        window.append(pd.Timestamp.now(tz="UTC"))

    thread = _after_first_trial(client, "short", outage)
    summary = run(outage_sweep(), f"s3://short/runs?endpoint_override=127.0.0.1:{proxy.port}&scheme=http",
                  storage_timeout=60)
    thread.join()
    assert summary.storage_error is None and summary.by_status == {"completed": 6}
    trials = read_results(f"s3://short/runs/smoke?endpoint_override=127.0.0.1:{port}&scheme=http",
                          "trials")
    assert len(trials) == 6 and trials["trial_id"].is_unique and (trials["attempts"] == 1).all()
    # The outage hit writes: trials finished while storage was down, and were written after.
    assert len(window) == 2 and trials["finished_at"].between(*window).any()


def test_a_long_outage_stops_the_launch_in_one_line_and_relaunch_runs_the_rest(s3, tmp_path: Path) -> None:
    port, client = s3
    client.create_bucket(Bucket="long")
    proxy = Proxy(port)
    data = outage_sweep()
    sweep_file = write_sweep(tmp_path, data)
    uri = f"s3://long/runs?endpoint_override=127.0.0.1:{proxy.port}&scheme=http"
    thread = _after_first_trial(client, "long", proxy.close)
    result = CliRunner().invoke(app, ["launch", str(sweep_file), "--storage", uri, "--storage-timeout", "3"])
    thread.join()
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert result.exit_code == 1, result.output
    assert len(errors) == 1 and "did not take a write for 3 s" in errors[0], result.output
    assert "Traceback" not in result.output
    direct = f"s3://long/runs/smoke?endpoint_override=127.0.0.1:{port}&scheme=http"
    before = read_results(direct, "trials")
    assert 1 <= len(before) < 6 and (before["status"] == "completed").all()
    proxy.reopen()
    summary = run(data, uri)
    assert summary.launched == 6 - len(before) and summary.by_status == {"completed": 6 - len(before)}
    after = read_results(direct, "trials").set_index("trial_id")
    assert len(after) == 6 and after.index.is_unique
    assert (after.loc[before["trial_id"], "finished_at"].to_numpy()
            == before["finished_at"].to_numpy()).all()  # recorded rows intact


# --------------------------------------------------------------------------- a killed, doubled launch


def _ray_processes(pid: int) -> list[Any]:
    import psutil  # Ray's own copy, on the path once Ray is imported (the session's Ray is)

    with contextlib.suppress(psutil.Error):
        return psutil.Process(pid).children(recursive=True)
    return []


@pytest.fixture(scope="module")
def killed_launch(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One subprocess `mlsweep launch` (its own embedded Ray), its trials checkpointing every
    epoch: its listening sockets while it runs, a second launch of the same sweep meanwhile,
    then SIGKILL of the driver alone once a trial saved a checkpoint, what of its Ray is left
    after and the checkpoints it left, and a relaunch in this process."""
    import psutil

    tmp = tmp_path_factory.mktemp("killed")
    data = load_yaml("smoke.yaml")
    data["parameters"].update(seed={"values": [0, 1, 2]}, epochs={"value": 25},
                              checkpoint_every={"value": 1})
    data["pack"] = 2  # packs of 2 and 1 per loss: four packs on two slots, ending apart
    sweep_file = write_sweep(tmp, data)
    storage = tmp / "runs"
    checkpoints = storage / "smoke" / "checkpoints"
    env = {**os.environ, "RAY_AUTH_MODE": "disabled"}
    cmd = [sys.executable, "-m", "mlsweep.cli", "launch", str(sweep_file), "--storage", str(storage)]
    first = subprocess.Popen(cmd, env=env, start_new_session=True, cwd=ROOT,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    facts: dict[str, Any] = {"first_pid": first.pid}
    try:
        trials_dir = storage / "smoke" / "results" / "trials"
        deadline = time.monotonic() + 120
        while not list(trials_dir.glob("*.parquet")):
            assert first.poll() is None and time.monotonic() < deadline, "no trial recorded"
            time.sleep(0.2)
        procs = _ray_processes(first.pid)
        facts["listening"] = [(p.name(), c.laddr.ip, c.laddr.port)
                              for p in [psutil.Process(first.pid), *procs] for c in _listening(p)]
        facts["second"] = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True,
                                         timeout=120)
        while not list(checkpoints.glob("*/epoch-*.pt")):
            assert first.poll() is None and time.monotonic() < deadline, "no checkpoint written"
            time.sleep(0.1)
        left = _ray_processes(first.pid)
        os.kill(first.pid, signal.SIGKILL)
        first.wait()
        killed_at = time.monotonic()
        while [p for p in left if _alive(p)] and time.monotonic() - killed_at < 30:
            time.sleep(0.2)
        facts["ray_left_s"] = time.monotonic() - killed_at
        facts["ray_seen"] = sorted(p.pid for p in left)
        facts["ray_left"] = [p.pid for p in left if _alive(p)]
        # Its trials' workers are gone now: what they saved stays as it is.
        facts["saved"] = {folder.name: int(max(folder.glob("epoch-*.pt")).stem.split("-")[1])
                          for folder in checkpoints.glob("*") if list(folder.glob("epoch-*.pt"))}
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(first.pid, signal.SIGKILL)
    facts["before"] = read_results(str(storage / "smoke"), "trials")
    facts["relaunch"] = launch(validate(data), yaml.safe_dump(data), storage=str(storage))
    facts["after"] = read_results(str(storage / "smoke"), "trials")
    facts["epochs"] = read_results(str(storage / "smoke"), "epochs")
    facts["checkpoints_left"] = list(checkpoints.glob("*/*"))
    facts["configs"] = {t.trial_id: t.config for t in expand(validate(data))}
    return facts


def _listening(process: Any) -> list[Any]:
    import psutil

    with contextlib.suppress(psutil.Error):
        return [c for c in process.net_connections(kind="inet") if c.status == psutil.CONN_LISTEN]
    return []


def _alive(process: Any) -> bool:
    import psutil

    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def test_the_embedded_ray_listens_on_loopback_only(killed_launch) -> None:
    listening = killed_launch["listening"]
    names = {name for name, _, _ in listening}
    assert {"gcs_server", "raylet"} <= names, listening  # the servers were seen
    assert all(ip in ("127.0.0.1", "::ffff:127.0.0.1") for _, ip, _ in listening), listening


def test_a_second_launch_of_the_sweep_refuses_in_one_line(killed_launch) -> None:
    second = killed_launch["second"]
    assert second.returncode == 2, second.stderr
    assert second.stderr.count("\n") == 1 and "another launch of this sweep is running" in second.stderr
    assert f"pid {killed_launch['first_pid']}" in second.stderr and socket.gethostname() in second.stderr


def test_a_killed_driver_leaves_no_ray_behind(killed_launch) -> None:
    # gcs_server, raylet, their helpers, both agents and the trial workers were there
    assert len(killed_launch["ray_seen"]) >= 6
    assert killed_launch["ray_left"] == [] and killed_launch["ray_left_s"] < 10


def test_the_next_launch_takes_the_stale_lock_and_runs_the_rest(killed_launch) -> None:
    before, summary, after = killed_launch["before"], killed_launch["relaunch"], killed_launch["after"]
    assert 1 <= len(before) < 6 and summary.launched == 6 - len(before)
    assert len(after) == 6 and after["trial_id"].is_unique and (after["status"] == "completed").all()


def test_the_relaunch_resumes_the_killed_packs_from_their_checkpoints(killed_launch) -> None:
    """Each pack the kill cut short with a checkpoint (a folder per pack_id) resumes from it:
    the relaunch packs the same missing trials together again. Their epochs are an
    uninterrupted pack's (run here, on one thread as in a trial's worker)."""
    import torch

    from mlsweep import run_trials

    before, after = killed_launch["before"], killed_launch["after"]
    saved = killed_launch["saved"]
    assert saved  # the driver was killed with a pack mid-way
    resumed = after[after["resumed_from_epoch"].notna()]
    assert set(resumed["pack_id"]) == set(saved)
    assert not set(resumed["trial_id"]) & set(before["trial_id"])
    for pack, epoch in saved.items():
        assert (after.loc[after["pack_id"] == pack, "resumed_from_epoch"] == epoch).all()
    assert killed_launch["checkpoints_left"] == []  # deleted once their packs finished
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        epochs = killed_launch["epochs"]
        for pack in saved:
            ids = set(after.loc[after["pack_id"] == pack, "trial_id"])
            members = [tid for tid in killed_launch["configs"] if tid in ids]  # in the sweep's order
            alone = run_trials([killed_launch["configs"][tid] for tid in members])
            for tid, result in zip(members, alone, strict=True):
                pd.testing.assert_frame_equal(numbers(epochs[epochs["trial_id"] == tid], "epochs"),
                                              numbers(result.epochs, "epochs"), check_exact=True)
    finally:
        torch.set_num_threads(threads)
