"""Ray Jobs (`mlsweep submit / logs / jobs / stop`) against a real Ray cluster on loopback, the
multi-node storage refusal, a worker node lost mid-sweep, and cluster.yaml against Ray's own
cluster-config validation.

One head node for the module: `ray start --head --block`, 2 CPUs, dashboard on 127.0.0.1,
token authentication on (as cluster.yaml sets it up). Other people's Ray instances on this
machine are left alone:
- the head has its own --temp-dir, so its address file is not the one a plain `ray.init()` or
  `--address auto` elsewhere picks up, and every port it opens is a free one;
- it is never stopped with `ray stop`, which kills every Ray process on the machine. Each
  `ray start --block` process gets SIGTERM, on which it stops the services it started; any
  process of its tree (recorded before, checked by start time) still alive then gets SIGKILL.
  Finalizers do this, so a failing test stops its cluster too.
"""

from __future__ import annotations

import contextlib
import copy
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest
import requests
import yaml
from conftest import ROOT, numbers

from mlsweep import cluster, read_results
from mlsweep.errors import UserError

BIN = Path(sys.executable).parent
CLI = [sys.executable, "-m", "mlsweep.cli"]
SMOKE = "sweeps/smoke.yaml"
SUBMISSION_ID = re.compile(r"mlsweep-smoke-\d{8}-\d{6}-[0-9a-f]{4}")


# --------------------------------------------------------------------------- processes


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _process_table() -> dict[int, tuple[int, str]]:
    """pid -> (parent pid, start time) of every process, from /proc."""
    table = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        table[int(entry.name)] = (int(fields[1]), fields[19])
    return table


def _tree(root: int) -> dict[int, str]:
    """The process `root` and all its descendants, each with its start time."""
    table = _process_table()
    found, frontier = {root: table.get(root, (0, ""))[1]}, [root]
    while frontier:
        parent = frontier.pop()
        for pid, (ppid, started) in table.items():
            if ppid == parent and pid not in found:
                found[pid] = started
                frontier.append(pid)
    return found


def _stop_ray(process: subprocess.Popen) -> None:
    """Stop one `ray start --block` and everything it started, and nothing else."""
    try:
        tree = _tree(process.pid)
    finally:
        process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
    time.sleep(1)
    table = _process_table()
    for pid, started in tree.items():
        if pid in table and table[pid][1] == started:
            os.kill(pid, signal.SIGKILL)


def _ray_start(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    """`ray start --block` with its own ports, in its own session (a Ctrl-C of pytest is not
    sent to it; the finalizer stops it)."""
    ports = ["--dashboard-agent-listen-port", "--dashboard-agent-grpc-port", "--runtime-env-agent-port",
             "--metrics-export-port"]
    command = [str(BIN / "ray"), "start", "--block", "--disable-usage-stats", *args,
               *[part for flag in ports for part in (flag, str(_free_port()))]]
    with log.open("w") as out:
        return subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)


@dataclass
class Head:
    url: str  # the dashboard
    gcs: str  # host:port of the cluster
    env: dict[str, str]  # for commands talking to it: its token, this venv first on PATH
    folder: Path
    process: subprocess.Popen  # its `ray start --block`

    def nodes(self) -> int:
        response = requests.get(f"{self.url}/nodes?view=summary", timeout=5,
                                headers={"Authorization": f"Bearer {self.env['RAY_AUTH_TOKEN']}"})
        return sum(n["raylet"]["state"] == "ALIVE" for n in response.json()["data"]["summary"])


