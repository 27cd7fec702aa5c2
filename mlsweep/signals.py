"""Ctrl-C and SIGTERM as one exception, so a command stops cleanly and exits 128 + the signal
(130, 143): a script or a Ray Job can tell an interrupted sweep from a finished one."""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Iterator
from typing import Any

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupted(KeyboardInterrupt):
    """Raised in the main thread by the first SIGINT or SIGTERM; code that handles Ctrl-C
    (KeyboardInterrupt) handles SIGTERM alike."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


@contextlib.contextmanager
def stop_on_signals() -> Iterator[list[int]]:
    """Within the block, the first SIGINT or SIGTERM raises Interrupted; a second one ends the
    process at once with its exit code (what a second Ctrl-C means). Yields the list the
    signals received are appended to, which callbacks running meanwhile can look at. Outside
    the main thread, where handlers cannot be set, signals keep their default meaning."""
    received: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield received
        return

    def handle(signum: int, _frame: Any) -> None:
        if received:
            os._exit(128 + signum)
        received.append(signum)
        raise Interrupted(signum)

    saved = {sig: signal.signal(sig, handle) for sig in STOP_SIGNALS}
    try:
        yield received
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)
