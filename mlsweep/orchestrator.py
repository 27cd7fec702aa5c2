"""Run a sweep's pending trials on Ray Tune, streaming results to Parquet from the driver.

Pending trials are grouped into packs (mlsweep.packs), each one Tune trial that trains its
members as one stacked model (mlsweep.worker). Trials already recorded are skipped, so a launch
can be repeated after Ctrl-C, a crash or an extended grid. Workers train, report and write
their packs' checkpoints (`<run>/checkpoints`); the driver writes every results file (one Tune
callback), so a multi-node run needs shared storage for Tune's state and the checkpoints, but
not for results.
"""

from __future__ import annotations

import contextlib
import json
import math
import signal
import sys
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from mlsweep import rayconnect, rayfast, results
from mlsweep.catalog import pack_id, trial_id
from mlsweep.diagnostics.summary import TrialClock, summarize
from mlsweep.errors import UserError
from mlsweep.packs import make_packs, slots
from mlsweep.progress import SweepProgress
from mlsweep.runfolder import MANIFEST, SWEEP_FILE, RunFolder, require_writable_dir
from mlsweep.signals import Interrupted, stop_on_signals
from mlsweep.spec import Sweep, Trial, expand
from mlsweep.worker import pack_configs, rows_of, trainable
from mlsweep.writeback import BackgroundWriter

# Entered while the trials run, with the run folder and the progress (e.g. a live report).
Live = Callable[[str, SweepProgress], contextlib.AbstractContextManager[Any]]
STORAGE_TIMEOUT_S = 300.0  # how long the driver retries a result write before stopping the sweep
SHARED_FILESYSTEMS = ("nfs", "nfs4", "cifs", "smb3", "lustre", "gpfs", "beegfs", "ceph", "glusterfs",
                      "fuse.")


@dataclass
class LaunchSummary:
    run_dir: str
    total: int  # trials of the sweep
    skipped: int  # already recorded before this launch
    launched: int  # pending when this launch began
    by_status: dict[str, int] = field(default_factory=dict)  # of the trials this launch ran
    recorded: dict[str, int] = field(default_factory=dict)  # by status, of the `skipped` ones
    elapsed_s: float = 0.0
    interrupted: Interrupted | None = None  # the signal that stopped the launch
    storage_error: str | None = None  # why the launch stopped when storage stopped answering
    set_aside: list[str] = field(default_factory=list)  # unreadable run files moved aside

    @property
    def ran(self) -> int:
        """Trials this launch recorded (fewer than `launched` when interrupted)."""
        return sum(self.by_status.values())


# --------------------------------------------------------------------------- run folder


def run_dir_of(sweep: Sweep, storage: str | None) -> str:
    """`<storage>/<name>`: an absolute local path or a URI."""
    base = storage or sweep.storage
    if "://" not in base:
        base = str(Path(base).expanduser().resolve())
    return results.join(base, sweep.name)


def recorded(run_dir: str, retry_failed: bool) -> dict[str, str]:
    """Trial ids that need no run, with their status: completed ones, and failed/diverged
    unless retried."""
    trials = results.read_results(run_dir, "trials", bad=[])  # launch set bad files aside first
    if trials.empty:
        return {}
    keep = trials if not retry_failed else trials[trials["status"] == "completed"]
    return dict(zip(keep["trial_id"], keep["status"], strict=True))


def _versions() -> dict[str, str]:
    """Installed versions, read from package metadata: importing torch here would cost the
    driver seconds."""
    from importlib.metadata import version

    from mlsweep import __version__

    return {"mlsweep": __version__, "ray": version("ray"), "torch": version("torch")}