def _wait(condition: Callable[[], bool], process: subprocess.Popen, log: Path, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert process.poll() is None, f"ray start ended:\n{log.read_text()[-3000:]}"
        assert time.monotonic() < deadline, f"Ray did not come up in {timeout}s:\n{log.read_text()[-3000:]}"
        time.sleep(0.5)


def _answers(url: str, token: str) -> bool:
    try:
        return requests.get(f"{url}/api/version", headers={"Authorization": f"Bearer {token}"},
                            timeout=2).ok
    except requests.RequestException:
        return False


@pytest.fixture(scope="module")
def head() -> Iterator[Head]:
    # Short: Ray's socket paths under it must stay within the 107 characters AF_UNIX allows.
    folder = Path(tempfile.mkdtemp(prefix="mlsw-", dir="/tmp"))
    token = secrets.token_hex(16)
    env = {k: v for k, v in os.environ.items() if k not in cluster.ADDRESS_ENV}
    # The job's `python` is this venv's, as it is the nodes' own Python under cluster.yaml.
    env.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=token, PATH=f"{BIN}{os.pathsep}{env['PATH']}")
    gcs_port, dashboard_port = _free_port(), _free_port()
    log = folder / "head.log"
    process = _ray_start(["--head", "--node-ip-address", "127.0.0.1", "--port", str(gcs_port),
                          "--num-cpus", "2", "--include-dashboard", "true", "--dashboard-host", "127.0.0.1",
                          "--dashboard-port", str(dashboard_port), "--ray-client-server-port",
                          str(_free_port()), "--temp-dir", str(folder)], env, log)
    try:
        url = f"http://127.0.0.1:{dashboard_port}"
        _wait(lambda: _answers(url, token), process, log)
        yield Head(url, f"127.0.0.1:{gcs_port}", env, folder, process)
    finally:
        _stop_ray(process)
        shutil.rmtree(folder, ignore_errors=True)


def mlsweep(*args: str, env: dict[str, str], timeout: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *args], env=env, cwd=ROOT, capture_output=True, text=True, timeout=timeout)


def one_error_line(done: subprocess.CompletedProcess) -> str:
    """The single `error: ...` line a refused command prints, with exit code 2."""
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert "Traceback" not in done.stderr and done.stderr.count("\n") == 1, done.stderr
    return done.stderr.strip()


# --------------------------------------------------------------------------- cluster.yaml


def _alternatives(text: str) -> dict[str, dict]:
    """The commented provider blocks (`# ---- gcp ----` ... `# ---- end gcp ----`), uncommented."""
    blocks = re.findall(r"^# ---- (\w+) ----\n(.*?)^# ---- end \1 ----", text, re.S | re.M)
    return {name: yaml.safe_load("\n".join(line[2:] for line in body.splitlines()))
            for name, body in blocks}


def test_cluster_yaml_passes_rays_validation() -> None:
    """What `ray up` checks before it touches a cloud: defaults merged, then the JSON schema."""
    import jsonschema
    from ray.autoscaler._private.util import prepare_config, validate_config

    text = (ROOT / "cluster.yaml").read_text()
    config = yaml.safe_load(text)
    validate_config(prepare_config(copy.deepcopy(config)))
    alternatives = _alternatives(text)
    assert sorted(alternatives) == ["gcp", "local"]
    gcp = {**config, **alternatives["gcp"]}
    local = {k: v for k, v in {**config, **alternatives["local"]}.items()
             if k not in ("available_node_types", "head_node_type")}  # as its comment says
    for variant in (gcp, local):
        validate_config(prepare_config(copy.deepcopy(variant)))
    with pytest.raises(jsonschema.ValidationError):  # the validation is not a formality
        validate_config(prepare_config({**copy.deepcopy(config), "max_worker": 3}))

    head_start = " ".join(config["head_start_ray_commands"])
    assert "--dashboard-host=127.0.0.1" in head_start and "0.0.0.0" not in text
    workers = config["available_node_types"]["gpu_worker"]
    assert workers["min_workers"] == 0 < workers["max_workers"]  # autoscaling GPU workers
    assert config["head_node_type"] == "head"
    assert config["file_mounts"] == {"~/mlsweep": ".", "~/.ray/auth_token": "~/.ray/auth_token"}
    setup = " ".join(config["setup_commands"])
    assert "-e ~/mlsweep" in setup and "RAY_AUTH_MODE=token" in setup


# --------------------------------------------------------------------------- pieces, no cluster


