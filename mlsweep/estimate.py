"""How long a sweep will take, before it runs: trial-hours and wall time on the slots it gets.

A trial's time is predicted per *group* — trials of one (data set, model, loss, batch size)
run at about the same speed per epoch — from one of two sources, and the estimate says which:

- **history**: completed trials of the same group in earlier run folders of the same storage
  (their seconds per epoch, with the driver's view of a trial: queueing, start-up, evaluation);
- **calibration** (`mlsweep plan --calibrate`): one short trial per group in this process
  (two epochs, evaluated every epoch: set-up, an epoch and an evaluation are timed).

Wall time schedules the pending trials, longest first, on the concurrent slots the sweep's
resources allow on this machine (or `max_concurrent_trials`), plus Ray's fixed start and
stop cost. Trials side by side run slower than alone on a busy machine, so the figure is a
guide (bench/estimate.py measures it against real launches), not a promise.
"""

from __future__ import annotations

import heapq
import math
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
import pyarrow.fs as pafs

from mlsweep import results
from mlsweep.spec import Sweep, Trial

GROUP = ("dataset", "model", "loss", "batch_size")
RAY_FIXED_S = 8.0  # ray.init, the first worker importing torch, shutdown (bench/RESULTS.md)
CALIBRATION = {"epochs": 2, "eval_every": 1}


@dataclass(frozen=True)
class GroupSpeed:
    """Seconds a trial of one group spends: once (set-up), per epoch, per evaluation."""

    setup_s: float
    epoch_s: float
    eval_s: float

    def trial_s(self, config: Mapping[str, Any]) -> float:
        epochs = int(config["epochs"])
        evaluations = len({*range(int(config["eval_every"]), epochs + 1, int(config["eval_every"])), epochs})
        return self.setup_s + epochs * self.epoch_s + evaluations * self.eval_s


@dataclass
class Estimate:
    source: str  # "history" | "calibration" | "none"
    detail: str  # what the source was, in words
    slots: int
    trial_hours: float = math.nan
    wall_s: float = math.nan
    unknown_groups: list[tuple[Any, ...]] = field(default_factory=list)


def group_of(config: Mapping[str, Any]) -> tuple[Any, ...]:
    return tuple(config.get(key) for key in GROUP)


def slots(sweep: Sweep, cpus: int | None = None) -> int:
    """Trials that run at once here: CPU cores over cores per trial, capped by the sweep."""
    cpus = cpus or os.cpu_count() or 1
    fit = max(1, int(cpus // sweep.resources.cpu))
    return min(fit, sweep.max_concurrent_trials or fit)


def history(storage: str, groups: set[tuple[Any, ...]]) -> tuple[dict[tuple[Any, ...], GroupSpeed], int]:
    """Speeds of the groups found among completed trials of every run folder in `storage`,
    and how many trials they come from."""
    fs, base = results.filesystem(storage)
    if fs.get_file_info(base).type != pafs.FileType.Directory:
        return {}, 0
    frames = []
    for entry in fs.get_file_info(pafs.FileSelector(base)):
        if entry.type == pafs.FileType.Directory and not entry.base_name.startswith("."):
            trials = results.read_results(results.join(storage, entry.base_name), "trials", bad=[])
            if not trials.empty and {"wall_s", "epochs_run", *GROUP} <= set(trials.columns):
                frames.append(trials[trials["status"] == "completed"])
    if not frames:
        return {}, 0
    done = pd.concat(frames, ignore_index=True)
    done = done[done["epochs_run"] > 0]
    speeds, used = {}, 0
    for key, rows in done.groupby(list(GROUP), dropna=False):
        key = tuple(key)
        if key in groups:
            # The driver's wall time per epoch: set-up and evaluation spread over the epochs.
            speeds[key] = GroupSpeed(0.0, float((rows["wall_s"] / rows["epochs_run"]).median()), 0.0)
            used += len(rows)
    return speeds, used


def calibrate(trials: Sequence[Trial],
              run: Callable[[dict[str, Any]], Any] | None = None) -> dict[tuple[Any, ...], GroupSpeed]:
    """One short trial per group, timed in this process (`run` defaults to `run_trial`)."""
    if run is None:
        from mlsweep.trainer.loop import run_trial as run
    speeds = {}
    for trial in trials:
        key = group_of(trial.config)
        if key in speeds:
            continue
        t0 = time.perf_counter()
        result = run({**trial.config, **CALIBRATION})
        wall = time.perf_counter() - t0
        last = result.epochs.iloc[-1]
        epoch_s, eval_s = float(last["epoch_s"]), float(last.get("eval_s", 0.0) or 0.0)
        setup = max(0.0, wall - float(result.epochs["epoch_s"].sum())
                    - float(result.epochs.get("eval_s", pd.Series(dtype=float)).fillna(0).sum()))
        speeds[key] = GroupSpeed(setup, epoch_s, eval_s)
    return speeds


def schedule(durations: Sequence[float], n_slots: int) -> float:
    """Wall time of running `durations` longest first on `n_slots` parallel slots."""
    finish = [0.0] * max(1, n_slots)
    for duration in sorted(durations, reverse=True):
        heapq.heappush(finish, heapq.heappop(finish) + duration)
    return max(finish)


def estimate(sweep: Sweep, pending: Sequence[Trial], storage: str, run_calibration: bool = False,
             cpus: int | None = None) -> Estimate:
    """Trial-hours and wall time of `pending` (what a launch would run)."""
    n_slots = slots(sweep, cpus)
    groups = {group_of(t.config) for t in pending}
    if not pending:
        return Estimate("none", "nothing to run", n_slots, 0.0, 0.0)
    if run_calibration:
        speeds, source = calibrate(pending), "calibration"
        detail = f"calibration: one short trial of each of {len(groups)} groups ({', '.join(GROUP)})"
    else:
        speeds, used = history(storage, groups)
        source = "history"
        detail = f"history: {used} completed trials of matching groups in {storage}"
    missing = sorted(groups - set(speeds), key=str)
    if missing:
        return Estimate("none", f"no earlier trials in {storage} match {len(missing)} of {len(groups)} "
                        "groups; --calibrate times one short trial per group", n_slots,
                        unknown_groups=missing)
    durations = [speeds[group_of(t.config)].trial_s(t.config) for t in pending]
    wall = schedule(durations, n_slots) + RAY_FIXED_S
    return Estimate(source, detail, n_slots, sum(durations) / 3600, wall)