def write_run_files(folder: RunFolder, sweep: Sweep, sweep_text: str, trials: list[Trial]) -> None:
    """`sweep.yaml` as launched and `manifest.json`, which keeps every trial id ever planned
    (an extended grid adds to it) and one line per launch."""
    manifest = folder.manifest([]) or _rebuilt_manifest(folder, sweep)
    canonical = json.dumps(sweep.model_dump(mode="json"), sort_keys=True)
    manifest["spec_hash"] = trial_id(json.loads(canonical))
    manifest["trials"].update({t.trial_id: t.config for t in trials})
    manifest["versions"] = _versions()
    manifest["launches"].append({"at": datetime.now(timezone.utc).isoformat(), "trials": len(trials)})
    folder.write_sweep_text(sweep_text)
    folder.write_manifest(manifest)


def _rebuilt_manifest(folder: RunFolder, sweep: Sweep) -> dict[str, Any]:
    """A fresh manifest (a new run folder, or one whose manifest was set aside): the trials
    already recorded come back from the trials table, with the settings their rows hold."""
    from mlsweep.catalog import SETTINGS

    trials = results.read_results(folder.uri, "trials", bad=[])
    rows = trials.to_dict("records") if not trials.empty else []
    known = {row["trial_id"]: {k: row[k] for k in SETTINGS if k in row and not _missing(row[k])}
             for row in rows}
    return {"sweep": sweep.name, "trials": known, "launches": []}


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def set_aside_bad_files(folder: RunFolder) -> list[str]:
    """Move every unreadable run file aside so the launch can go on; one line for each. A bad
    results file's trial counts as not recorded (its trials row goes aside too) and runs again;
    a bad manifest.json or sweep.yaml is rewritten by this launch."""
    lines = []
    bad: list[results.BadFile] = []
    folder.manifest(bad)
    for found in bad:
        lines.append(f"{found.path}: unreadable ({found.error}); moved to {folder.move_aside(MANIFEST)}, "
                     "rebuilt from the sweep and the results")
    text = _unreadable_text(folder)
    if text is not None:
        lines.append(f"{folder.uri_of(SWEEP_FILE)}: unreadable ({text}); moved to "
                     f"{folder.move_aside(SWEEP_FILE)}, rewritten from the sweep launched")
    files = results.unreadable(folder.uri)
    redo = {f.trial_id for f in files if f.table != "trials"}
    for found in files:
        lines.append(f"{found.path}: unreadable ({found.error}); moved to "
                     f"{results.quarantine(folder.uri, found.table, found.trial_id)}, its trial runs again")
    if redo:  # a bad epochs or steps file: the trial's good trials row goes aside as well
        rows = results.read_results(folder.uri, "trials", columns=["trial_id"], bad=[])
        for tid in sorted(redo & set(rows.get("trial_id", []))):
            results.quarantine(folder.uri, "trials", tid)
    return lines


def _unreadable_text(folder: RunFolder) -> str | None:
    """Why the run folder's sweep.yaml cannot be read as YAML, or None when it can (or is absent)."""
    import yaml

    try:
        text = folder.sweep_text()
        if text is not None:
            yaml.safe_load(text)
    except (OSError, ValueError, yaml.YAMLError) as error:
        return str(error).splitlines()[0]
    return None


# --------------------------------------------------------------------------- driver side


def _error_line(trial: Any) -> str:
    """The exception line of the trial's last traceback (what a person reads first). Tune
    writes it to the trial's local folder first and syncs it to storage later."""
    try:
        text = Path(trial.error_file).read_text() if trial.error_file else ""
    except OSError:
        text = ""
    lines = [ln.strip() for ln in (text or trial.get_error() or "").splitlines() if ln.strip()]
    return lines[-1][:2000] if lines else "the trial failed without an error message"