@pytest.fixture
def token_sources(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Path]:
    """No token anywhere to begin with."""
    for name in ("RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    yield tmp_path
    monkeypatch.undo()


def test_auth_header_comes_from_env_var_token_file_or_default_file(
        token_sources: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert cluster.auth_headers() == {}
    default = token_sources / ".ray" / "auth_token"
    default.parent.mkdir()
    default.write_text("from-home\n")
    assert cluster.auth_headers() == {"authorization": "Bearer from-home"}
    path = token_sources / "token"
    path.write_text("from-path")
    monkeypatch.setenv("RAY_AUTH_TOKEN_PATH", str(path))
    assert cluster.auth_headers() == {"authorization": "Bearer from-path"}
    monkeypatch.setenv("RAY_AUTH_TOKEN", "from-env")
    assert cluster.auth_headers() == {"authorization": "Bearer from-env"}  # RAY_AUTH_MODE is "disabled" here
    monkeypatch.delenv("RAY_AUTH_TOKEN")
    monkeypatch.setenv("RAY_AUTH_TOKEN_PATH", str(token_sources / "missing"))
    with pytest.raises(UserError, match="RAY_AUTH_TOKEN_PATH"):
        cluster.auth_headers()


def test_job_pieces() -> None:
    assert SUBMISSION_ID.fullmatch(cluster.submission_id("smoke"))
    assert cluster.submission_id("smoke") != cluster.submission_id("smoke")
    assert cluster.dashboard_url("head:8265/") == "http://head:8265"
    for address in ("auto", "ray://head:10001"):
        with pytest.raises(UserError, match="dashboard"):
            cluster.dashboard_url(address)
    # A relative folder would land in the job's working dir, which Ray deletes.
    assert cluster.cluster_storage("runs") == "~/runs"
    assert [cluster.cluster_storage(s) for s in ("/nfs/runs", "~/runs", "s3://b/p")] == \
        ["/nfs/runs", "~/runs", "s3://b/p"]
    assert cluster.entrypoint("a b.yaml", "~/runs") == ("python -m mlsweep.cli launch 'a b.yaml' "
                                                        "--sweep-text-env MLSWEEP_SWEEP_YAML "
                                                        "--address auto --storage '~/runs'")
    env = cluster.runtime_env(ROOT, ROOT / "pyproject.toml", "name: x\n")
    assert env["working_dir"] == str(ROOT) and env["pip"] == str(ROOT / "pyproject.toml")
    assert env["env_vars"][cluster.SWEEP_ENV] == "name: x\n"
    with pytest.raises(UserError, match="no such file"):
        cluster.runtime_env(ROOT, ROOT / "missing.txt")


def test_upload_leaves_out_gitignored_files_and_local_folders(tmp_path: Path) -> None:
    """Packed by Ray's own packer, as `submit` uploads it."""
    from ray._private.runtime_env.packaging import create_package

    project = tmp_path / "project"
    kept = ["mlsweep/cli/__init__.py", "mlsweep/data/loaders.py", "sweeps/smoke.yaml", ".gitignore"]
    left_out = ["notes.secret", "runs/smoke/results/trials/a.parquet", "data/cifar/batch.bin",
                ".venv/bin/python", ".git/HEAD", "mlsweep/cli/__pycache__/common.pyc"]
    for name in kept + left_out:
        (project / name).parent.mkdir(parents=True, exist_ok=True)
        (project / name).write_text("x")
    (project / ".gitignore").write_text("*.secret\n")
    package = tmp_path / "package.zip"
    create_package(str(project), package, include_gitignore=True,
                   excludes=cluster.runtime_env(project)["excludes"])
    files = {n for n in zipfile.ZipFile(package).namelist() if not n.endswith("/")}
    assert files == set(kept)


def test_follow_exits_with_the_jobs_outcome() -> None:
    """0 when it succeeded, the sweep's own code where known (2: refused input), else 1."""
    from types import SimpleNamespace as Info

    assert cluster.exit_code(Info(status="SUCCEEDED", driver_exit_code=0)) == 0
    assert cluster.exit_code(Info(status="FAILED", driver_exit_code=2)) == 2
    assert cluster.exit_code(Info(status="FAILED", driver_exit_code=None)) == 1
    assert cluster.exit_code(Info(status="STOPPED", driver_exit_code=-15)) == 1
    assert cluster.exit_code(Info(status="STOPPED", driver_exit_code=143)) == 1


def test_wrong_address_fails_fast_with_one_line() -> None:
    env = {k: v for k, v in os.environ.items() if k not in cluster.ADDRESS_ENV}
    url = f"http://127.0.0.1:{_free_port()}"
    for args in (["submit", SMOKE], ["jobs"]):
        t0 = time.monotonic()
        line = one_error_line(mlsweep(*args, "--address", url, env=env, timeout=60))
        assert time.monotonic() - t0 < 15
        assert line == f"error: cannot reach the Ray dashboard at {url} (Connection refused)"


# --------------------------------------------------------------------------- on the cluster


def test_missing_or_wrong_token_is_refused(head: Head, tmp_path: Path) -> None:
    no_token = {k: v for k, v in head.env.items() if k != "RAY_AUTH_TOKEN"}
    no_token["HOME"] = str(tmp_path)  # no ~/.ray/auth_token either
    assert "requires the cluster's token" in one_error_line(mlsweep("jobs", "--address", head.url,
                                                                    env=no_token))
    wrong = {**head.env, "RAY_AUTH_TOKEN": "not-the-token"}
    assert "rejected the token" in one_error_line(mlsweep("jobs", "--address", head.url, env=wrong))


def test_submit_follow_runs_the_sweep_and_its_results_read_back(head: Head, tmp_path: Path) -> None:
    """A one-node cluster with a local storage folder is fine: the sweep runs to the end. The
    sweep file lies outside the uploaded folder (the project, the command's working dir): its
    text travels with the job and is the run folder's sweep.yaml, byte for byte."""
    elsewhere = tmp_path / "my sweeps" / "mine.yaml"
    elsewhere.parent.mkdir()
    text = "# kept outside the project\n" + (ROOT / SMOKE).read_text()
    elsewhere.write_text(text)
    storage = tmp_path / "runs"
    done = mlsweep("submit", str(elsewhere), "--address", head.url, "--storage", str(storage), "--follow",
                   env=head.env)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    job_id = SUBMISSION_ID.search(done.stdout).group()
    assert f"submitted {job_id} to {head.url}" in done.stdout
    assert f"mlsweep stop {job_id} --address {head.url}" in done.stdout  # how to stop, follow, fetch
    assert f"mlsweep logs {job_id} --address {head.url} --follow" in done.stdout
    assert f"{storage}/smoke" in done.stdout
    # The job's log, streamed:
    assert "launch mine.yaml --sweep-text-env MLSWEEP_SWEEP_YAML --address auto" in done.stdout
    assert done.stdout.rstrip().endswith(f"job {job_id}: SUCCEEDED")

    trials = read_results(str(storage / "smoke"), "trials")
    assert len(trials) == 4 and (trials["status"] == "completed").all()
    assert len(read_results(str(storage / "smoke"), "epochs")) == 4 * 2
    assert (storage / "smoke" / "sweep.yaml").read_text() == text
    listed = mlsweep("jobs", "--address", head.url, env=head.env)
    assert re.search(rf"^{job_id}\s+SUCCEEDED\s+smoke\s", listed.stdout, re.M), listed.stdout


def test_stop_a_running_job(head: Head, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    submitted = mlsweep("submit", SMOKE, "--address", head.url, "--storage", str(tmp_path), env=head.env)
    assert submitted.returncode == 0, submitted.stderr
    job_id = SUBMISSION_ID.search(submitted.stdout).group()
    monkeypatch.setenv("RAY_AUTH_TOKEN", head.env["RAY_AUTH_TOKEN"])
    client = cluster.connect(head.url)
    deadline = time.monotonic() + 60
    while str(client.get_job_status(job_id)) == "PENDING" and time.monotonic() < deadline:
        time.sleep(0.5)
    assert str(client.get_job_status(job_id)) == "RUNNING"
    stopped = mlsweep("stop", job_id, "--address", head.url, env=head.env)
    assert stopped.returncode == 0 and f"job {job_id}: STOPPED" in stopped.stdout, stopped.stderr
    assert str(client.get_job_status(job_id)) == "STOPPED"
    followed = mlsweep("logs", job_id, "--address", head.url, "--follow", env=head.env)
    assert followed.returncode == 1 and f"Running entrypoint for job {job_id}" in followed.stdout
    with pytest.raises(UserError, match="no job nope on the cluster"):
        cluster.stop(head.url, "nope")


def test_local_storage_on_several_nodes_is_refused(head: Head, tmp_path: Path) -> None:
    """A second node joins (`ray start --address`): launch refuses a local folder."""
    log = head.folder / "worker.log"
    worker = _ray_start(["--address", head.gcs, "--node-ip-address", "127.0.0.1", "--num-cpus", "1"],
                        head.env, log)
    try:
        _wait(lambda: head.nodes() == 2, worker, log)
        launched = mlsweep("launch", SMOKE, "--address", head.gcs, "--storage", str(tmp_path / "a"),
                           env=head.env)
        line = one_error_line(launched)
        assert "2 nodes" in line and "NFS" in line and "s3://" in line
        assert not (tmp_path / "a" / "smoke" / "results").exists()
    finally:
        _stop_ray(worker)


# --------------------------------------------------------------------------- a lost node


def _trials_in(tree: dict[int, str], trial_ids: set[str]) -> set[str]:
    """The trials running in a process tree: Tune runs each trial in its own folder, named by
    its trial id (the orchestrator's trial_dirname_creator), as the worker's working dir."""
    found = set()
    for pid in tree:
        with contextlib.suppress(OSError):
            found.add(Path(os.readlink(f"/proc/{pid}/cwd")).name)
    return found & trial_ids


def _mentioning(text: str) -> list[int]:
    """Processes whose command line holds `text`."""
    pids = []
    for entry in Path("/proc").glob("[0-9]*"):
        with contextlib.suppress(OSError):
            if text.encode() in (entry / "cmdline").read_bytes():
                pids.append(int(entry.name))
    return pids


class Watch:
    """Which trials run on the head's and the worker's process trees, sampled every 0.2 s in a
    thread; after `lost()`, sightings on the head count apart. Both nodes share the host (and
    its name, the trials' `node` column), so the process trees tell them apart."""

    def __init__(self, head: subprocess.Popen, worker: subprocess.Popen, trial_ids: set[str]) -> None:
        self.trees = {"head": head.pid, "worker": worker.pid}
        self.trial_ids = trial_ids
        self.seen: dict[str, set[str]] = {"head": set(), "worker": set(), "head after": set()}
        self.after = False
        self.stopped = threading.Event()
        threading.Thread(target=self._run, daemon=True).start()

    def on(self, node: str) -> set[str]:
        return _trials_in(_tree(self.trees[node]), self.trial_ids)

    def lost(self) -> None:
        self.after = True

    def _run(self) -> None:
        while not self.stopped.wait(0.2):
            after = self.after
            self.seen["head after" if after else "head"] |= self.on("head")
            if not after:
                self.seen["worker"] |= self.on("worker")


def test_a_lost_worker_node_costs_nothing_recorded_and_its_trial_resumes_on_the_head(
        head: Head, s3, tmp_path: Path) -> None:
    """A worker node (1 CPU, its own temp dir) joins the head (2 CPUs); three trials, all
    running at once, checkpoint every epoch to S3 (a real moto server; a cluster of two nodes
    refuses a local folder). Once the worker's trial saved a checkpoint, every process of the
    worker node gets SIGKILL, as a lost spot instance ends. The three trials have the same
    numbers (they differ only in fail_at_epoch, past their last epoch), so the interrupted
    one is compared with the two that ran straight through."""
    from mlsweep.spec import expand, validate

    port, client = s3
    client.create_bucket(Bucket="nodes")
    data = yaml.safe_load((ROOT / SMOKE).read_text())
    data["name"] = "lost"
    data["parameters"].update(loss={"value": "contrastive"}, seed={"value": 0}, epochs={"value": 12},
                              checkpoint_every={"value": 1}, fail_at_epoch={"values": [0, 98, 99]})
    data.update(max_concurrent_trials=3, max_failures=1)
    sweep_file = tmp_path / "lost.yaml"
    sweep_file.write_text(yaml.safe_dump(data))
    trial_ids = {t.trial_id for t in expand(validate(data))}
    storage = f"s3://nodes/runs?endpoint_override=127.0.0.1:{port}&scheme=http"
    folder = Path(tempfile.mkdtemp(prefix="mlsw-", dir="/tmp"))
    log = folder / "worker.log"
    worker = _ray_start(["--address", head.gcs, "--node-ip-address", "127.0.0.1", "--num-cpus", "1",
                         "--temp-dir", str(folder)], head.env, log)
    launched: subprocess.Popen | None = None
    watch = None
    try:
        _wait(lambda: head.nodes() == 2, worker, log)
        launched = subprocess.Popen([*CLI, "launch", str(sweep_file), "--address", head.gcs,
                                     "--storage", storage], env=head.env, cwd=ROOT, text=True,
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        watch = Watch(head.process, worker, trial_ids)
        deadline = time.monotonic() + 240
        saved: list[str] = []
        while not saved:
            assert launched.poll() is None and time.monotonic() < deadline, launched.communicate()
            for lost in watch.on("worker"):
                listed = client.list_objects_v2(Bucket="nodes", Prefix=f"runs/lost/checkpoints/{lost}/")
                saved = [o["Key"] for o in listed.get("Contents", []) if o["Key"].endswith(".pt")]
            time.sleep(0.1)
        for pid in _tree(worker.pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        watch.lost()
        out, err = launched.communicate(timeout=300)
        assert launched.returncode == 0, out[-3000:] + err[-3000:]
        assert _mentioning(str(folder)) == []  # the worker node is gone, all of it
    finally:
        if watch is not None:
            watch.stopped.set()
        if launched is not None and launched.poll() is None:
            launched.kill()
        _stop_ray(worker)
        shutil.rmtree(folder, ignore_errors=True)

    assert watch.seen["worker"] == {lost} and lost in watch.seen["head after"]  # its retry ran on the head
    run_uri = f"s3://nodes/runs/lost?endpoint_override=127.0.0.1:{port}&scheme=http"
    trials = read_results(run_uri, "trials").set_index("trial_id")
    assert set(trials.index) == trial_ids and trials.index.is_unique  # each recorded, once
    assert (trials["status"] == "completed").all() and (trials["node"] == socket.gethostname()).all()
    assert trials.loc[lost, "attempts"] == 2
    latest_seen = max(int(key.rsplit("-", 1)[1].removesuffix(".pt")) for key in saved)
    assert latest_seen <= trials.loc[lost, "resumed_from_epoch"] < 12  # from its latest checkpoint
    others = trials.drop(index=lost)
    assert (others["attempts"] == 1).all() and others["resumed_from_epoch"].isna().all()
    for table in ("trials", "epochs", "steps"):
        rows = read_results(run_uri, table)
        resumed = numbers(rows[rows["trial_id"] == lost], table)
        for other in others.index:
            pd.testing.assert_frame_equal(resumed, numbers(rows[rows["trial_id"] == other], table),
                                          check_exact=True)
    listed = client.list_objects_v2(Bucket="nodes", Prefix="runs/lost/checkpoints/")
    assert [o["Key"] for o in listed.get("Contents", []) if o["Key"].endswith(".pt")] == []
