"""Checkpoints and exact resume (issue 18): a pack that stops and starts again from its latest
checkpoint gives exactly what it gives without the break: every epoch column (timing aside),
every step row and the summary, bitwise on the CPU (the same kernels run in both).

In-process, with real files (and once a real moto S3 server): packs of one and of several
members, losses with their own parameters (arcface's class weights) and optimiser state
(Adam's moments), a member that left its pack; checkpoints cut short; the folder of a finished
pack. Through Tune on the session's Ray: a retry resumes. Elsewhere, with the fixtures there:
a killed driver's relaunch resumes (tests/test_faults.py, `killed_launch`), and a lost node's
trial resumes on the surviving node (tests/test_cluster.py).
"""

from __future__ import annotations

import uuid
import warnings
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml
from conftest import load_yaml, numbers

from mlsweep import read_results, run_trials
from mlsweep.catalog import pack_id, pack_key, resolve, trial_id
from mlsweep.orchestrator import launch
from mlsweep.results import write_trial
from mlsweep.runfolder import RunFolder
from mlsweep.spec import expand, validate
from mlsweep.trainer.checkpoint import BadCheckpointWarning
from mlsweep.trainer.loop import InjectedFailure, TrialResult

# 10 classes x 20 points of 12-d + outliers: 5 steps of 48 per epoch; evaluated at 2, 4, 5.
TINY: dict[str, Any] = {"dataset": "synthetic", "dataset_params": {"per_class": 20, "dim": 12},
                        "batch_size": 48, "epochs": 5, "eval_every": 2, "torch_device": "cpu",
                        "hidden_sizes": [16], "embedding_dim": 8, "checkpoint_every": 1}
TIMING = ["epoch_s", "samples_per_s", "eval_s"]
WHEN = ["started_at", "finished_at", "wall_s", "resumed_from_epoch"]  # of the run, not its numbers


class Stop(Exception):
    """Raised by a callback: the run ends there, as a killed worker's would."""


def stop_at(epoch: int, seen: list[tuple[int, int]] | None = None) -> Any:
    """An on_epoch callback that raises once member 0's record of `epoch` arrives (after the
    checkpoint of `epoch - 1`, before that of `epoch`)."""
    def on_epoch(member: int, record: dict[str, Any], steps: list[dict[str, Any]]) -> None:
        if seen is not None:
            seen.append((member, record["epoch"]))
        if member == 0 and record["epoch"] == epoch:
            raise Stop

    return on_epoch


def same_numbers(resumed: TrialResult, alone: TrialResult) -> None:
    """Exactly equal: epochs (timing aside), steps and summary (when and how long aside)."""
    pd.testing.assert_frame_equal(resumed.epochs.drop(columns=TIMING, errors="ignore"),
                                  alone.epochs.drop(columns=TIMING, errors="ignore"), check_exact=True)
    pd.testing.assert_frame_equal(resumed.steps, alone.steps, check_exact=True)
    volatile = [*WHEN, *(f"final_{c}" for c in TIMING)]
    summaries = [pd.DataFrame([{k: v for k, v in r.summary.items() if k not in volatile}])
                 for r in (resumed, alone)]
    pd.testing.assert_frame_equal(*summaries, check_exact=True)


def checkpoint_files(root: Path) -> dict[str, list[str]]:
    """Each pack's folder under `root` and the checkpoint files in it (members.json aside)."""
    if not root.exists():
        return {}
    return {d.name: sorted(f.name for f in d.iterdir() if f.name != "members.json")
            for d in sorted(root.iterdir())}


# A pack of one and a pack of three (per-member seed and margin, or loss parameters: arcface's
# class weights are loss parameters), interrupted by fail_at_epoch (the pack raises) or by a
# callback raising (as a killed worker ends); the contrastive pack loses a member at epoch 1.
PACKS = {
    "triplet-1": [{"loss": "triplet", "seed": 10, "margin": 0.2}],
    "arcface-1": [{"loss": "arcface", "seed": 3, "loss_params": {"scale": 16.0, "margin_deg": 10.0}}],
    "triplet-3": [{"loss": "triplet", "seed": 10 + i, "margin": m} for i, m in enumerate([0.2, 1.0, 0.5])],
    "arcface-3": [{"loss": "arcface", "seed": i, "loss_params": p} for i, p in
                  enumerate([{"scale": 64.0}, {"scale": 16.0, "margin_deg": 10.0}, {"scale": 32.0}])],
    "contrastive-3-one-diverges": [{"loss": "contrastive", "seed": s, "margin": m}
                                   for s, m in [(0, 1.0), (1, 1e30), (2, 0.5)]],
}