def make_writer(run_dir: str, sweep_name: str, packs: Mapping[str, list[dict[str, Any]]],
                overrides: Mapping[str, Any], progress: SweepProgress,
                stopping: list[int] | None = None, sink: BackgroundWriter | None = None) -> Any:
    """The driver-side Tune callback that hands each member's tables to `sink` (the background
    writer) when its pack ends; it never blocks on storage nor raises into Tune, so a storage
    outage never retrains a trial. Once `stopping` holds a signal, packs ending are not written:
    the signal ended them (Ctrl-C reaches the workers too), and a relaunch runs them again."""
    stopping = [] if stopping is None else stopping
    sink = BackgroundWriter(STORAGE_TIMEOUT_S, run_dir) if sink is None else sink
    from ray.tune import Callback

    class ResultsWriter(Callback):
        def __init__(self) -> None:
            self.state: dict[str, dict[str, Any]] = {}

        def _state(self, trial: Any) -> dict[str, Any]:
            return self.state.setdefault(trial.trial_id, {
                "configs": pack_configs(trial.config, packs, overrides), "attempts": 0, "meta": {},
                "clock": TrialClock()})

        def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
            """Also called for each retry, which reports every epoch again (from scratch or
            from its checkpoint)."""
            state = self._state(trial)
            state["attempts"] += 1
            state["records"] = [[] for _ in state["configs"]]
            state["steps"] = [[] for _ in state["configs"]]
            for member, config in enumerate(state["configs"]):
                progress.started(_key(trial, member), config)

        def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict,
                            **info: Any) -> None:
            state = self._state(trial)
            for member, part in enumerate(result["_members"]):
                if part["records"]:
                    state["records"][member] += part["records"]
                    state["steps"][member] += rows_of(part["steps"])
                    progress.reported(_key(trial, member), part["records"][-1]["epoch"])
            state["meta"] = result["_meta"]

        def _write(self, trial: Any, error: str | None) -> None:
            state = self._state(trial)
            del self.state[trial.trial_id]
            if stopping:
                return
            meta = state["clock"].meta(None, None) | state["meta"]  # the worker's device and node
            configs = state["configs"]
            pack = {"attempts": state["attempts"], "pack_size": len(configs),
                    "pack_id": pack_id([trial_id(c) for c in configs])}
            rows = []
            for member, (config, records) in enumerate(zip(configs, state["records"], strict=True)):
                # A member that had diverged before its pack failed keeps its own ending.
                diverged = bool(records) and not math.isfinite(records[-1]["train_loss"])
                summary = {**summarize(records, meta, None if diverged else error), **pack}
                rows.append((member, config, summary, records, state["steps"][member]))

            def write() -> None:
                for member, config, summary, records, steps in rows:
                    results.write_trial(run_dir, trial_id(config), sweep_name, config, summary,
                                        records, steps)
                    progress.finished(_key(trial, member), summary["status"])

            sink.submit(write)

        def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
            self._write(trial, None)

        def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
            self._write(trial, _error_line(trial))

    return ResultsWriter()


def _key(trial: Any, member: int) -> str:
    """A member's key in the progress lines: its Tune trial (pack) and its place in it."""
    return f"{trial.trial_id}/{member}"


def _search_space(sweep: Sweep) -> dict[str, Any]:
    from ray import tune

    space: dict[str, Any] = {}
    for name, param in sweep.parameters.items():
        if param.is_range:
            space[name] = {"uniform": lambda p: tune.uniform(p.min, p.max),
                           "log_uniform": lambda p: tune.loguniform(p.min, p.max),
                           "int": lambda p: tune.randint(int(p.min), int(p.max) + 1),
                           None: lambda p: tune.uniform(p.min, p.max)}[param.distribution](param)
        elif len(param.choices) > 1:
            space[name] = tune.choice(param.choices)
        else:
            space[name] = param.value
    return space


def check_storage(run_dir: str) -> None:
    """A local path on a multi-node cluster would scatter Tune's state over the nodes."""
    import ray

    nodes = [n for n in ray.nodes() if n.get("Alive")]
    if len(nodes) > 1 and "://" not in run_dir and not is_shared_path(run_dir):
        raise UserError(f"storage {run_dir} is a local folder, but the Ray cluster has {len(nodes)} "
                        "nodes: use a shared folder (an NFS mount on every node) or s3://bucket/prefix")


