"""Experiment trackers: a real MLflow tracking server on 127.0.0.1 and W&B's offline run files,
read back and compared with the Parquet a sweep writes; a tracker that is down changes nothing."""

from __future__ import annotations

import json
import math
import os
import signal
import socket
import struct
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml
from conftest import ROOT, load_yaml

from mlsweep import catalog, read_results
from mlsweep.errors import UserError
from mlsweep.orchestrator import launch
from mlsweep.spec import expand, validate

VENV_BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def mlflow_uri(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real MLflow tracking server (SQLite store, one worker), stopped at the end."""
    folder = tmp_path_factory.mktemp("mlflow")
    port = free_port()
    log = (folder / "server.log").open("w")
    server = subprocess.Popen(
        [str(VENV_BIN / "mlflow"), "server", "--backend-store-uri", f"sqlite:///{folder}/mlflow.db",
         "--default-artifact-root", str(folder / "artifacts"), "--host", "127.0.0.1", "--port", str(port),
         "--workers", "1"], stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        env={**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"})  # no job runner and queues
    uri = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 300  # starting takes seconds; minutes on a loaded machine
    try:
        while True:
            assert server.poll() is None, (folder / "server.log").read_text()[-2000:]
            try:
                with urllib.request.urlopen(f"{uri}/health", timeout=2) as answer:
                    if answer.status == 200:
                        break
            except OSError:
                pass
            assert time.monotonic() < deadline, "the MLflow server did not answer in time"
            time.sleep(0.5)
        yield uri
    finally:
        os.killpg(server.pid, signal.SIGTERM)  # the server and its uvicorn worker
        try:
            server.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
        log.close()


# --------------------------------------------------------------------------- reading W&B's files


def wandb_records(path: Path) -> Iterator[Any]:
    """The records of an offline run's `.wandb` file: a LevelDB-style log (a 7-byte file header,
    then 32 KiB blocks of chunks, each with a 7-byte header: crc, length, kind) of protobuf
    Records. wandb 0.31 has no Python reader for it."""
    from wandb.proto import wandb_internal_pb2

    data = path.read_bytes()
    assert data[:4] == b":W&B"
    pos, parts = 7, b""
    while pos + 7 <= len(data):
        room = 32768 - pos % 32768
        _crc, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        if room < 7 or (kind == 0 and length == 0):  # the rest of a block is padding
            pos += room
            continue
        parts += data[pos + 7:pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):  # a full record, or the last chunk of one
            record = wandb_internal_pb2.Record()
            record.ParseFromString(parts)
            parts = b""
            yield record


def _items(items: Any) -> dict[str, Any]:
    return {item.key or "/".join(item.nested_key): json.loads(item.value_json) for item in items}


def wandb_run(path: Path) -> dict[str, Any]:
    """An offline run as its name, group, tags, config, history ({step: values}), summary and
    exit code."""
    run: dict[str, Any] = {"history": {}, "summary": {}}
    for record in wandb_records(path):
        kind = record.WhichOneof("record_type")
        if kind == "run":
            run.update(name=record.run.display_name, group=record.run.run_group,
                       tags=set(record.run.tags), config=_items(record.run.config.update))
        elif kind == "history":
            run["history"][record.history.step.num] = _items(record.history.item)
        elif kind == "summary":
            run["summary"].update(_items(record.summary.update))
        elif kind == "exit":
            run["exit_code"] = record.exit.exit_code
    return run


# --------------------------------------------------------------------------- helpers


def as_param(value: Any) -> str:
    """How a config value reads back as an MLflow parameter."""
    return json.dumps(value) if isinstance(value, list | dict) else str(value)


def measured(epochs: pd.DataFrame, metric: str) -> list[tuple[int, float]]:
    """(epoch, value) of one trial's epochs where the metric was measured."""
    rows = epochs[["epoch", metric]].dropna().sort_values("epoch")
    return [(int(e), float(v)) for e, v in rows.itertuples(index=False)]


def sweep_data(name: str, tracking: dict[str, Any], **parameters: Any) -> dict[str, Any]:
    data = load_yaml("smoke.yaml")
    data["name"], data["tracking"] = name, tracking
    data["parameters"].update({k: {"values": v} for k, v in parameters.items()})
    return data


# --------------------------------------------------------------------------- the sweep file


def test_tracking_section_is_validated() -> None:
    base = {"name": "t", "parameters": {"loss": {"value": "triplet"}}}
    sweep = validate({**base, "tracking": {"mlflow": {"uri": "http://h:5000"}, "wandb": {"project": "p"}}})
    assert sweep.tracking.mlflow.uri == "http://h:5000" and sweep.tracking.mlflow.experiment is None
    assert sweep.tracking.wandb.mode == "online" and validate(base).tracking.mlflow is None
    bad = {"mlfow": {}, "wandb": {"project": "", "mode": "ofline", "entiti": "me"}}
    with pytest.raises(UserError) as err:
        validate({**base, "tracking": bad}, "s.yaml")
    lines = str(err.value).splitlines()
    assert "s.yaml: tracking.mlfow: unknown key; did you mean 'mlflow'? known: mlflow, wandb" in lines
    assert any(line.startswith("s.yaml: tracking.wandb.entiti: unknown key; did you mean 'entity'?")
               for line in lines)
    assert any("tracking.wandb.mode" in line and "'ofline'" in line for line in lines)
    assert any(line.startswith("s.yaml: tracking.wandb.project:") for line in lines)
    assert len(lines) == 4


