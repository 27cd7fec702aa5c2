"""Ray Jobs: send a sweep to a cluster's dashboard, follow it, list and stop jobs.

The folder `mlsweep submit` runs in is uploaded as the job's working directory, so the cluster
runs the code as it is here; the sweep file's text travels in the job's environment (SWEEP_ENV),
so the file may lie anywhere. The job's entrypoint is `mlsweep launch` on the head node, reading
the sweep from that variable and joining the cluster it runs on (`--address auto`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import shlex
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from mlsweep.errors import UserError

# A closed port fails at once; an address that drops packets would hang for minutes without this.
CONNECT_TIMEOUT_S = 5.0
STOP_WAIT_S = 30.0
# Ray reads the working dir's .gitignore itself; these stay out even when it is told not to
# (gitignore patterns: a leading / anchors at the top of the folder).
EXCLUDES = [".git/", ".venv/", "venv/", "__pycache__/", "/runs/", "/data/"]
# Ray's jobs SDK lets these environment variables override an address it is given.
ADDRESS_ENV = ("RAY_API_SERVER_ADDRESS", "RAY_ADDRESS")
SWEEP_ENV = "MLSWEEP_SWEEP_YAML"  # the job's sweep file, as text: `launch --sweep-text-env` reads it


@dataclass
class Submission:
    job_id: str
    address: str  # the dashboard's URL
    run_dir: str  # where results land: a folder on the head node, or a URI


# --------------------------------------------------------------------------- connecting


def dashboard_url(address: str) -> str:
    """`http://host:8265` from what a person types; Ray Client and GCS addresses are refused,
    since jobs go through the dashboard's HTTP API."""
    address = address.strip().rstrip("/")
    if address == "auto" or address.startswith("ray://"):
        raise UserError(f"--address {address}: mlsweep submit needs the dashboard's address, "
                        "e.g. http://127.0.0.1:8265 (after `ray dashboard cluster.yaml`)")
    return address if "://" in address else f"http://{address}"


def auth_headers() -> dict[str, str]:
    """The cluster's token as an HTTP header, found where Ray looks (RAY_AUTH_TOKEN, then the
    file RAY_AUTH_TOKEN_PATH names, then ~/.ray/auth_token) even when RAY_AUTH_MODE is not set
    here: the token belongs to the cluster, not to this machine. Read here rather than through
    Ray's token loader, a process-wide cache that a later local `ray.init()` in the same process
    would inherit, and whose local workers would then never start."""
    token = os.environ.get("RAY_AUTH_TOKEN", "").strip()
    if not token:
        named = os.environ.get("RAY_AUTH_TOKEN_PATH")
        path = Path(named or Path.home() / ".ray" / "auth_token").expanduser()
        if named and not path.is_file():
            raise UserError(f"cluster token: RAY_AUTH_TOKEN_PATH names {path}, which does not exist")
        token = path.read_text().strip() if path.is_file() else ""
    return {"authorization": f"Bearer {token}"} if token else {}


@contextlib.contextmanager
def _address_env_removed() -> Iterator[None]:
    """Without RAY_ADDRESS / RAY_API_SERVER_ADDRESS, so the address given is the one used."""
    saved = {name: os.environ.pop(name) for name in ADDRESS_ENV if name in os.environ}
    try:
        yield
    finally:
        os.environ.update(saved)


def _probe(url: str, headers: dict[str, str]) -> None:
    """Reach the dashboard within a few seconds, or say why not in one line."""
    import requests

    try:
        response = requests.get(f"{url}/api/version", headers=headers, timeout=CONNECT_TIMEOUT_S)
    except requests.RequestException as err:
        raise UserError(f"cannot reach the Ray dashboard at {url} ({_root_cause(err)})") from None
    if response.status_code == 401:
        raise UserError(f"the Ray dashboard at {url} requires the cluster's token: set RAY_AUTH_TOKEN "
                        "or RAY_AUTH_TOKEN_PATH, or put it in ~/.ray/auth_token")
    if response.status_code == 403:
        raise UserError(f"the Ray dashboard at {url} rejected the token sent, which is not the "
                        "cluster's (from RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH or ~/.ray/auth_token)")
    if response.status_code != 200:
        raise UserError(f"{url} does not answer as a Ray dashboard (HTTP {response.status_code} "
                        "on /api/version)")


