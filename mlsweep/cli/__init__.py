"""The `mlsweep` command: parses, calls the library, prints, sets exit codes (2: bad input,
130/143: stopped by SIGINT/SIGTERM). One module per kind of command: local (plan, train,
launch), cluster (submit, logs, jobs, stop), results (status, analyze, report)."""

from __future__ import annotations

from importlib import import_module

from mlsweep.cli.common import app

# Each module registers its commands, in the order `mlsweep --help` lists them.
for _commands in ("local", "cluster", "results"):
    import_module(f"mlsweep.cli.{_commands}")

__all__ = ["app", "main"]


def main() -> None:
    app()
