"""Commands on a run folder's results: `status`, `analyze`, `report`."""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import typer
import yaml

from mlsweep.cli.common import (
    RUN_ARG,
    Format,
    app,
    err,
    print_json,
    print_table,
    say,
    user_errors,
    wants_json,
)
from mlsweep.errors import UserError
from mlsweep.results import BadFile, UnreadableResultWarning, unreadable
from mlsweep.runfolder import RunFolder, require_writable_dir, require_writable_file

FAILED_COLUMNS = ["trial_id", "loss", "dataset", "status", "attempts", "error"]
SLOWEST_COLUMNS = ["trial_id", "loss", "dataset", "wall_s", "epochs_run", "device"]


@app.command()
@user_errors
def status(run_dir: str = RUN_ARG, format: Format = "table") -> None:
    """Counts of trials by status, the failed ones with their errors, and the slowest.

    Exits 1 when trials were recorded and every one of them failed or diverged. `--format json`
    prints one object: `run_dir` (str), `planned` (int: trial ids ever planned or recorded),
    `counts` ({status: int} for completed, failed, diverged and pending), `all_failed` (bool),
    `failed` (list of {trial_id, loss, dataset, status, attempts, error}), `slowest` (the
    five longest: list of {trial_id, loss, dataset, wall_s, epochs_run, device}) and
    `unreadable` (paths of run files that cannot be read and were left out).
    """
    from mlsweep.status import run_status

    as_json = wants_json(format)
    report = run_status(run_dir)
    warn_unreadable(report.bad)
    if as_json:
        print_json({"run_dir": run_dir, "planned": report.planned, "counts": report.counts,
                    "unreadable": [b.path for b in report.bad],
                    "all_failed": report.all_failed, "failed": _rows(report.failed, FAILED_COLUMNS),
                    "slowest": _rows(report.slowest, SLOWEST_COLUMNS)})
    else:
        print_table([{"status": k, "trials": v} for k, v in report.counts.items()], ["status", "trials"],
                    title=f"{run_dir}: {report.planned} planned")
        if report.failed:
            say("failed and diverged:")
            for row in report.failed:
                say(_failure_line(row))
        print_table([{**row, "wall_s": _seconds(row.get("wall_s"))} for row in report.slowest],
                    SLOWEST_COLUMNS, title="slowest")
    if report.all_failed:
        raise typer.Exit(1)


def _failure_line(row: dict[str, Any]) -> str:
    """`  6c0fec568acb  contrastive on digits  failed (1 attempt)  torch.OutOfMemoryError: ...`:
    one line, the error's first in full, which a terminal wraps rather than a table cutting
    the exception's name."""
    attempts = row.get("attempts")
    tries = "" if _missing(attempts) else f" ({attempts} attempt{'s' * (attempts != 1)})"
    error = str(row.get("error") or "no error recorded").strip().split("\n", 1)[0]
    return f"  {row['trial_id']}  {row.get('loss')} on {row.get('dataset')}  {row['status']}{tries}  {error}"


def _seconds(value: Any) -> str | None:
    """Seconds at one precision (0.1 s) in every row."""
    return None if _missing(value) else f"{float(value):.1f}"


def _rows(rows: list[dict[str, Any]], columns: list[str]) -> list[dict[str, Any]]:
    """`columns` of each row, as plain JSON values (NaN as null)."""
    return [{c: None if _missing(row.get(c)) else _plain(row.get(c)) for c in columns} for row in rows]


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and value != value)


