"""The driver's result writes, off Tune's thread: a storage outage costs waiting, not trials.

A finished trial's rows are queued and written by one background thread, which retries a
failed write with backoff. Tune's callback only queues, so it never blocks on storage and
never raises into Tune (which would retrain the trial). When storage has not taken a write
for `timeout_s` (failing, or hanging inside one call), the writer gives up: `error` says why,
the sweep is stopped, and what was not written is run again by the next launch.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from typing import Any

FIRST_RETRY_S = 0.2
LONGEST_RETRY_S = 10.0


class BackgroundWriter:
    """Runs queued writes in order; `gave_up()` is what the sweep's stopper asks."""

    def __init__(self, timeout_s: float, where: str) -> None:
        self.timeout_s, self.where = timeout_s, where
        self.error: str | None = None
        self._jobs: queue.Queue[Callable[[], None] | None] = queue.Queue()
        self._since: float | None = None  # when the write in hand was first tried
        self._last_error = ""
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="results-writer", daemon=True)
        self._thread.start()

    def __getstate__(self) -> dict[str, Any]:
        """Tune pickles its callbacks and stoppers with the experiment's state; a copy has no
        thread and no queued writes."""
        return {"timeout_s": self.timeout_s, "where": self.where, "error": self.error}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state, _jobs=queue.Queue(), _since=None, _last_error="",
                             _lock=threading.Lock(), _thread=None)

    def submit(self, write: Callable[[], None]) -> None:
        """Queue a write; after giving up, writes are dropped (their trials count as not run)."""
        if self.error is None:
            self._jobs.put(write)

    def gave_up(self) -> bool:
        """True once storage has not taken the write in hand for `timeout_s`."""
        with self._lock:
            since = self._since
        if self.error is None and since is not None and time.monotonic() - since > self.timeout_s:
            reason = f" ({self._last_error})" if self._last_error else " (a write hangs)"
            self.error = (f"storage {self.where} did not take a write for {self.timeout_s:g} s"
                          f"{reason}; stopped the sweep: launch again when it answers")
        return self.error is not None

    @property
    def pending(self) -> int:
        """Writes queued or in hand."""
        return self._jobs.unfinished_tasks

    def close(self) -> None:
        """Wait for the queued writes, or until the writer gives up; then end the thread."""
        while self.pending and not self.gave_up():
            time.sleep(0.05)
        self._jobs.put(None)

    def _run(self) -> None:
        while (write := self._jobs.get()) is not None:
            self._attempt(write)
            self._jobs.task_done()

    def _attempt(self, write: Callable[[], None]) -> None:
        with self._lock:
            self._since = time.monotonic()
        delay = FIRST_RETRY_S
        while not self.gave_up():
            try:
                write()
            except OSError as error:  # pyarrow's I/O errors (S3 refused, reset, timed out)
                self._last_error = str(error).splitlines()[0] if str(error) else type(error).__name__
                time.sleep(delay)
                delay = min(2 * delay, LONGEST_RETRY_S)
                continue
            break
        with self._lock:
            self._since = None
        self._last_error = ""
