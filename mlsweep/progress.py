"""The live line a sweep prints: trials done / running / pending / failed, elapsed and ETA."""

from __future__ import annotations

import sys
import time
from collections import Counter
from typing import Any, TextIO


def _clock(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


class SweepProgress:
    """One line, rewritten in place on a terminal, or printed per finished trial in a log."""

    def __init__(self, total: int, quiet_terminal: bool = False, stream: TextIO | None = None) -> None:
        self.total = total
        self._stream = stream  # None: sys.stderr, looked up when written (Tune pickles callbacks)
        # With --verbose, Ray's own output interleaves; a rewritten line would garble it.
        self.live = self.stream.isatty() and not quiet_terminal
        self.by_status: Counter[str] = Counter()
        self.running: set[str] = set()
        self.t0 = time.monotonic()

    @property
    def stream(self) -> TextIO:
        return self._stream or sys.stderr

    def __enter__(self) -> SweepProgress:
        self.t0 = time.monotonic()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.live:
            self.stream.write("\n")
            self.stream.flush()

    def started(self, key: str) -> None:
        """A trial (or a retry of it) started."""
        self.running.add(key)
        if self.live:
            self._emit("\r")

    def finished(self, key: str, status: str) -> None:
        self.running.discard(key)
        self.by_status[status] += 1
        self._emit("\r" if self.live else "")
        if not self.live:
            self.stream.write("\n")

    def line(self) -> str:
        done = sum(self.by_status.values())
        elapsed = time.monotonic() - self.t0
        eta = elapsed / done * (self.total - done) if done else None
        pending = max(0, self.total - done - len(self.running))
        diverged = f"  diverged {self.by_status['diverged']}" if self.by_status["diverged"] else ""
        return (f"[{done}/{self.total}] done {self.by_status['completed']}  running {len(self.running)}  "
                f"pending {pending}  failed {self.by_status['failed']}{diverged}  "
                f"elapsed {_clock(elapsed)}  eta {_clock(eta) if eta is not None else '-'}")

    def _emit(self, prefix: str) -> None:
        self.stream.write(f"{prefix}{self.line()}\033[K" if self.live else self.line())
        self.stream.flush()