def is_shared_path(path: str) -> bool:
    """Whether `path` lies on a network file system, by the longest mount point above it."""
    try:
        mounts = [line.split()[1:3] for line in Path("/proc/mounts").read_text().splitlines()]
    except OSError:
        return False
    target = str(Path(path).resolve())
    best = max((m for m in mounts if target == m[0] or target.startswith(m[0].rstrip("/") + "/")),
               key=lambda m: len(m[0]), default=None)
    return best is not None and best[1].startswith(SHARED_FILESYSTEMS)


def launch(sweep: Sweep, sweep_text: str, storage: str | None = None, address: str | None = None,
           retry_failed: bool = False, verbose: bool = False,
           storage_timeout: float = STORAGE_TIMEOUT_S,
           notice: Callable[[str], None] | None = None, live: Live | None = None) -> LaunchSummary:
    """Run every pending trial of `sweep`; return what happened. Safe to call again. SIGINT or
    SIGTERM stops it (a second one at once): recorded trials stay, the summary says which
    signal (`interrupted`), and a relaunch runs the rest. One launch of a sweep at a time per
    storage (the run folder's lock). Unreadable run files are moved aside first, each named in
    one line to `notice` (default: stderr), and their trials run again. When storage does not
    take a result write for `storage_timeout` seconds, the sweep stops (`storage_error`).
    `live(run_dir, progress)` is entered while the trials run (the CLI's live report)."""
    folder = RunFolder(run_dir_of(sweep, storage))
    require_writable_dir(folder.uri, "the run folder, from " + ("--storage" if storage else "`storage:`"))
    with folder.locked():
        set_aside = set_aside_bad_files(folder)
        for line in set_aside:
            (notice or _to_stderr)(line)
        summary = _launch_locked(sweep, sweep_text, folder, address, retry_failed, verbose,
                                 storage_timeout, live)
    summary.set_aside = set_aside
    return summary


def _to_stderr(line: str) -> None:
    print(f"warning: {line}", file=sys.stderr, flush=True)


def _launch_locked(sweep: Sweep, sweep_text: str, folder: RunFolder, address: str | None,
                   retry_failed: bool, verbose: bool, storage_timeout: float,
                   live: Live | None) -> LaunchSummary:
    trials = expand(sweep) if sweep.method == "grid" else []
    done = recorded(folder.uri, retry_failed)
    pending = [t for t in trials if t.trial_id not in done]
    n_samples = max(0, sweep.num_samples - len(done)) if sweep.method == "optuna" else len(pending)
    summary = LaunchSummary(folder.uri, len(trials) or sweep.num_samples, len(done), n_samples,
                            recorded=dict(Counter(done.values())))
    if n_samples == 0:
        write_run_files(folder, sweep, sweep_text, trials)
        return summary
    stop_ray = rayconnect.connect(address, verbose)
    # After ray.init, which sets a SIGTERM handler of its own; the shutdown inside, so that a
    # second signal while it runs ends the process at once.
    with stop_on_signals() as received:
        try:
            check_storage(folder.uri)  # also when RAY_ADDRESS, not --address, chose the cluster
            write_run_files(folder, sweep, sweep_text, trials)
            _fit(sweep, folder, pending, n_samples, verbose, summary, received, storage_timeout, live)
        except KeyboardInterrupt:  # Ray's C++ waits re-raise Interrupted as a bare KeyboardInterrupt
            summary.interrupted = Interrupted(received[0] if received else signal.SIGINT)
        finally:
            if stop_ray is not None:
                stop_ray()
    return summary


