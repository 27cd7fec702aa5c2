"""The live lines a sweep prints: trials done / running / pending / failed, elapsed and ETA, and
on a terminal each running trial (loss, data set, margin, seed, epoch)."""

from __future__ import annotations

import shutil
import sys
import threading
import time
from collections import Counter
from collections.abc import Mapping
from typing import Any, TextIO

TICK_S = 1.0  # a terminal's lines are redrawn at least this often, so the clock never stalls
SHOWN_RUNNING = 8  # running trials listed on a terminal, one line each


def _clock(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def trial_label(config: Mapping[str, Any]) -> str:
    """`triplet on digits, margin 0.5, seed 1` (margin only for a loss that has one)."""
    margin = f", margin {config['margin']:g}" if config.get("margin") is not None else ""
    return f"{config.get('loss')} on {config.get('dataset')}{margin}, seed {config.get('seed')}"


class SweepProgress:
    """On a terminal: a block of lines redrawn in place every TICK_S and on each change. In a log
    (not a terminal, or --verbose, whose Ray output would garble a redrawn block): one line
    per finished trial."""

    def __init__(self, total: int, quiet_terminal: bool = False, stream: TextIO | None = None) -> None:
        self.total = total
        self._stream = stream  # None: sys.stderr, looked up when written
        self.live = self.stream.isatty() and not quiet_terminal
        self.by_status: Counter[str] = Counter()
        self.running: dict[str, dict[str, Any]] = {}  # trial key -> label, epoch, epochs
        self.t0 = time.monotonic()
        self._drawn = 0  # lines of the block on screen
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._ticker: threading.Thread | None = None

    @property
    def stream(self) -> TextIO:
        return self._stream or sys.stderr

    def __getstate__(self) -> dict[str, Any]:
        """Tune pickles its callbacks (this, through the results writer) with the experiment's
        state; a copy has no thread, and a fresh lock."""
        return {k: v for k, v in self.__dict__.items() if k not in ("_lock", "_stop", "_ticker")}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state, _lock=threading.Lock(), _stop=threading.Event(), _ticker=None)

    def __enter__(self) -> SweepProgress:
        self.t0 = time.monotonic()
        if self.live:
            self._stop.clear()
            self._ticker = threading.Thread(target=self._tick, name="mlsweep-progress", daemon=True)
            self._ticker.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        if self._ticker is not None:
            self._ticker.join()
            self._ticker = None
        if self.live:
            self._redraw()
            self.stream.write("\n")
            self.stream.flush()

    def _tick(self) -> None:
        while not self._stop.wait(TICK_S):
            self._redraw()

    # --- events -------------------------------------------------------------------------------

    def started(self, key: str, config: Mapping[str, Any]) -> None:
        """A trial (or a retry of it) started."""
        with self._lock:  # the ticker thread reads `running`
            self.running[key] = {"label": trial_label(config), "epoch": 0, "epochs": config.get("epochs")}
        self._redraw()

    def reported(self, key: str, epoch: int) -> None:
        """A running trial reported its epochs up to `epoch`."""
        with self._lock:
            if key in self.running:
                self.running[key]["epoch"] = epoch
        self._redraw()

    def finished(self, key: str, status: str) -> None:
        with self._lock:
            self.running.pop(key, None)
            self.by_status[status] += 1
        if self.live:
            self._redraw()
        else:
            with self._lock:
                self.stream.write(self.line() + "\n")
                self.stream.flush()

    # --- rendering ----------------------------------------------------------------------------

    def line(self) -> str:
        done = sum(self.by_status.values())
        elapsed = time.monotonic() - self.t0
        eta = elapsed / done * (self.total - done) if done else None
        pending = max(0, self.total - done - len(self.running))
        diverged = f"  diverged {self.by_status['diverged']}" if self.by_status["diverged"] else ""
        return (f"[{done}/{self.total}] done {self.by_status['completed']}  running {len(self.running)}  "
                f"pending {pending}  failed {self.by_status['failed']}{diverged}  "
                f"elapsed {_clock(elapsed)}  eta {_clock(eta) if eta is not None else '-'}")

    def lines(self) -> list[str]:
        """The terminal's block: the counts, then the running trials."""
        trials = [f"  {t['label']}: epoch {t['epoch']}/{t['epochs']}" for t in self.running.values()]
        more = len(trials) - SHOWN_RUNNING
        return [self.line(), *trials[:SHOWN_RUNNING], *([f"  ... {more} more running"] if more > 0 else [])]

    def _redraw(self) -> None:
        if not self.live:
            return
        width = shutil.get_terminal_size().columns
        with self._lock:
            block = [line[: width - 1] for line in self.lines()]
            up = f"\033[{self._drawn - 1}F" if self._drawn > 1 else "\r"
            # Back to the block's first line, rewrite each line, clear what the last block left.
            self.stream.write(up + "\033[K\n".join(block) + "\033[K\033[J")
            self.stream.flush()
            self._drawn = len(block)
