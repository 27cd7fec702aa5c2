"""How long a sweep will take, before it runs: trial-hours and wall time on the slots it gets.

A pack's time (a launch trains packs of trials: mlsweep.packs) is predicted per *group* —
trials of one (data set, model, loss, batch size) run at about the same speed per epoch —
from one of two sources, and the estimate says which:

- **history**: completed trials of the same group in earlier run folders of the same storage
  (their seconds per epoch, with the driver's view of a trial: queueing, start-up, evaluation);
- **calibration** (`mlsweep plan --calibrate`): a short trial per group run twice, back to back
  in this process with the threads a launch gives a trial (four epochs, evaluated every epoch).
  The second run gives what every trial pays: an epoch and an evaluation at the pace of its
  later half, and the rest as set-up (building, data, a fresh trial's slower first epochs).
  What the first run took beyond the second (imports, data files, first-call warm-up) a
  launch pays once per worker and group, since Tune reuses a worker (`reuse_actors`).

A pack's members train side by side in one stacked model; its training time is taken as the
members' per-member time, measured at the pack sizes the source ran (history: each row's
`pack_size`; calibration: the group's first pack, up to CALIBRATION_MEMBERS members), times its
members. Wall time schedules the packs a launch here would train, longest first, on the
concurrent slots the sweep's resources allow on this machine (or `max_concurrent_trials`), the
first pack of each group on each slot paying the group's once-per-worker cost, plus a launch's
fixed cost outside its trials: with calibration, measured here and now (`launch_fixed_s`: an
embedded Ray started as launch starts it, a worker per slot importing the trainer, shutdown);
from history, the idle figure RAY_FIXED_S.
Trials side by side run slower than alone on a busy machine, so the figure is a guide
(bench/estimate.py measures it against real launches), not a promise.
"""

from __future__ import annotations

import heapq
import math
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
import pyarrow.fs as pafs

from mlsweep import results
from mlsweep.packs import Pack, local_slots, make_packs, slots
from mlsweep.spec import Sweep, Trial

GROUP = ("dataset", "model", "loss", "batch_size")
# A launch's seconds outside its trials on an idle 2-core machine (bench/RESULTS.md "Fixed cost"):
# the CLI's start, ray.init, Tune's set-up, the first worker importing torch and the trainer, shutdown.
RAY_FIXED_S = 7.5
TUNE_SETUP_S = 2.5  # the CLI's start and Tune's set-up, which launch_fixed_s does not run
CALIBRATION = {"epochs": 4, "eval_every": 1}
CALIBRATION_MEMBERS = 8  # members of the pack a calibration trains (the group's first pack, cut)


@dataclass(frozen=True)
class GroupSpeed:
    """Seconds a trial of one group spends: set-up, per epoch, per evaluation; and what a
    worker pays on top the first time it runs the group (`once_s`); measured on packs of
    `members` (epochs and evaluations then cost that many members' time)."""

    setup_s: float
    epoch_s: float
    eval_s: float
    once_s: float = 0.0
    members: int = 1

    def trial_s(self, config: Mapping[str, Any]) -> float:
        epochs = int(config["epochs"])
        evaluations = len({*range(int(config["eval_every"]), epochs + 1, int(config["eval_every"])), epochs})
        return self.setup_s + epochs * self.epoch_s + evaluations * self.eval_s

    def pack_s(self, configs: Sequence[Mapping[str, Any]]) -> float:
        """A pack of `configs` (one group, same epochs): set-up once, training per member."""
        training = self.trial_s(configs[0]) - self.setup_s
        return self.setup_s + training * len(configs) / self.members


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
            # The driver's wall time per epoch and member: set-up and evaluation spread over
            # the epochs, a pack's time over its members.
            members = rows["pack_size"].fillna(1) if "pack_size" in rows else 1
            per_member = (rows["wall_s"] / rows["epochs_run"] / members).median()
            speeds[key] = GroupSpeed(0.0, float(per_member), 0.0)
            used += len(rows)
    return speeds, used


