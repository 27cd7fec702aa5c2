"""Ray's fixed cost: a one-trial, one-epoch sweep by `mlsweep launch` vs the same trial by
`mlsweep train` (no Ray), and where launch's extra seconds go.

The ratio is of the two commands timed from outside, as a user waits, taking turns. The
breakdown comes from a third, instrumented launch (`python -m bench.fixed_cost probe`): the
same CLI in one process, with timestamps logged around `ray.init`, `Tuner.fit` and
`ray.shutdown` in the driver and, in the Ray worker that runs the trial, at its process start,
when Tune hands it the trainable and around its torch import and training. Every timestamp is
wall-clock time since the probe's command was started.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from bench.common import (
    MLSWEEP,
    PYTHON,
    RAY_WORKER_NICENESS,
    ROOT,
    Section,
    Target,
    bench_env,
    log,
    median,
    timed_command,
)

EVENTS = "MLSWEEP_BENCH_EVENTS"  # the file both sides append their timestamps to
TRIAL = {"loss": "triplet", "dataset": "digits", "margin": 0.2, "seed": 0, "epochs": 1,
         "batch_size": 128, "lr": 1.0e-3}


def note(name: str, at: float | None = None) -> None:
    """Append one timestamp (now, or `at`) to the events file, with this process's id."""
    path = os.environ.get(EVENTS)
    if path:
        with open(path, "a") as f:
            f.write(json.dumps({"event": name, "t": time.time() if at is None else at,
                                "pid": os.getpid()}) + "\n")


def process_start() -> float:
    """This process's start, in wall-clock seconds (Linux /proc)."""
    ticks = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19])
    boot = next(float(line.split()[1]) for line in Path("/proc/stat").read_text().splitlines()
                if line.startswith("btime"))
    return boot + ticks / os.sysconf("SC_CLK_TCK")


note("bench module imported")  # in the worker: Tune's trainable arrived and was unpickled


def timed_trainable(params: dict[str, Any], packs: dict[str, list[dict[str, Any]]],
                    overrides: dict[str, Any], checkpoints: str | None = None) -> None:
    """mlsweep.worker.trainable, with the worker's timestamps around it."""
    note("worker process started", process_start())
    note("trainable entered")
    import torch  # noqa: F401

    note("torch imported")
    import mlsweep.trainer.loop  # noqa: F401
    from mlsweep.worker import trainable

    note("trainer imported")
    trainable(params, packs, overrides, checkpoints)
    note("trainable returned")


def _timed(owner: Any, name: str, label: str) -> None:
    """Log `label` begin / end around every call of `owner.name`."""
    inner: Callable[..., Any] = getattr(owner, name)

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        note(f"{label} begin")
        try:
            return inner(*args, **kwargs)
        finally:
            note(f"{label} end")

    setattr(owner, name, wrapper)


def probe(argv: list[str]) -> None:
    """`mlsweep launch ARGV...` in this process, instrumented."""
    note("driver process started", process_start())
    import ray

    import mlsweep.orchestrator as orchestrator
    from mlsweep.cli import app

    note("driver imported mlsweep and ray")
    _timed(ray, "init", "ray.init")
    _timed(ray, "shutdown", "ray.shutdown")
    _timed(orchestrator, "write_run_files", "run files")
    fit = orchestrator._fit

    def timed_fit(*args: Any, **kwargs: Any) -> None:
        from ray import tune  # where launch imports it

        _timed(tune.Tuner, "fit", "Tuner.fit")
        fit(*args, **kwargs)

    orchestrator._fit = timed_fit
    orchestrator.trainable = timed_trainable
    try:
        app(["launch", *argv], standalone_mode=False)
    finally:
        note("launch returned")


# --------------------------------------------------------------------------- the benchmark


def sweep_file(tmp: Path) -> Path:
    spec = {"name": "one", "method": "grid", "metric": {"name": "map_at_r", "goal": "maximize"},
            "parameters": {k: {"value": v} for k, v in TRIAL.items()},
            "resources": {"cpu": 1, "gpu": 0}, "max_concurrent_trials": 2}
    path = tmp / "one.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def train_command() -> list[str]:
    return [MLSWEEP, "train", *(arg for k, v in TRIAL.items() for arg in ("--set", f"{k}={v}"))]


def trial_ids_agree(sweep: Path) -> None:
    """The launched trial and the trained one are the same trial (same id)."""
    env = bench_env()
    plan = json.loads(subprocess.run([MLSWEEP, "plan", str(sweep), "--format", "json"], cwd=ROOT,
                                     env=env, capture_output=True, text=True, check=True).stdout)
    ids = {t["trial_id"] for t in plan["trials"]}
    train = subprocess.run([*train_command(), "--format", "json"], cwd=ROOT, env=env,
                           capture_output=True, text=True, check=True).stdout
    trained = json.loads(train)["trial_id"]
    if ids != {trained}:
        raise RuntimeError(f"launch plans {ids}, train runs {trained}: not the same trial")


