"""`mlsweep status`: where a run folder stands, from its manifest and trials table."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from mlsweep import results
from mlsweep.catalog import STATUSES
from mlsweep.runfolder import RunFolder


@dataclass
class RunStatus:
    planned: int
    counts: dict[str, int]  # by status, plus `pending` (planned, not recorded)
    failed: list[dict[str, Any]]  # the trials rows of failed and diverged trials
    slowest: list[dict[str, Any]]
    bad: list[results.BadFile] = field(default_factory=list)  # unreadable files, left out

    @property
    def all_failed(self) -> bool:
        """Trials were recorded, and none of them completed."""
        recorded = sum(n for status, n in self.counts.items() if status != "pending")
        return recorded > 0 and self.counts.get("completed", 0) == 0


def run_status(run_dir: str, slowest: int = 5) -> RunStatus:
    folder = RunFolder(run_dir).require()
    bad: list[results.BadFile] = []
    planned = set(folder.manifest(bad).get("trials", {}))
    trials = results.read_results(folder.uri, "trials", bad=bad)
    counts = dict.fromkeys(STATUSES, 0)
    failed: list[dict[str, Any]] = []
    slow: list[dict[str, Any]] = []
    if not trials.empty:
        counts.update(trials["status"].value_counts().to_dict())
        failed = trials[trials["status"] != "completed"].to_dict("records")
        slow = trials.nlargest(slowest, "wall_s").to_dict("records")
        planned |= set(trials["trial_id"])
    planned |= {b.trial_id for b in bad if b.table == "trials"}  # left out, so not yet recorded
    counts["pending"] = len(planned) - len(trials)
    return RunStatus(len(planned), counts, failed, slow, bad)