@pytest.mark.parametrize(("pack", "interrupt"), [
    ("triplet-1", "fail_at_epoch"), ("arcface-1", "callback"), ("triplet-3", "callback"),
    ("arcface-3", "fail_at_epoch"), ("contrastive-3-one-diverges", "callback")])
def test_a_resumed_pack_equals_an_uninterrupted_one(pack: str, interrupt: str, tmp_path: Path) -> None:
    configs = [{**TINY, **member} for member in PACKS[pack]]
    assert len({pack_key(resolve(c)) for c in configs}) == 1 and pack_key(resolve(configs[0]))
    alone = run_trials(configs)
    root = tmp_path / "checkpoints"
    if interrupt == "fail_at_epoch":  # no number depends on it (only the trial id)
        configs = [{**c, "fail_at_epoch": 4} for c in configs]
        with pytest.raises(InjectedFailure):
            run_trials(configs, checkpoints=str(root))
    else:
        with pytest.raises(Stop):
            run_trials(configs, on_epoch=stop_at(4), checkpoints=str(root))
    folder = pack_id([trial_id(resolve(c)) for c in configs])
    assert checkpoint_files(root) == {folder: ["epoch-000002.pt", "epoch-000003.pt"]}  # the latest two
    # Beside them, the members, for a relaunch's driver (which reads no torch files).
    assert RunFolder(str(tmp_path)).checkpointed_packs() == {folder: [trial_id(resolve(c)) for c in configs]}
    seen: list[tuple[int, int]] = []
    resumed_after: list[tuple[int, int]] = []
    resumed = run_trials(configs, on_epoch=lambda i, record, steps: seen.append((i, record["epoch"])),
                         checkpoints=str(root), on_resume=lambda i, epoch: resumed_after.append((i, epoch)))
    for again, first in zip(resumed, alone, strict=True):
        same_numbers(again, first)
        assert again.summary["resumed_from_epoch"] == 3
    assert resumed_after == [(i, 3) for i in range(len(configs))]
    # The callback heard every epoch once, the checkpoint's again first: a fresh listener misses none.
    assert sorted(seen) == sorted((i, e) for i, r in enumerate(alone) for e in r.epochs["epoch"])
    assert checkpoint_files(root) == {}  # a finished pack's checkpoints are deleted
    if pack == "contrastive-3-one-diverges":
        assert [r.summary["status"] for r in resumed] == ["completed", "diverged", "completed"]


def test_a_pack_that_never_breaks_writes_checkpoints_and_leaves_none(tmp_path: Path) -> None:
    root = tmp_path / "checkpoints"
    during: list[dict[str, list[str]]] = []
    run_trials([{**TINY, "seed": 1}], checkpoints=str(root),
               on_epoch=lambda i, record, steps: during.append(checkpoint_files(root)))
    name = trial_id(resolve({**TINY, "seed": 1}))  # a pack of one is named by its trial
    assert during[1] == {name: ["epoch-000001.pt"]}
    assert during[4] == {name: ["epoch-000003.pt", "epoch-000004.pt"]}  # none after the last epoch
    assert not root.exists() or checkpoint_files(root) == {}


def test_by_default_a_trial_of_seconds_writes_none_and_checkpoint_minutes_writes_by_time(
        tmp_path: Path) -> None:
    by_default = {**TINY, "checkpoint_every": 0}  # checkpoint_minutes: 5
    with pytest.raises(Stop):
        run_trials([by_default], on_epoch=stop_at(4), checkpoints=str(tmp_path / "a"))
    assert checkpoint_files(tmp_path / "a") == {}
    by_time = {**by_default, "checkpoint_minutes": 1e-6}
    with pytest.raises(Stop):
        run_trials([by_time], on_epoch=stop_at(4), checkpoints=str(tmp_path / "b"))
    assert list(checkpoint_files(tmp_path / "b").values()) == [["epoch-000002.pt", "epoch-000003.pt"]]
    resumed = run_trials([by_time], checkpoints=str(tmp_path / "b"))[0]
    assert resumed.summary["resumed_from_epoch"] == 3
    same_numbers(resumed, run_trials([by_time])[0])