def _root_cause(err: BaseException) -> str:
    """The innermost reason of a connection error, e.g. `Connection refused`."""
    while err.__context__ is not None or err.__cause__ is not None:
        err = err.__cause__ or err.__context__  # type: ignore[assignment]
    text = str(err)
    return text.split("] ", 1)[-1] if "] " in text else text or type(err).__name__


def _ray_messages(verbose: bool) -> None:
    """Ray's SDK logs each packaging step at INFO; only its errors unless asked for more."""
    for handler in logging.getLogger("ray").handlers:
        handler.setLevel(logging.INFO if verbose else logging.ERROR)


def connect(address: str, verbose: bool = False) -> Any:
    """A JobSubmissionClient for the dashboard at `address`, with the cluster's token."""
    from ray.job_submission import JobSubmissionClient

    _ray_messages(verbose)
    url = dashboard_url(address)
    headers = auth_headers()
    _probe(url, headers)
    with _address_env_removed():
        try:
            return JobSubmissionClient(url, headers=headers)
        except (ConnectionError, RuntimeError) as err:
            raise UserError(f"cannot use the Ray dashboard at {url} ({err})") from None


# --------------------------------------------------------------------------- submitting


def submission_id(sweep_name: str, now: datetime | None = None) -> str:
    """Readable and unique: the sweep, the UTC time, 4 random hex digits."""
    stamp = (now or datetime.now(timezone.utc)).strftime("%Y%m%d-%H%M%S")
    return f"mlsweep-{sweep_name}-{stamp}-{secrets.token_hex(2)}"


def cluster_storage(storage: str) -> str:
    """Where the job writes. A relative folder would land in the job's unpacked working dir,
    which Ray deletes, so it is taken relative to the home folder on the head node instead."""
    if "://" in storage or storage.startswith(("/", "~")):
        return storage
    return f"~/{storage}"


def entrypoint(sweep_name: str, storage: str) -> str:
    """`python -m` imports mlsweep from the uploaded working dir (the job's current folder)
    first, so the cluster runs this checkout's code; the installed one serves when there is none.
    The sweep comes from SWEEP_ENV; `sweep_name` (the file's name) is what messages call it."""
    return shlex.join(["python", "-m", "mlsweep.cli", "launch", sweep_name, "--sweep-text-env", SWEEP_ENV,
                       "--address", "auto", "--storage", storage])


def runtime_env(working_dir: Path, requirements: Path | None = None, sweep_text: str = "") -> dict[str, Any]:
    """The job's environment: this folder's files, the sweep file's text, and the sweep's extra
    pip requirements."""
    env: dict[str, Any] = {"working_dir": str(working_dir), "excludes": list(EXCLUDES),
                           # Logs reach `--follow` as they are printed, not in 8 KiB blocks.
                           "env_vars": {"PYTHONUNBUFFERED": "1", SWEEP_ENV: sweep_text}}
    if requirements is not None:
        if not requirements.is_file():
            raise UserError(f"--requirements {requirements}: no such file")
        env["pip"] = str(requirements.resolve())
    return env


def submit(sweep_file: Path, address: str, storage: str | None = None, requirements: Path | None = None,
           working_dir: Path | None = None, verbose: bool = False) -> tuple[Any, Submission]:
    """Validate the sweep here, then submit it as a Ray Job; returns the client and the job."""
    from mlsweep import results
    from mlsweep.spec import load_sweep

    sweep = load_sweep(sweep_file)
    where = cluster_storage(storage or sweep.storage)
    env = runtime_env(working_dir or Path.cwd(), requirements, sweep_file.read_text())
    client = connect(address, verbose)
    job_id = submission_id(sweep.name)
    try:
        client.submit_job(entrypoint=entrypoint(sweep_file.name, where), submission_id=job_id,
                          runtime_env=env, metadata={"sweep": sweep.name, "storage": where})
    except (RuntimeError, ValueError) as err:
        raise UserError(f"the cluster did not accept the job: {err}") from None
    return client, Submission(job_id, dashboard_url(address), results.join(where, sweep.name))