def calibrate(packs: Sequence[Pack], threads: int = 1,
              run: Callable[[list[dict[str, Any]]], Any] | None = None) -> dict[tuple[Any, ...], GroupSpeed]:
    """The first pack of each group (cut to CALIBRATION_MEMBERS), trained short, twice, in this
    process on `threads` torch threads (what a launch gives a trial); `run` defaults to
    `run_trials`. The second, warm run gives the speeds (module docstring); the first one's
    extra time is the group's `once_s`."""
    import torch

    if run is None:
        from mlsweep.trainer.loop import run_trials as run
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        speeds = {}
        for pack in packs:
            key = group_of(pack.trials[0].config)
            if key not in speeds:
                configs = [{**c, **CALIBRATION} for c in pack.configs[:CALIBRATION_MEMBERS]]
                cold, _ = _timed(run, configs)
                warm, epochs = _timed(run, configs)
                steady = epochs.iloc[len(epochs) // 2:]
                epoch_s = float(steady["epoch_s"].mean())
                eval_s = float(steady.get("eval_s", pd.Series(0.0)).fillna(0).mean())
                setup_s = max(0.0, warm - len(epochs) * (epoch_s + eval_s))
                speeds[key] = GroupSpeed(setup_s, epoch_s, eval_s, once_s=max(0.0, cold - warm),
                                         members=len(configs))
        return speeds
    finally:
        torch.set_num_threads(before)


def _timed(run: Callable[[list[dict[str, Any]]], Any], configs: list[dict[str, Any]]
           ) -> tuple[float, pd.DataFrame]:
    """Wall seconds of one pack's run and its first member's epoch records (the members of a
    pack share every epoch's timing)."""
    start = time.perf_counter()
    result = run(configs)
    return time.perf_counter() - start, result[0].epochs


def launch_fixed_s(n_slots: int) -> float:
    """Seconds a launch here spends outside its trials, measured now: Ray started and stopped as
    launch does (mlsweep.rayconnect; none where this process is already connected), with one
    worker per slot importing the trainer, as the first trials' workers do, plus TUNE_SETUP_S.
    On a busy machine all of it slows down, which a constant would miss."""
    import ray

    from mlsweep.rayconnect import connect

    start = time.perf_counter()
    stop = connect(None, False)
    try:
        importer = ray.remote(num_cpus=0)(_import_trainer)
        ray.get([importer.remote() for _ in range(max(1, n_slots))])
    finally:
        if stop is not None:
            stop()
    return time.perf_counter() - start + TUNE_SETUP_S


def _import_trainer() -> None:
    import mlsweep.trainer.loop  # noqa: F401


def pack_seconds(packs: Sequence[Pack], speeds: Mapping[tuple[Any, ...], GroupSpeed],
                 n_slots: int) -> list[float]:
    """Seconds of each pack in a launch: the first `n_slots` packs of a group (one per slot's
    worker) also pay the group's `once_s`; the worker keeps it for later ones."""
    seen: Counter[tuple[Any, ...]] = Counter()
    out = []
    for pack in packs:
        key = group_of(pack.trials[0].config)
        out.append(speeds[key].pack_s(pack.configs) + (speeds[key].once_s if seen[key] < n_slots else 0.0))
        seen[key] += 1
    return out


def schedule(durations: Sequence[float], n_slots: int) -> float:
    """Wall time of running `durations` longest first on `n_slots` parallel slots."""
    finish = [0.0] * max(1, n_slots)
    for duration in sorted(durations, reverse=True):
        heapq.heappush(finish, heapq.heappop(finish) + duration)
    return max(finish)


def estimate(sweep: Sweep, pending: Sequence[Trial], storage: str, run_calibration: bool = False,
             cpus: int | None = None) -> Estimate:
    """Slot-hours (`trial_hours`) and wall time of `pending` in the packs a launch here trains."""
    n_slots = local_slots(sweep) if cpus is None else slots(sweep, float(cpus))
    groups = {group_of(t.config) for t in pending}
    if not pending:
        return Estimate("none", "nothing to run", n_slots, 0.0, 0.0)
    packs = make_packs(sweep, pending, n_slots)
    fixed = RAY_FIXED_S
    if run_calibration:
        speeds, source = calibrate(packs, max(1, int(sweep.resources.cpu))), "calibration"
        fixed = launch_fixed_s(min(n_slots, len(packs)))
        detail = (f"calibration: a short pack of each of {len(groups)} groups ({', '.join(GROUP)}), "
                  f"twice; Ray's start and stop measured, {fixed:.0f} s")
    else:
        speeds, used = history(storage, groups)
        source = "history"
        detail = f"history: {used} completed trials of matching groups in {storage}"
    missing = sorted(groups - set(speeds), key=str)
    if missing:
        return Estimate("none", f"no earlier trials in {storage} match {len(missing)} of {len(groups)} "
                        "groups; --calibrate times one short pack per group", n_slots,
                        unknown_groups=missing)
    seconds = pack_seconds(packs, speeds, n_slots)
    return Estimate(source, detail, n_slots, sum(seconds) / 3600, schedule(seconds, n_slots) + fixed)