# --------------------------------------------------------------------------- bad checkpoints


@pytest.fixture(params=["local", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, Any]:
    """A checkpoint root (a folder, or a bucket of the session's moto server) and how to cut
    one of its files short (to 100 bytes, as an interrupted copy leaves it)."""
    if request.param == "local":
        def cut(key: str) -> None:
            with (tmp_path / key).open("r+b") as f:
                f.truncate(100)

        return str(tmp_path), cut
    port, client = request.getfixturevalue("s3")
    bucket = f"checkpoints-{uuid.uuid4().hex[:8]}"
    client.create_bucket(Bucket=bucket)

    def cut_object(key: str) -> None:
        body = client.get_object(Bucket=bucket, Key=key)["Body"].read()
        client.put_object(Bucket=bucket, Key=key, Body=body[:100])

    return f"s3://{bucket}?endpoint_override=127.0.0.1:{port}&scheme=http", cut_object


def test_a_cut_short_checkpoint_falls_back_to_the_one_before_then_to_scratch(store) -> None:
    root, cut = store
    config = {**TINY, "loss": "triplet", "seed": 2}
    alone = run_trials([config])[0]
    folder = pack_id([trial_id(resolve(config))])
    with pytest.raises(Stop):
        run_trials([config], on_epoch=stop_at(4), checkpoints=root)
    cut(f"{folder}/epoch-000003.pt")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        resumed = run_trials([config], checkpoints=root)[0]
    shown = [str(w.message) for w in caught if issubclass(w.category, BadCheckpointWarning)]
    assert len(shown) == 1 and f"{folder}/epoch-000003.pt: checkpoint skipped" in shown[0], shown
    assert resumed.summary["resumed_from_epoch"] == 2
    same_numbers(resumed, alone)

    with pytest.raises(Stop):
        run_trials([config], on_epoch=stop_at(4), checkpoints=root)
    for epoch in (3, 2):
        cut(f"{folder}/epoch-00000{epoch}.pt")
    with pytest.warns(BadCheckpointWarning) as caught:
        again = run_trials([config], checkpoints=root)[0]
    assert [str(w.message).split(": ")[0].rsplit("/", 2)[1:] for w in caught] == [
        [folder, "epoch-000003.pt"], [folder, "epoch-000002.pt"]]  # newest first, both named
    assert "resumed_from_epoch" not in again.summary  # from scratch
    same_numbers(again, alone)


def test_a_checkpoint_of_other_trials_is_skipped(tmp_path: Path) -> None:
    """A pack's folder holding another pack's file (copied by hand) is not trusted."""
    config, other = {**TINY, "seed": 5}, {**TINY, "seed": 6}
    with pytest.raises(Stop):
        run_trials([other], on_epoch=stop_at(3), checkpoints=str(tmp_path))
    mine = tmp_path / pack_id([trial_id(resolve(config))])
    mine.mkdir()
    (tmp_path / pack_id([trial_id(resolve(other))]) / "epoch-000002.pt").rename(mine / "epoch-000002.pt")
    with pytest.warns(BadCheckpointWarning, match="written for other trials"):
        result = run_trials([config], checkpoints=str(tmp_path))[0]
    assert "resumed_from_epoch" not in result.summary
    same_numbers(result, run_trials([config])[0])


# --------------------------------------------------------------------------- through Tune


@pytest.mark.usefixtures("ray_session")
def test_a_tune_retry_resumes_from_the_checkpoint_and_is_recorded_once(tmp_path: Path) -> None:
    """Two trials with the same numbers, one failing at epoch 4 (fail_at_epoch sets the trial
    id, not the numbers); max_failures: 1, so Tune retries it, and the retry resumes."""
    data = load_yaml("smoke.yaml")
    data["parameters"].update(loss={"value": "triplet"}, seed={"value": 0}, epochs={"value": 6},
                              eval_every={"value": 2}, checkpoint_every={"value": 1},
                              fail_at_epoch={"values": [0, 4]})
    data["max_failures"] = 1
    summary = launch(validate(data), yaml.safe_dump(data), storage=str(tmp_path))
    assert summary.by_status == {"completed": 2}
    run_dir = tmp_path / "smoke"
    trials = read_results(str(run_dir), "trials").set_index("fail_at_epoch")
    assert len(trials) == 2 and trials["trial_id"].is_unique
    assert trials.loc[4, "attempts"] == 2 and trials.loc[4, "resumed_from_epoch"] == 3
    assert trials.loc[0, "attempts"] == 1 and pd.isna(trials.loc[0, "resumed_from_epoch"])
    assert trials.loc[4, "epochs_run"] == 6
    pd.testing.assert_frame_equal(*(numbers(trials.loc[[k]], "trials") for k in (4, 0)), check_exact=True)
    for table in ("epochs", "steps"):
        rows = read_results(str(run_dir), table)
        retried, straight = (numbers(rows[rows["fail_at_epoch"] == k], table) for k in (4, 0))
        assert retried["epoch"].tolist() == straight["epoch"].tolist()  # each epoch once
        pd.testing.assert_frame_equal(retried, straight, check_exact=True)
    assert not any((run_dir / "checkpoints").glob("*/*"))  # deleted once finished


def test_a_relaunch_trains_a_checkpointed_pack_with_the_same_members(tmp_path: Path) -> None:
    """Left alone, `pack: auto` would pack the missing trials anew (here: one pack of four); a
    pack stopped with a checkpoint is kept as it was and resumes, the rest packed around it."""
    data = load_yaml("smoke.yaml")
    data["parameters"].update(loss={"value": "triplet"}, seed={"values": [0, 1, 2, 3]},
                              epochs={"value": 5}, checkpoint_every={"value": 1})
    data["max_concurrent_trials"] = 1
    sweep = validate(data)
    trials = expand(sweep)
    stopped = [t.config for t in trials[1:3]]  # seeds 1 and 2 as a pack, stopped at epoch 4
    with pytest.raises(Stop):
        run_trials(stopped, on_epoch=stop_at(4), checkpoints=str(tmp_path / "smoke" / "checkpoints"))
    stale = [trials[0].config, trials[3].config]  # a pack whose member is recorded before relaunch
    with pytest.raises(Stop):
        run_trials(stale, on_epoch=stop_at(3), checkpoints=str(tmp_path / "smoke" / "checkpoints"))
    folder = tmp_path / "smoke"
    results_of_seed_0 = run_trials([trials[0].config])[0]
    write_trial(str(folder), trials[0].trial_id, "smoke", trials[0].config,
                {**results_of_seed_0.summary, "attempts": 1}, results_of_seed_0.epochs.to_dict("records"),
                results_of_seed_0.steps.to_dict("records"))
    summary = launch(sweep, yaml.safe_dump(data), storage=str(tmp_path))
    assert summary.launched == 3 and summary.by_status == {"completed": 3}
    rows = read_results(str(folder), "trials").set_index("seed")
    kept = pack_id([t.trial_id for t in trials[1:3]])
    assert (rows.loc[[1, 2], "pack_id"] == kept).all() and (rows.loc[[1, 2], "resumed_from_epoch"] == 3).all()
    assert rows.loc[3, "pack_size"] == 1 and pd.isna(rows.loc[3, "resumed_from_epoch"])
    alone = run_trials(stopped)
    epochs = read_results(str(folder), "epochs")
    for seed, result in zip((1, 2), alone, strict=True):
        mine = numbers(epochs[epochs["seed"] == seed].sort_values("epoch"), "epochs")
        theirs = numbers(result.epochs, "epochs")[mine.columns]
        pd.testing.assert_frame_equal(mine.reset_index(drop=True), theirs.reset_index(drop=True),
                                      check_exact=True, check_dtype=False)
    assert checkpoint_files(folder / "checkpoints") == {}  # the stale pack's too
