"""The report kept fresh while a sweep runs: during `mlsweep launch` (a thread of the driver)
and for `mlsweep report --watch` (a sweep running elsewhere, read from its storage).

A partial page shows what needs no statistics over the whole design: trials by status, the
learning curves of the trials completed so far and the failures, under a banner saying it is
partial. It is rebuilt at most every REFRESH_S, and only when a trial was recorded since; its
reads are incremental (`read_results` merges only the files new since its cache). When the sweep
ends, the full report replaces it, so a report.html that a launch left is never partial.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from typing import Any

from mlsweep.report import Partial, ReportError, ReportResult, build_report
from mlsweep.results import read_results
from mlsweep.runfolder import RunFolder

# Seconds between refreshes at most; MLSWEEP_LIVE_REPORT_S sets it (tests, a very long sweep).
REFRESH_S = float(os.environ.get("MLSWEEP_LIVE_REPORT_S", "30"))


class LiveReport:
    """Rewrites `<run_dir>/report.html` (or `out`) as partial when `recorded()` has grown since
    the last page; `running()` is how many trials run now, where known (the driver knows it)."""

    def __init__(self, run_dir: str, recorded: Callable[[], int],
                 running: Callable[[], int | None] = lambda: None, out: str | None = None,
                 every_s: float | None = None) -> None:
        self.run_dir, self.out = run_dir, out
        self.recorded, self.running = recorded, running
        self.every_s = REFRESH_S if every_s is None else every_s
        self.pages = 0  # partial pages written
        self.errors: list[str] = []  # why a refresh failed: the sweep goes on regardless
        self._seen = -1
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def refresh(self) -> bool:
        """Write a partial page if a trial was recorded since the last; whether one was written."""
        count = self.recorded()
        if count == self._seen or count == 0:
            return False
        self._seen = count
        try:
            build_report(self.run_dir, self.out, partial=Partial(running=self.running()))
        except Exception as error:  # a report never stops or garbles a sweep
            self.errors.append(f"{type(error).__name__}: {error}")
            return False
        self.pages += 1
        return True

    # --- in the driver: a background thread while the sweep runs ------------------------------

    def __enter__(self) -> LiveReport:
        self._thread = threading.Thread(target=self._loop, name="mlsweep-live-report", daemon=True)
        self._thread.start()
        return self

    def _loop(self) -> None:
        while not self._stop.wait(self.every_s):
            self.refresh()

    def __exit__(self, *exc: Any) -> None:
        """Stop refreshing; where a partial page was written, replace it with the full report."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        if self.pages:
            try:
                final(self.run_dir, self.out)
            except Exception as error:  # the results are written already
                self.errors.append(f"{type(error).__name__}: {error}")


def final(run_dir: str, out: str | None) -> ReportResult | None:
    """The full report; None where it cannot be made (nothing completed: the page says why)."""
    try:
        return build_report(run_dir, out)
    except ReportError:
        return None


def recorded_trials(run_dir: str) -> int:
    """Trials recorded in the run folder (an incremental read)."""
    return len(read_results(run_dir, "trials"))


def watch(run_dir: str, out: str | None, every_s: float,
          sleep: Callable[[float], None] = time.sleep) -> None:
    """Keep the partial report of a sweep running elsewhere fresh; return once every planned
    trial is recorded (the caller writes the full report)."""
    folder = RunFolder(run_dir).require()
    live = LiveReport(folder.uri, lambda: recorded_trials(folder.uri), out=out, every_s=every_s)
    while True:
        planned = set(folder.manifest().get("trials", {}))
        done = set(read_results(folder.uri, "trials").get("trial_id", []))
        if planned and planned <= done:
            return
        live.refresh()
        sleep(every_s)
