"""The `mlsweep` command: parses, calls the library, prints, sets exit codes (2: bad input)."""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import typer
from rich.console import Console
from rich.table import Table

from mlsweep.errors import UserError

app = typer.Typer(
    help="Ray Tune sweeps for deep metric learning: plan, train, launch, analyze, report.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)

F = TypeVar("F", bound=Callable[..., Any])


def user_errors(command: F) -> F:
    """Print a UserError's lines and exit 2: bad input never shows a traceback."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except UserError as error:
            for line in error.lines:
                err.print(f"error: {line}", markup=False, highlight=False)
            raise typer.Exit(2) from None

    return wrapper  # type: ignore[return-value]


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    return "-" if value is None else str(value)


def print_table(rows: list[dict[str, Any]], columns: list[str], title: str | None = None) -> None:
    table = Table(title=title, show_edge=False, header_style="bold")
    for column in columns:
        table.add_column(column)
    for row in rows:
        table.add_row(*(_cell(row.get(c)) for c in columns))
    out.print(table)


def _version(value: bool) -> None:
    if value:
        from mlsweep import __version__

        out.print(f"mlsweep {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                 help="Print the version and exit."),
) -> None:
    """Ray Tune sweeps for deep metric learning: plan, train, launch, analyze, report."""


SWEEP_ARG = typer.Argument(..., help="The sweep file (YAML).", exists=False, dir_okay=False)


@app.command()
@user_errors
def plan(
    sweep_file: Path = SWEEP_ARG,
    format: str = typer.Option("table", "--format", help="table | json"),
) -> None:
    """Validate a sweep file and show the trials it expands to, without running anything."""
    from mlsweep.spec import expand, load_sweep, totals

    if format not in ("table", "json"):
        raise UserError(f"--format: {format!r} is not a format; known: table, json")
    sweep = load_sweep(sweep_file)
    trials = expand(sweep)
    summary = totals(sweep, trials)
    if format == "json":
        payload = {"sweep": sweep.name,
                   "trials": [{"trial_id": t.trial_id, "config": t.config} for t in trials],
                   "totals": summary}
        sys.stdout.write(json.dumps(payload, indent=2) + "\n")
        return
    varying = [k for k, p in sweep.parameters.items() if len(p.choices) > 1]
    columns = ["trial_id", *dict.fromkeys(["loss", "dataset", *varying])]
    print_table([{"trial_id": t.trial_id, **t.config} for t in trials], columns,
                title=f"sweep {sweep.name}: {len(trials)} trials")
    res = summary["resources_per_trial"]
    out.print(f"trials: {summary['trials']}   trial-epochs: {summary['trial_epochs']}   "
              f"per trial: cpu {res['cpu']:g}, gpu {res['gpu']:g}   "
              f"max concurrent: {summary['max_concurrent_trials'] or 'as resources allow'}")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
