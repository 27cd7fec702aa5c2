"""A sweep's pending trials grouped into packs: each pack is one Tune trial, trained as one
stacked model (mlsweep.trainer.loop.run_trials), its members recorded as trials of their own.

Torch-free, for the driver and `mlsweep plan`. Which trials may share a pack is the catalog's
rule (`catalog.pack_key`); how many share one is the sweep's `pack`: a whole number caps the
members of a pack (`pack: 1` turns packing off), and `auto` makes packs as large as it can
while keeping every slot busy (at least as many packs as trials run at once) and no pack above
AUTO_MAX_MEMBERS. Optuna sweeps and ASHA run packs of one: a searcher proposes, and a scheduler
stops, one trial at a time.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from mlsweep.catalog import pack_id, pack_key
from mlsweep.spec import Sweep, Trial

# The most members `auto` puts in one pack: bench/packing.py measured a member-step of 32
# members at a ninth of a solo step on the CPU, with little left to gain above; a stacked
# model of 32 small networks and their batches stays well within a worker's memory.
AUTO_MAX_MEMBERS = 32


@dataclass(frozen=True)
class Pack:
    pack_id: str
    trials: tuple[Trial, ...]

    @property
    def configs(self) -> list[dict]:
        return [t.config for t in self.trials]


def slots(sweep: Sweep, cpus: float, gpus: float = 0.0) -> int:
    """Trials (packs) that run at once on `cpus` and `gpus`: the scarcer resource over what
    one trial asks for, capped by `max_concurrent_trials`."""
    res = sweep.resources
    fit = int(cpus // res.cpu)
    if res.gpu > 0:
        fit = min(fit, int(gpus // res.gpu))
    fit = max(1, fit)
    return min(fit, sweep.max_concurrent_trials or fit)


def local_slots(sweep: Sweep) -> int:
    """`slots` on this machine: its cores, and its NVIDIA GPUs counted by their device files
    (no torch import for `mlsweep plan`)."""
    gpus = len(list(Path("/dev").glob("nvidia[0-9]*")))
    return slots(sweep, float(os.cpu_count() or 1), float(gpus))


def packs_of_one(sweep: Sweep) -> bool:
    """Whether the sweep trains every trial alone, whatever its `pack`."""
    return sweep.pack == 1 or sweep.method != "grid" or sweep.scheduler != "none"


def make_packs(sweep: Sweep, trials: Sequence[Trial], slots: int,
               keep: Sequence[Sequence[str]] = ()) -> list[Pack]:
    """`trials` (in order) grouped into packs: trials that cannot share a pack, or a sweep that
    does not pack, give packs of one. Within a group of packable trials the packs are of
    near-equal sizes (differing by at most one) and keep the trials' order. `keep`: member ids
    of packs to form as they were (packs stopped with a checkpoint, which resume only with the
    same members), where every member is among `trials`; they come first."""
    by_id = {t.trial_id: t for t in trials}
    kept = [tuple(by_id[tid] for tid in ids) for ids in keep if ids and all(tid in by_id for tid in ids)]
    taken = {t.trial_id for members in kept for t in members}
    packs = [Pack(pack_id([t.trial_id for t in members]), members) for members in kept]
    groups: dict[object, list[Trial]] = {}
    for i, trial in enumerate(t for t in trials if t.trial_id not in taken):
        key = None if packs_of_one(sweep) else pack_key(trial.config)
        groups.setdefault(key if key is not None else ("alone", i), []).append(trial)
    sizes = [len(g) for g in groups.values()]
    limit = sweep.pack if isinstance(sweep.pack, int) else _auto_limit(sizes, max(1, slots - len(kept)))
    for group in groups.values():
        count = math.ceil(len(group) / limit)
        size, extra = divmod(len(group), count)
        start = 0
        for n in range(count):
            members = tuple(group[start:start + size + (n < extra)])
            start += len(members)
            packs.append(Pack(pack_id([t.trial_id for t in members]), members))
    return packs


def _auto_limit(group_sizes: Sequence[int], slots: int) -> int:
    """The largest cap on members (up to AUTO_MAX_MEMBERS) that still gives at least `slots`
    packs, or 1 when even packs of one are fewer."""
    for limit in range(min(AUTO_MAX_MEMBERS, max(group_sizes, default=1)), 1, -1):
        if sum(math.ceil(n / limit) for n in group_sizes) >= slots:
            return limit
    return 1
