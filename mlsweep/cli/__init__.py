"""The `mlsweep` command: parses, calls the library, prints, sets exit codes (2: bad input,
130/143: stopped by SIGINT/SIGTERM). One module per kind of command: local (plan, train,
launch), cluster (submit, logs, jobs, stop), results (status, analyze, report)."""

from __future__ import annotations

import atexit
import os
import sys
import threading
from importlib import import_module

from mlsweep.cli.common import app

# Each module registers its commands, in the order `mlsweep --help` lists them.
for _commands in ("local", "cluster", "results"):
    import_module(f"mlsweep.cli.{_commands}")

__all__ = ["app", "main"]


def main() -> None:
    """The console command. Its work done, a process that imported Ray, pyarrow and pandas
    spent another ~0.5 s in the interpreter's teardown (their extensions' destructors), a
    twentieth of a small launch: so it ends as Python would end it (other threads joined,
    atexit handlers run, output flushed), then at once."""
    try:
        app()
        code: object = 0
    except SystemExit as done:
        code = done.code
    for thread in threading.enumerate():
        if thread is not threading.current_thread() and not thread.daemon:
            thread.join()
    atexit._run_exitfuncs()
    if code is not None and not isinstance(code, int):
        print(code, file=sys.stderr)
        code = 1
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code or 0)
