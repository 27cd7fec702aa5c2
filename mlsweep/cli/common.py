"""What every command shares: the app, the consoles, user errors as exit 2, tables, `--format`."""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable
from typing import Annotated, Any, TypeVar

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

FORMATS = ("table", "json")
Format = Annotated[str, typer.Option("--format", help="table | json")]


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


def wants_json(format: str) -> bool:
    """Whether `--format` asks for JSON; anything but table or json is bad input."""
    if format not in FORMATS:
        raise UserError(f"--format: {format!r} is not a format; known: {', '.join(FORMATS)}")
    return format == "json"


def print_json(payload: Any) -> None:
    sys.stdout.write(json.dumps(payload, indent=2, default=str) + "\n")


def cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    return "-" if value is None else str(value)


def print_table(rows: list[dict[str, Any]], columns: list[str], title: str | None = None) -> None:
    table = Table(title=title, show_edge=False, header_style="bold")
    for column in columns:
        table.add_column(column)
    for row in rows:
        table.add_row(*(cell(row.get(c)) for c in columns))
    out.print(table)


def say(line: str) -> None:
    """A line printed as it is: paths and URIs are not styled or wrapped."""
    out.print(line, markup=False, highlight=False)


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
RUN_ARG = typer.Argument(..., help="A run folder (<storage>/<name>), local or s3://.")
