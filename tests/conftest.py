"""Shared fixtures: one real local Ray for the whole session, sweep files written per test."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

# Before Ray starts, so its workers inherit them: no auth token; credentials for the local S3
# endpoint (moto) that the storage test talks to.
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def ray_session() -> Iterator[None]:
    """A real local Ray (2 CPUs, no dashboard), started once and shared by every test."""
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    yield
    ray.shutdown()


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on now (on every interface with host="")."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def s3() -> Iterator[tuple[int, Any]]:
    """A real moto S3 server (its port) and a boto3 client talking to it directly; each test
    makes its own bucket."""
    import boto3
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port)
    server.start()
    client = boto3.client("s3", endpoint_url=f"http://127.0.0.1:{port}")
    yield port, client
    server.stop()


TIMING = ("epoch_s", "samples_per_s", "eval_s")
NOT_NUMBERS = {*TIMING, *(f"final_{c}" for c in TIMING), "attempts", "started_at", "finished_at",
               "wall_s", "device", "node", "resumed_from_epoch", "pack_id"}


def numbers(frame: Any, table: str) -> Any:
    """The columns of a results table that a trial's numbers set (its own columns but timing,
    when, where and how many attempts), rows in epoch and step order: equal for two trials
    of the same numbers however each ran."""
    from mlsweep.catalog.tables import OWN

    keys = [k for k in ("epoch", "step") if k in OWN[table]]
    columns = [c for c in OWN[table] if c not in NOT_NUMBERS and c in frame.columns]
    return frame.sort_values(keys)[columns].reset_index(drop=True) if keys else \
        frame[columns].reset_index(drop=True)


def load_yaml(name: str) -> dict[str, Any]:
    return yaml.safe_load((ROOT / "sweeps" / name).read_text())


def write_sweep(folder: Path, data: dict[str, Any], name: str = "sweep.yaml") -> Path:
    path = folder / name
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


@pytest.fixture(scope="session")
def smoke_run(ray_session: None,
              tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], Path, Any]:
    """`sweeps/smoke.yaml` run once on Ray for the session: (sweep data, storage, summary).
    Tests that change a run folder work on a copy of `<storage>/smoke`."""
    from mlsweep.orchestrator import launch
    from mlsweep.spec import validate

    storage = tmp_path_factory.mktemp("storage")
    data = load_yaml("smoke.yaml")
    return data, storage, launch(validate(data), yaml.safe_dump(data), storage=str(storage))