def next_steps(job: Submission) -> list[str]:
    """What to run next: follow, stop, and fetch the results from where they land."""
    where = f"--address {job.address}"
    if "://" in job.run_dir:
        fetch = f"mlsweep analyze {job.run_dir}   (the results are read where they are)"
    else:
        fetch = f"ray rsync-down cluster.yaml {shlex.quote(job.run_dir)} runs/   (a folder on the head node)"
    return [f"follow:  mlsweep logs {job.job_id} {where} --follow",
            f"stop:    mlsweep stop {job.job_id} {where}",
            f"results: {fetch}"]


# --------------------------------------------------------------------------- following


def exit_code(info: Any) -> int:
    """0 when the job succeeded; when it failed, the sweep's own exit code (2: bad input) where
    known; else (stopped, or no code) 1."""
    if str(info.status) == "SUCCEEDED":
        return 0
    code = getattr(info, "driver_exit_code", None)
    return code if str(info.status) == "FAILED" and isinstance(code, int) and code > 0 else 1


def follow(client: Any, job_id: str, write: Callable[[str], Any]) -> tuple[str, int]:
    """Stream the job's logs until it ends; its final status and the exit code it maps to."""

    async def tail() -> None:
        async for chunk in client.tail_job_logs(job_id):
            write(chunk)

    try:
        asyncio.run(tail())
    except RuntimeError as err:
        raise UserError(f"job {job_id}: {err}") from None
    info = client.get_job_info(job_id)
    return str(info.status), exit_code(info)


def logs(address: str, job_id: str, write: Callable[[str], Any], keep_following: bool) -> int:
    """Print a job's logs (all so far, or streamed until it ends); the exit code of `follow`."""
    client = connect(address)
    _require_job(client, job_id)
    if keep_following:
        return follow(client, job_id, write)[1]
    write(client.get_job_logs(job_id))
    return 0


# --------------------------------------------------------------------------- jobs


def _require_job(client: Any, job_id: str) -> None:
    try:
        client.get_job_info(job_id)
    except RuntimeError:
        raise UserError(f"no job {job_id} on the cluster (mlsweep jobs lists them)") from None


def _when(ms: int | None) -> str | None:
    """A job's millisecond timestamp as UTC time."""
    return None if ms is None else f"{datetime.fromtimestamp(ms / 1000, timezone.utc):%Y-%m-%d %H:%M:%S}Z"


def _seconds(job: Any) -> int | None:
    """How long a job ran, or has been running."""
    if job.start_time is None:
        return None
    return round(((job.end_time or time.time() * 1000) - job.start_time) / 1000)


def list_jobs(address: str) -> list[dict[str, Any]]:
    """Every job the cluster knows, newest first, with the sweep it runs (if it is a sweep)."""
    jobs = sorted(connect(address).list_jobs(), key=lambda j: j.start_time or 0, reverse=True)
    return [{"job": j.submission_id or j.job_id, "status": str(j.status),
             "sweep": (j.metadata or {}).get("sweep"), "started": _when(j.start_time),
             "seconds": _seconds(j)} for j in jobs]


def stop(address: str, job_id: str, wait_s: float = STOP_WAIT_S) -> str:
    """Ask the job to stop and wait until it has; its status afterwards."""
    client = connect(address)
    _require_job(client, job_id)
    client.stop_job(job_id)
    deadline = time.monotonic() + wait_s
    status = str(client.get_job_status(job_id))
    while status in ("PENDING", "RUNNING") and time.monotonic() < deadline:
        time.sleep(0.5)
        status = str(client.get_job_status(job_id))
    return status
