"""Shared fixtures: one real local Ray for the whole session, sweep files written per test."""

from __future__ import annotations

import os
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