def _fit(sweep: Sweep, folder: RunFolder, pending: list[Trial], n_samples: int, verbose: bool,
         summary: LaunchSummary, stopping: list[int], storage_timeout: float,
         live: Live | None = None) -> None:
    """Run the trials on Tune; `summary` gets what ran, also when a signal or a storage outage
    cuts it short."""
    from ray import tune

    from mlsweep.tracking import trackers

    packs = {p.pack_id: p.configs for p in make_packs(sweep, pending, cluster_slots(sweep),
                                                      keep=resumable_packs(folder, pending))}
    overrides = sweep.overrides()
    progress = SweepProgress(n_samples, verbose)
    sink = BackgroundWriter(storage_timeout, folder.uri)
    writer = make_writer(folder.uri, sweep.name, packs, overrides, progress, stopping, sink)
    resources = tune.with_resources(
        tune.with_parameters(trainable, packs=packs, overrides=overrides,
                             checkpoints=folder.checkpoints_uri),
        {"cpu": sweep.resources.cpu, "gpu": sweep.resources.gpu})
    mode = "max" if sweep.metric.goal == "maximize" else "min"
    tune_config = tune.TuneConfig(
        metric=sweep.metric.name, mode=mode, reuse_actors=True,
        max_concurrent_trials=sweep.max_concurrent_trials,
        trial_name_creator=lambda t: t.config.get("pack_id", t.trial_id),
        trial_dirname_creator=lambda t: t.config.get("pack_id", t.trial_id),
        num_samples=1 if sweep.method == "grid" else n_samples,
        search_alg=_optuna() if sweep.method == "optuna" else None,
        scheduler=_asha(sweep) if sweep.scheduler == "asha" else None,
    )
    param_space = ({"pack_id": tune.grid_search(list(packs))} if sweep.method == "grid"
                   else _search_space(sweep))
    run_config = tune.RunConfig(
        name=f"launch-{datetime.now(timezone.utc):%Y%m%d-%H%M%S}",
        storage_path=folder.tune_uri,
        failure_config=tune.FailureConfig(max_failures=sweep.max_failures),
        callbacks=[writer, *trackers(sweep, lambda t: pack_configs(t.config, packs, overrides))],
        stop=stop_when_storage_is_gone(sink), verbose=1 if verbose else 0)
    t0 = time.perf_counter()
    try:
        with progress, live(folder.uri, progress) if live else contextlib.nullcontext():
            try:
                tuner = tune.Tuner(resources, param_space=param_space, tune_config=tune_config,
                                   run_config=run_config)
                with rayfast.quick_tune():
                    tuner.fit()
            except OSError:  # Tune reads its state back from storage at the end (a ResultGrid)
                if not sink.gave_up():
                    raise
            finally:
                sink.close()  # the rows of trials that finished, also after Ctrl-C
    finally:
        summary.storage_error = sink.error
        summary.elapsed_s = time.perf_counter() - t0
        summary.by_status = dict(progress.by_status)


def resumable_packs(folder: RunFolder, pending: list[Trial]) -> list[list[str]]:
    """Member ids of the packs stopped with a checkpoint whose members all still run; the
    checkpoints of the others (a member recorded since) are deleted: no pack of theirs can
    resume."""
    waiting = {t.trial_id for t in pending}
    keep = []
    for pack, members in folder.checkpointed_packs().items():
        if set(members) <= waiting:
            keep.append(members)
        else:
            folder.drop_checkpoints(pack)
    return keep


def cluster_slots(sweep: Sweep) -> int:
    """Packs that run at once on the connected Ray cluster (every core or GPU busy)."""
    import ray

    available = ray.cluster_resources()
    return slots(sweep, available.get("CPU", 1.0), available.get("GPU", 0.0))


def stop_when_storage_is_gone(sink: BackgroundWriter) -> Any:
    """Tune's stopper that ends the whole sweep once the results writer gave up on storage."""
    from ray.tune.stopper import Stopper

    class StorageStopper(Stopper):
        def __call__(self, trial_id: str, result: dict[str, Any]) -> bool:
            return False

        def stop_all(self) -> bool:
            return sink.gave_up()

    return StorageStopper()


def _optuna() -> Any:
    from ray.tune.search.optuna import OptunaSearch

    return OptunaSearch(seed=0)


def _asha(sweep: Sweep) -> Any:
    from ray.tune.schedulers import ASHAScheduler

    epochs = sweep.parameters.get("epochs")
    max_t = int(epochs.value) if epochs is not None and "value" in epochs.model_fields_set else 100
    return ASHAScheduler(time_attr="epoch", max_t=max_t, grace_period=1)