def _plain(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else value


@app.command()
@user_errors
def analyze(
    run_dir: str = RUN_ARG,
    metric: list[str] = typer.Option([], "--metric", "-m",
                                     help="Metrics to test (repeatable; default: all epoch metrics)."),
    alpha: float = typer.Option(0.05, help="Significance level, after Holm correction."),
    claims: str | None = typer.Option(None, help="`paper` or a YAML file of claims "
                                      "(default: the sweep's `claims:`, else paper); the file's "
                                      "format: docs/sweep-file.md#claims."),
    out_dir: str | None = typer.Option(None, "--out", help="Write the analysis tables into this folder "
                                       "(local or s3://) instead of the run folder's analysis/: for a "
                                       "run folder you cannot write to."),
    format: Format = "table",
) -> None:
    """Seed-paired significance tests between losses, and verdicts on named claims.

    Writes analysis/{summary,tests,ranks,claims}.parquet in the run folder (or --out).
    A claims file is a list of {name, a, b, metric, direction: greater|less, stat: final|mean},
    e.g. `- {a: triplet, b: contrastive, metric: intra_var_mean, direction: greater}`; all of
    it, with an example: docs/sweep-file.md#claims.
    """
    from mlsweep.analysis import analyze as run_analysis
    from mlsweep.analysis import format_result, result_json

    as_json = wants_json(format)
    folder = RunFolder(run_dir).require()
    if out_dir is not None:
        require_writable_dir(out_dir, "--out")
    else:
        _instead(lambda: require_writable_dir(folder.analysis_uri), "--out DIR for the analysis tables")
    with reading_around_bad_files(folder):
        result = run_analysis(run_dir, metrics=metric or None, alpha=alpha, claims=claims, out=out_dir)
    if as_json:
        print_json(result_json(result))
    else:
        say(format_result(result))


@app.command()
@user_errors
def report(
    run_dir: str = RUN_ARG,
    out_file: str | None = typer.Option(None, "--out", help="The HTML file (default: RUN_DIR/report.html)."),
    png: str | None = typer.Option(None, "--png", help="Also export each chart as PNG into this folder."),
    watch: bool = typer.Option(False, "--watch", help="For a sweep running elsewhere: keep a partial "
                               "report fresh until every planned trial is recorded, then write the "
                               "full one (Ctrl-C stops watching, exit 0)."),
    interval: float = typer.Option(30.0, "--interval", help="Seconds between looks with --watch."),
) -> None:
    """One self-contained HTML report that works offline; runs `analyze` first when its tables
    are missing or older than the results. `mlsweep launch` keeps a partial one fresh itself."""
    from mlsweep.report import build_report

    folder = RunFolder(run_dir).require()
    if out_file is None:
        _instead(lambda: require_writable_file(folder.report_uri), "--out FILE for the report")
    else:
        require_writable_file(out_file, "--out")
    if png is not None:
        require_writable_dir(png, "--png")
    if watch:
        _watch(run_dir, out_file, interval)
    with reading_around_bad_files(folder):
        result = build_report(run_dir, out_file, png)
    ran = " (ran analyze first)" if result.analyzed else ""
    say(f"wrote {result.path}: {result.n_charts} charts, {result.size / 1e6:.1f} MB{ran}")
    for path in result.pngs:
        say(f"  {path}")


def warn_unreadable(bad: list[BadFile]) -> None:
    """One line per unreadable run file on stderr, then the count left out."""
    for found in bad:
        err.print(f"warning: {found.line()}", markup=False, highlight=False)
    if bad:
        err.print(f"warning: {len(bad)} unreadable file{'s' if len(bad) > 1 else ''} left out; "
                  "`mlsweep launch` moves them aside and runs their trials again",
                  markup=False, highlight=False)


@contextlib.contextmanager
def reading_around_bad_files(folder: RunFolder) -> Iterator[None]:
    """Name the folder's unreadable files once, then let the command read around them without
    the readers' own warnings."""
    bad: list[BadFile] = []
    folder.manifest(bad)
    try:
        yaml.safe_load(folder.sweep_text() or "")
    except yaml.YAMLError:
        bad.append(BadFile(folder.uri_of("sweep.yaml"), "not valid YAML; the paper claims are tested"))
    warn_unreadable(bad + unreadable(folder.uri))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnreadableResultWarning)
        yield


def _watch(run_dir: str, out_file: str | None, interval: float) -> None:
    """Refresh the partial report until the sweep has recorded every planned trial."""
    from mlsweep.report.live import watch
    from mlsweep.signals import Interrupted, stop_on_signals

    if not interval > 0:
        raise UserError(f"--interval {interval:g}: give a number of seconds above 0")
    shown = out_file or RunFolder(run_dir).report_uri
    say(f"watching {run_dir}: refreshing {shown} every {interval:g} s while trials are recorded "
        "(Ctrl-C stops)")
    try:
        with stop_on_signals():
            watch(run_dir, out_file, interval)
    except Interrupted as stop:
        say(f"stopped watching ({stop.name}); {shown} shows the trials recorded so far")
        raise typer.Exit(0) from None
    say("every planned trial is recorded")


def _instead(check: Callable[[], None], instead: str) -> None:
    """Run a check of the run folder; its error says what to give instead."""
    try:
        check()
    except UserError as error:
        raise UserError(f"{error}; give {instead}") from None