def timeline(tmp: Path, sweep: Path, storage: Path) -> tuple[float, dict[str, float]]:
    """One instrumented launch: its wall time and each event's seconds since its start."""
    events = tmp / "events.jsonl"
    events.unlink(missing_ok=True)
    start = time.time()
    env = {**bench_env(), EVENTS: str(events)}
    subprocess.run([PYTHON, "-m", "bench.fixed_cost", "probe", str(sweep), "--storage", str(storage)],
                   cwd=ROOT, env=env, capture_output=True, text=True, check=True, timeout=600)
    wall = time.time() - start
    lines = [json.loads(line) for line in events.read_text().splitlines()]
    worker = next(e["pid"] for e in lines if e["event"] == "trainable entered")
    seen: dict[str, float] = {}
    for e in lines:
        if e["event"] == "bench module imported":  # the driver imports it too
            e["event"] += " (worker)" if e["pid"] == worker else " (driver)"
        seen.setdefault(e["event"], e["t"] - start)
    return wall, seen


PHASES = [  # (phase, from event, to event)
    ("Python start, CLI + ray imports", None, "driver imported mlsweep and ray"),
    ("until ray.init (sweep read, run folder checked)", "driver imported mlsweep and ray",
     "ray.init begin"),
    ("ray.init", "ray.init begin", "ray.init end"),
    ("run files, ray.tune import, Tune set-up until fit", "ray.init end", "Tuner.fit begin"),
    ("fit until the worker has Tune's trainable", "Tuner.fit begin", "bench module imported (worker)"),
    ("worker: until the trainable runs", "bench module imported (worker)", "trainable entered"),
    ("worker: import torch", "trainable entered", "torch imported"),
    ("worker: import the trainer", "torch imported", "trainer imported"),
    ("worker: train (data, model, 1 epoch, evaluation)", "trainer imported", "trainable returned"),
    ("fit after the trial (results written, Tune ends)", "trainable returned", "Tuner.fit end"),
    ("between fit and ray.shutdown", "Tuner.fit end", "ray.shutdown begin"),
    ("ray.shutdown", "ray.shutdown begin", "ray.shutdown end"),
    ("after shutdown until exit", "ray.shutdown end", None),
]


def run(tmp: Path, quick: bool, repeat: int) -> Section:
    sweep = sweep_file(tmp)
    trial_ids_agree(sweep)
    launches, trains, trains_0, probes = [], [], [], []
    loads = [os.getloadavg()[0]]
    for r in range(repeat):
        launches.append(timed_command([MLSWEEP, "launch", str(sweep), "--storage", str(tmp / f"launch-{r}")]))
        trains.append(timed_command(train_command(), nice=RAY_WORKER_NICENESS))
        trains_0.append(timed_command(train_command(), nice=0))
        probes.append(timeline(tmp, sweep, tmp / f"probe-{r}"))
        loads.append(os.getloadavg()[0])
        log(f"fixed cost, repeat {r + 1}/{repeat}: launch {launches[-1]:.1f} s, train {trains[-1]:.1f} s "
            f"(niceness 0: {trains_0[-1]:.1f} s), instrumented launch {probes[-1][0]:.1f} s "
            f"(load {loads[-1]:.1f})")
    ratio = median([a / b for a, b in zip(launches, trains, strict=True)])
    section = Section(f"Fixed cost: a one-trial, one-epoch sweep, launch vs train, median of {repeat}",
                      ["phase of an instrumented launch", "s (median)", "all runs s"])
    for phase, begin, end in PHASES:
        spans = [(wall if end is None else seen[end]) - (0.0 if begin is None else seen[begin])
                 for wall, seen in probes]
        section.rows.append([phase, f"{median(spans):.2f}", ", ".join(f"{s:.2f}" for s in spans)])
    section.rows.append(["**instrumented launch, whole**", f"{median([w for w, _ in probes]):.2f}",
                         ", ".join(f"{w:.2f}" for w, _ in probes)])
    section.rows.append(["`mlsweep launch` (not instrumented)", f"{median(launches):.2f}",
                         ", ".join(f"{v:.2f}" for v in launches)])
    section.rows.append([f"`mlsweep train`, same trial, niceness {RAY_WORKER_NICENESS}",
                         f"{median(trains):.2f}", ", ".join(f"{v:.2f}" for v in trains)])
    section.rows.append(["`mlsweep train`, same trial, niceness 0", f"{median(trains_0):.2f}",
                         ", ".join(f"{v:.2f}" for v in trains_0)])
    section.targets.append(Target("launch / train (one trial, one epoch)", ratio, 1.5))
    ratio_0 = median([a / b for a, b in zip(launches, trains_0, strict=True)])
    section.notes.append(f"train runs at niceness {RAY_WORKER_NICENESS}, as Ray runs the trial's worker; "
                         f"launch / train at niceness 0: {ratio_0:.2f}")
    starts = [seen["worker process started"] for _, seen in probes]
    section.notes.append(f"the worker process that ran the trial started {median(starts):.2f} s "
                         "after the command (Ray prestarts one worker per CPU in ray.init)")
    section.notes.append(f"trial: {TRIAL}; the phases are consecutive spans between logged "
                         "timestamps, so they sum to the instrumented launch's wall time")
    section.notes.append(f"load average (1 min) over the run: {min(loads):.1f} to {max(loads):.1f}, "
                         f"median {median(loads):.1f}")
    return section


if __name__ == "__main__":
    if sys.argv[1:2] == ["probe"]:
        from bench import fixed_cost  # not __main__: the worker imports timed_trainable from it

        fixed_cost.probe(sys.argv[2:])
    else:
        raise SystemExit("usage: python -m bench.fixed_cost probe SWEEP [launch options]")
