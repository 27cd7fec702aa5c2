"""`mlsweep status`: where a run folder stands, from its manifest and trials table."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from mlsweep import results
from mlsweep.catalog import STATUSES
from mlsweep.errors import UserError


@dataclass
class RunStatus:
    planned: int
    counts: dict[str, int]  # by status, plus `pending` (planned, not recorded)
    failed: list[dict[str, Any]]
    slowest: list[dict[str, Any]]


def run_status(run_dir: str, slowest: int = 5) -> RunStatus:
    fs, base = results.filesystem(run_dir)
    manifest = results.join(base, "manifest.json")
    if not fs.get_file_info(manifest).is_file:
        raise UserError(f"{run_dir}: not a run folder (no manifest.json); give <storage>/<sweep name>")
    with fs.open_input_stream(manifest) as stream:
        planned = set(json.loads(stream.readall())["trials"])
    trials = results.read_results(run_dir, "trials")
    counts = dict.fromkeys(STATUSES, 0)
    failed: list[dict[str, Any]] = []
    slow: list[dict[str, Any]] = []
    if not trials.empty:
        counts.update(trials["status"].value_counts().to_dict())
        failed = trials[trials["status"] != "completed"].to_dict("records")
        slow = trials.nlargest(slowest, "wall_s").to_dict("records")
        planned |= set(trials["trial_id"])
    counts["pending"] = len(planned) - len(trials)
    return RunStatus(len(planned), counts, failed, slow)
