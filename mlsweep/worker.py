"""The Tune trial's side of a launch: train one pack of trials and report its members' epochs.

A Tune trial is a pack (mlsweep.packs): the driver hands it the pack's id, the worker looks up
its members' configs, trains them as one stacked model (`run_trials`) and reports each
member's epochs to the driver, which writes every member as a trial of its own. Workers only
train and report; they write no results.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from typing import Any

from mlsweep.catalog import EPOCH_METRICS, resolve

REPORT_EVERY_S = 1.0  # a trial reports its epochs to the driver at most this often


def pack_configs(params: Mapping[str, Any], packs: Mapping[str, list[dict[str, Any]]],
                 overrides: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The resolved configs of a Tune trial's members: the pack looked up by id (grid), or the
    one trial resolved from the sampled parameters (optuna)."""
    if "pack_id" in params:
        return packs[params["pack_id"]]
    return [resolve(dict(params), overrides)]


class EpochBatcher:
    """Hands a pack's epochs to Tune in batches: each `tune.report` of a function trainable
    waits for a round trip through the driver, which on fast trials cost more than the epoch.
    Reports when REPORT_EVERY_S has passed since the last one, once every member has reached
    its last epoch (or diverged), and on `flush` (a pack that raises still delivers its
    epochs). A report holds, per member, its new epoch records and step rows (`_members`);
    its top-level metrics are every new record merged in order, so each is its latest value
    (evaluation metrics from the latest evaluated epoch), NaN where not yet measured: what
    ASHA and Optuna read, on their packs of one."""

    def __init__(self, report: Callable[[dict[str, Any]], None], meta: dict[str, Any],
                 members: int, last_epoch: int) -> None:
        self.report, self.meta, self.last_epoch = report, meta, last_epoch
        self.records: list[list[dict[str, Any]]] = [[] for _ in range(members)]
        self.steps: list[list[dict[str, Any]]] = [[] for _ in range(members)]
        self.training = set(range(members))  # members not yet at their last epoch
        self.sent_at = time.monotonic()

    def __call__(self, member: int, record: dict[str, Any], steps: list[dict[str, Any]]) -> None:
        self.records[member].append(record)
        self.steps[member] += steps
        if record["epoch"] >= self.last_epoch or not math.isfinite(record["train_loss"]):
            self.training.discard(member)
        if not self.training or time.monotonic() - self.sent_at >= REPORT_EVERY_S:
            self.flush()

    def flush(self) -> None:
        if not any(self.records):
            return
        # Emptied before reporting: a report can end the thread (Tune stopping the trial).
        records, steps = self.records, self.steps
        self.records, self.steps = [[] for _ in records], [[] for _ in steps]
        self.sent_at = time.monotonic()
        metrics = dict.fromkeys(EPOCH_METRICS, math.nan)
        for record in (r for member in records for r in member):
            metrics.update(record)
        members = [{"records": r, "steps": _columns(s)} for r, s in zip(records, steps, strict=True)]
        self.report({**metrics, "_members": members, "_meta": self.meta})


def _columns(rows: list[dict[str, Any]]) -> dict[str, list[Any]]:
    """Step rows as columns: a smaller message than one dict per step."""
    return {key: [row.get(key) for row in rows] for key in (rows[0] if rows else {})}


def rows_of(columns: Mapping[str, list[Any]]) -> list[dict[str, Any]]:
    """The step rows back from `_columns`."""
    return [dict(zip(columns, row, strict=True)) for row in zip(*columns.values(), strict=True)]


def trainable(params: dict[str, Any], packs: dict[str, list[dict[str, Any]]],
              overrides: dict[str, Any], checkpoints: str | None = None) -> None:
    """Runs in a Ray worker: train the pack, and report its members' epochs to the driver.
    Checkpoints go to `checkpoints` (`<run>/checkpoints`), where a retry or a relaunch finds
    them; a resumed pack reports every epoch of its checkpoint again, so each attempt's
    reports hold all its epochs, and `resumed_from_epoch` in its meta."""
    import socket

    import ray
    import torch
    from ray import tune

    from mlsweep.trainer.loop import pick_device, run_trials

    configs = pack_configs(params, packs, overrides)
    cpus = ray.get_runtime_context().get_assigned_resources().get("CPU", 1)
    torch.set_num_threads(max(1, int(cpus)))
    meta = {"device": str(pick_device(configs[0]["torch_device"])), "node": socket.gethostname()}
    batcher = EpochBatcher(tune.report, meta, len(configs), configs[0]["epochs"])
    try:
        run_trials(configs, on_epoch=batcher, checkpoints=checkpoints,
                   on_resume=lambda _, epoch: meta.update(resumed_from_epoch=epoch))
    finally:
        batcher.flush()
