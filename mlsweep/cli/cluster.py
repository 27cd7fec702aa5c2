"""Commands for a Ray cluster, through its dashboard: `submit`, `logs`, `jobs`, `stop`."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import typer

from mlsweep.cli.common import SWEEP_ARG, app, cell, err, out, say, user_errors
from mlsweep.signals import Interrupted, stop_on_signals

ADDRESS_OPT = typer.Option(..., "--address", envvar="RAY_API_SERVER_ADDRESS",
                           help="The Ray dashboard, e.g. http://127.0.0.1:8265 "
                           "(forwarded by `ray dashboard cluster.yaml`).")


def _write_raw(text: str) -> None:
    sys.stdout.write(text)
    sys.stdout.flush()


def _follow_to_end(follow: Callable[[], int], job_id: str, address: str) -> None:
    """Stream a job's logs; exit with its outcome. Ctrl-C or SIGTERM stops following, not the
    job, and exits 130 / 143."""
    try:
        with stop_on_signals():
            code = follow()
    except Interrupted as stop:
        err.print(f"stopped following ({stop.name}); the job keeps running "
                  f"(mlsweep stop {job_id} --address {address})", markup=False, highlight=False)
        raise typer.Exit(stop.exit_code) from None
    raise typer.Exit(code)


@app.command()
@user_errors
def submit(
    sweep_file: Path = SWEEP_ARG,
    address: str = ADDRESS_OPT,
    follow: bool = typer.Option(False, "--follow", "-f",
                                help="Stream the job's logs; exit with its outcome (130 / 143 when "
                                "Ctrl-C / SIGTERM stops the following, not the job)."),
    storage: str | None = typer.Option(None, help="Folder on the head node or s3:// URI; overrides the "
                                       "file's (a relative folder is taken from the head's home)."),
    requirements: Path | None = typer.Option(None, help="A pip requirements file the sweep needs "
                                             "beyond mlsweep's own dependencies."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Show Ray's packaging and upload messages."),
) -> None:
    """Run a sweep on a Ray cluster as a Ray Job, from this folder's code.

    The folder is uploaded (minus what .gitignore lists, .venv, runs and data) and
    `mlsweep launch` runs on the head node. The sweep file may lie anywhere: its text travels
    with the job, and is the run folder's sweep.yaml.
    """
    from mlsweep import cluster

    client, job = cluster.submit(sweep_file, address, storage, requirements, verbose=verbose)
    out.print(f"submitted {job.job_id} to {job.address}")
    for line in cluster.next_steps(job):
        say(f"  {line}")
    if follow:
        def run() -> int:
            status, code = cluster.follow(client, job.job_id, _write_raw)
            out.print(f"job {job.job_id}: {status}")
            return code

        _follow_to_end(run, job.job_id, job.address)


@app.command()
@user_errors
def logs(
    job_id: str = typer.Argument(..., help="The job's submission id (mlsweep jobs lists them)."),
    address: str = ADDRESS_OPT,
    follow: bool = typer.Option(False, "--follow", "-f",
                                help="Stream until the job ends; exit with its outcome."),
) -> None:
    """A job's output so far, or streamed until it ends."""
    from mlsweep import cluster

    _follow_to_end(lambda: cluster.logs(address, job_id, _write_raw, follow), job_id, address)


@app.command()
@user_errors
def jobs(address: str = ADDRESS_OPT) -> None:
    """The cluster's jobs, newest first, with the sweep each one runs."""
    from mlsweep import cluster

    rows = [{k: cell(v) for k, v in row.items()} for row in cluster.list_jobs(address)]
    if not rows:
        out.print(f"no jobs on {cluster.dashboard_url(address)}")
        return
    columns = ["job", "status", "sweep", "started", "seconds"]
    # Plain aligned columns: a table narrowed to the terminal would cut the ids people copy.
    widths = {c: max([len(c), *(len(row[c]) for row in rows)]) for c in columns}
    for row in [dict(zip(columns, columns, strict=True)), *rows]:
        say("  ".join(row[c].ljust(widths[c]) for c in columns).rstrip())


@app.command()
@user_errors
def stop(
    job_id: str = typer.Argument(..., help="The job's submission id (mlsweep jobs lists them)."),
    address: str = ADDRESS_OPT,
) -> None:
    """Stop a job; the trials it recorded stay, and submitting the sweep again runs the rest."""
    from mlsweep import cluster

    status = cluster.stop(address, job_id)
    out.print(f"job {job_id}: {status}")
    if status in ("PENDING", "RUNNING"):
        raise typer.Exit(1)
