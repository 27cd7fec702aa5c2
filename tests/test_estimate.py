"""Time estimates before a sweep runs: group speeds from history or calibration, scheduling."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import torch
from conftest import load_yaml

from mlsweep.estimate import (
    TUNE_SETUP_S,
    GroupSpeed,
    calibrate,
    estimate,
    group_of,
    history,
    pack_seconds,
    schedule,
)
from mlsweep.packs import make_packs
from mlsweep.results import write_table
from mlsweep.spec import expand, validate
from mlsweep.trainer.loop import TrialResult, run_trials


def test_schedule_is_longest_first_on_parallel_slots() -> None:
    assert schedule([5, 3, 3, 2, 1], 2) == 7  # [5, 2] and [3, 3, 1]
    assert schedule([4, 4, 4], 1) == 12 and schedule([4, 4, 4], 5) == 4
    durations = [7, 5, 4, 4, 3, 3, 2]
    # Never worse than 4/3 of the best split onto 2 slots (Graham's bound), found here by brute force.
    best = min(max(sum(d for d, side in zip(durations, sides, strict=True) if side),
                   sum(d for d, side in zip(durations, sides, strict=True) if not side))
               for sides in itertools.product([0, 1], repeat=len(durations)))
    assert best <= schedule(durations, 2) <= best * 4 / 3


def test_a_trial_costs_setup_epochs_and_each_evaluation() -> None:
    speed = GroupSpeed(setup_s=2.0, epoch_s=0.5, eval_s=0.25)
    assert speed.trial_s({"epochs": 20, "eval_every": 10}) == 2 + 10 + 2 * 0.25
    assert speed.trial_s({"epochs": 8, "eval_every": 10}) == 2 + 4 + 0.25  # the last epoch only
    assert speed.trial_s({"epochs": 5, "eval_every": 2}) == 2 + 2.5 + 3 * 0.25  # 2, 4 and 5


def test_a_pack_costs_set_up_once_and_each_members_training() -> None:
    speed = GroupSpeed(setup_s=2.0, epoch_s=0.5, eval_s=0.25, members=4)  # measured on packs of 4
    config = {"epochs": 20, "eval_every": 10}
    assert speed.pack_s([config] * 8) == 2 + (10 + 2 * 0.25) * 8 / 4
    assert speed.pack_s([config]) == 2 + (10 + 2 * 0.25) / 4


def test_each_slots_first_pack_of_a_group_pays_its_one_off_cost() -> None:
    sweep = validate({**load_yaml("quickstart.yaml"), "pack": 1})  # 4 groups of 18 trials, 20 epochs
    trials = expand(sweep)
    speeds = {group_of(t.config): GroupSpeed(0.0, 1.0, 0.0, once_s=100.0) for t in trials}
    for n_slots in (1, 2, 20):
        seconds = pack_seconds(make_packs(sweep, trials, n_slots), speeds, n_slots)
        # A reused worker pays it once per group: min(slots, 18) trials of each of the 4 groups.
        assert sorted(seconds) == [20.0] * (72 - 4 * min(n_slots, 18)) + [120.0] * (4 * min(n_slots, 18))
    assert schedule(pack_seconds(make_packs(sweep, trials, 2), speeds, 2), 2) == 36 * 20 + 4 * 100
    packed = validate(load_yaml("quickstart.yaml"))  # pack: auto: 4 packs of 18 on 2 slots
    seconds = pack_seconds(make_packs(packed, trials, 2), speeds, 2)
    assert seconds == [18 * 20 + 100.0] * 4


def test_history_reads_matching_groups_from_earlier_runs(tmp_path: Path) -> None:
    trials = expand(validate(load_yaml("smoke.yaml")))
    base = {key: trials[0].config[key] for key in ("dataset", "model", "loss", "batch_size")}
    rows = [{**base, "trial_id": f"t{i}", "status": "completed", "wall_s": wall, "epochs_run": 2}
            for i, wall in enumerate([2.0, 4.0, 100.0])]
    rows.append({**base, "trial_id": "f", "status": "failed", "wall_s": 1000.0, "epochs_run": 1})
    for row in rows:
        write_table(str(tmp_path / "earlier"), "trials", row["trial_id"], [row])
    speeds, used = history(str(tmp_path), {group_of(trials[0].config)})
    assert used == 3 and speeds[group_of(trials[0].config)].epoch_s == 2.0  # median of 1, 2, 50
    for i in range(3):  # a pack of 4 that took 40 s for 2 epochs: 5 s an epoch per member
        write_table(str(tmp_path / "packed"), "trials", f"p{i}",
                    [{**rows[0], "trial_id": f"p{i}", "wall_s": 40.0, "pack_size": 4}])
    speeds, used = history(str(tmp_path), {group_of(trials[0].config)})
    assert used == 6 and speeds[group_of(trials[0].config)].epoch_s == 5.0  # median of 1, 2, 5, 5, 5, 50
    for i in range(3):
        (tmp_path / "packed" / "results" / "trials" / f"p{i}.parquet").unlink()
    sweep = validate(load_yaml("smoke.yaml"))
    triplets = [t for t in trials if t.config["loss"] == trials[0].config["loss"]]
    got = estimate(sweep, triplets, str(tmp_path), cpus=2)
    assert got.source == "history" and got.trial_hours == pytest.approx(2 * 2 * 2.0 / 3600)
    assert estimate(sweep, trials, str(tmp_path), cpus=2).source == "none"  # contrastive unknown


def test_calibration_times_one_short_trial_per_group(tmp_path: Path) -> None:
    sweep = validate(load_yaml("smoke.yaml"))
    trials = expand(sweep)
    got = estimate(sweep, trials, str(tmp_path), run_calibration=True, cpus=2)
    assert got.source == "calibration" and "2 groups" in got.detail
    assert "Ray's start and stop measured" in got.detail
    assert 0 < got.trial_hours < 0.01 and got.wall_s > TUNE_SETUP_S


def test_a_launchs_fixed_cost_is_measured_on_a_ray_of_its_own_then_stopped() -> None:
    """In a fresh process (as `mlsweep plan --calibrate` runs): Ray started and stopped, and a
    worker importing the trainer, take longer than that import alone."""
    env = {**os.environ, "RAY_AUTH_MODE": "disabled"}
    code = ("import time, ray; from mlsweep.estimate import launch_fixed_s, TUNE_SETUP_S; "
            "s = launch_fixed_s(2) - TUNE_SETUP_S; t = time.perf_counter(); "
            "import mlsweep.trainer.loop; print(s, time.perf_counter() - t, ray.is_initialized())")
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    measured, import_alone, still_up = done.stdout.split()
    assert float(measured) > float(import_alone) and still_up == "False"


def test_calibration_charges_a_workers_one_off_cost_once_not_to_every_trial() -> None:
    """A fresh worker's first trial of a group pays imports and data files that later trials in
    the same (reused) worker find paid: here 2 s slept on each group's first run."""
    trials = expand(validate(load_yaml("smoke.yaml")))
    before = torch.get_num_threads()
    threads = 1 if before > 1 else 2
    runs: Counter[tuple[Any, ...]] = Counter()
    seen_threads = []

    def run(configs: list[dict[str, Any]]) -> list[TrialResult]:
        runs[group_of(configs[0])] += 1
        seen_threads.append(torch.get_num_threads())
        if runs[group_of(configs[0])] == 1:
            time.sleep(2.0)
        return run_trials(configs)

    sweep = validate(load_yaml("smoke.yaml"))
    speeds = calibrate(make_packs(sweep, trials, 2), threads, run)
    assert runs == {group_of(t.config): 2 for t in trials}  # two groups, each run twice
    assert seen_threads == [threads] * 4 and torch.get_num_threads() == before  # as a launch, restored
    for speed in speeds.values():
        # Within 1 s of the 2 s slept: a shared machine adds noise to both runs of a pack.
        assert speed.once_s > 1.0 > speed.setup_s and speed.epoch_s > 0 and speed.eval_s > 0
        assert speed.members == 2  # the group's first pack: both seeds