def test_trackers_are_imported_only_when_asked_and_never_import_torch() -> None:
    code = ("import sys, mlsweep.orchestrator, mlsweep.tracking; "
            "lazy = sorted({m.split('.')[0] for m in sys.modules} & {'mlflow', 'wandb', 'torch'}); "
            "import mlflow, mlflow.entities, wandb; print(lazy, 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}).stdout
    assert out.split("\n")[-2] == "[] False"


# --------------------------------------------------------------------------- real sweeps


@pytest.mark.usefixtures("ray_session")
def test_each_trial_is_one_tracker_run_equal_to_the_parquet(
        mlflow_uri: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """MLflow and W&B (offline) from one sweep: 2 trials complete, 2 fail at epoch 2 on both
    attempts (a retry is a new run)."""
    from mlflow import MlflowClient

    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    monkeypatch.setenv("WANDB_MODE", "offline")
    tracking = {"mlflow": {"uri": mlflow_uri}, "wandb": {"project": "p", "mode": "offline"}}
    data = sweep_data("tracked", tracking, seed=[0], fail_at_epoch=[0, 2])
    summary = launch(validate(data), yaml.safe_dump(data), storage=str(tmp_path))
    assert summary.by_status == {"completed": 2, "failed": 2}
    run_dir = str(tmp_path / "tracked")
    trials = read_results(run_dir, "trials").set_index("trial_id")
    epochs = read_results(run_dir, "epochs")
    configs = {t.trial_id: t.config for t in expand(validate(data))}
    assert set(trials.index) == set(configs)
    attempts = {tid: 1 if configs[tid]["fail_at_epoch"] == 0 else 2 for tid in configs}
    assert trials["attempts"].to_dict() == attempts

    client = MlflowClient(mlflow_uri)
    experiment = client.get_experiment_by_name("tracked")  # named after the sweep
    runs = client.search_runs([experiment.experiment_id], max_results=100)
    assert sorted(r.info.run_name for r in runs) == sorted(t for t, n in attempts.items() for _ in range(n))
    for run in runs:
        tid = run.info.run_name
        assert run.data.tags["mlsweep.sweep"] == "tracked" and run.data.tags["mlsweep.trial_id"] == tid
        assert run.data.params == {k: as_param(v) for k, v in configs[tid].items()}
        ok = trials.loc[tid, "status"] == "completed"
        assert run.info.status == ("FINISHED" if ok else "FAILED")
        if run.data.tags["mlsweep.attempt"] != str(attempts[tid]):
            continue  # an earlier attempt: Parquet keeps the last one
        mine = epochs[epochs["trial_id"] == tid]
        for metric in catalog.EPOCH_METRICS:
            history = sorted((m.step, m.value) for m in client.get_metric_history(run.info.run_id, metric))
            assert history == measured(mine, metric), (tid, metric)
        logged = [m.step for m in client.get_metric_history(run.info.run_id, "train_loss")]
        assert logged == ([1, 2] if ok else [1])
        assert [m.step for m in client.get_metric_history(run.info.run_id, "map_at_r")] == ([2] if ok else [])

    offline = sorted(tmp_path.glob("wandb/offline-run-*/run-*.wandb"))
    wb_runs = [wandb_run(path) for path in offline]
    assert sorted((r["name"], *r["tags"]) for r in wb_runs) == sorted(
        (tid, f"attempt-{i}") for tid, n in attempts.items() for i in range(1, n + 1))
    for run in wb_runs:
        tid = run["name"]
        assert run["group"] == "tracked" and run["exit_code"] == (0 if attempts[tid] == 1 else 1)
        assert {k: v for k, v in run["config"].items() if k != "_wandb"} == configs[tid]
        if f"attempt-{attempts[tid]}" not in run["tags"]:
            continue  # an earlier attempt: Parquet keeps the last one
        mine = epochs[epochs["trial_id"] == tid]
        history = {step: {k: v for k, v in values.items() if not k.startswith("_")}
                   for step, values in run["history"].items()}
        for metric in catalog.EPOCH_METRICS:
            assert [(s, float(v[metric])) for s, v in sorted(history.items()) if metric in v] == \
                measured(mine, metric), (tid, metric)
        last = mine.sort_values("epoch").iloc[-1]
        summary_values = {k: float(v) for k, v in run["summary"].items() if k in catalog.EPOCH_METRICS}
        assert summary_values == {k: float(last[k]) for k in catalog.EPOCH_METRICS if not math.isnan(last[k])}


@pytest.mark.usefixtures("ray_session")
def test_a_tracker_that_is_down_never_fails_the_sweep(tmp_path: Path,
                                                      capfd: pytest.CaptureFixture[str]) -> None:
    closed = free_port()  # nothing listens there once the probe socket is closed
    data = sweep_data("untracked", {"mlflow": {"uri": f"http://127.0.0.1:{closed}"}}, seed=[0])
    data["parameters"]["epochs"] = {"value": 1}
    summary = launch(validate(data), yaml.safe_dump(data), storage=str(tmp_path))
    assert summary.by_status == {"completed": 2}
    trials = read_results(str(tmp_path / "untracked"), "trials")
    assert sorted(trials["trial_id"]) == sorted(t.trial_id for t in expand(validate(data)))
    err = capfd.readouterr().err
    warnings = [line for line in err.splitlines() if "MLflow" in line]
    assert warnings == [line for line in err.splitlines() if line.startswith("mlsweep: MLflow tracking at ")]
    assert len(warnings) == 1 and f"127.0.0.1:{closed}" in warnings[0], err
    assert "the sweep goes on" in warnings[0]
