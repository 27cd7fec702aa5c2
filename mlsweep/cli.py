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


SHOWN_EPOCHS = 4  # evaluated epochs `mlsweep train` tabulates at the end: a terminal's width

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


def _parse_sets(pairs: list[str]) -> dict[str, Any]:
    """`key=value` pairs, each value read as YAML, as a sweep file's `{value: ...}` would be."""
    import yaml

    settings: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        key = key.strip()
        if not sep or not key:
            raise UserError(f"--set {pair!r}: expected key=value, e.g. --set epochs=5")
        if key in settings:
            raise UserError(f"--set {key}: given twice")
        try:
            settings[key] = yaml.safe_load(raw)
        except yaml.YAMLError:
            raise UserError(f"--set {key}: the value {raw!r} is not valid YAML") from None
    return settings


def _train_settings(sets: list[str], options: dict[str, str | None]) -> dict[str, Any]:
    """`--set` pairs with `--loss` / `--dataset` merged in; the two ways of giving one setting
    must agree."""
    settings = _parse_sets(sets)
    for key, value in options.items():
        if value is None:
            continue
        if key in settings and settings[key] != value:
            raise UserError(f"--{key} {value} and --set {key}={settings[key]} disagree: give one")
        settings[key] = value
    return settings


def _epoch_line(record: dict[str, Any]) -> str:
    keys = ("train_loss", "active_ratio", "grad_norm", "intra_var_mean", "centroid_dist_mean",
            "recall_at_1", "map_at_r")
    parts = [f"{k}={record[k]:.4g}" for k in keys if k in record]
    return f"epoch {record['epoch']:>3}  " + "  ".join(parts) + f"  ({record['epoch_s']:.2f}s)"


def _settings_help() -> str:
    """Every trainer setting with its default and meaning, from the catalog."""
    from mlsweep.catalog import SETTINGS

    rows = [f"{name} (default {setting.default!r}): {setting.doc}" for name, setting in SETTINGS.items()]
    return "Settings for --set KEY=VALUE:\n\n" + "\n\n".join(rows)


def _names_help(kind: str) -> str:
    from mlsweep import catalog

    return ", ".join(getattr(catalog, kind))


@app.command(epilog=_settings_help())
@user_errors
def train(
    loss: str | None = typer.Option(None, help=f"Loss (default triplet): {_names_help('LOSSES')}."),
    dataset: str | None = typer.Option(None, help="Data set (default synthetic): "
                                       f"{_names_help('DATASETS')}."),
    set_: list[str] = typer.Option([], "--set", help="A trainer setting, KEY=VALUE (repeatable; "
                                   "the settings are listed below)."),
    out_dir: Path | None = typer.Option(None, "--out", help="Write the trial's Parquet tables here."),
    format: str = typer.Option("table", "--format", help="table | json"),
) -> None:
    """Run one trial in this process, no Ray: prints each epoch's diagnostics as it ends."""
    from mlsweep.catalog import trial_id, validate_config
    from mlsweep.results import write_trial
    from mlsweep.trainer.loop import run_trial

    if format not in ("table", "json"):
        raise UserError(f"--format: {format!r} is not a format; known: table, json")
    options = {"loss": loss, "dataset": dataset}
    settings = _train_settings(set_, options)
    config = validate_config(settings, lambda key: f"--{key}" if options.get(key) else f"--set {key}")
    tid = trial_id(config)
    quiet = format == "json"
    if not quiet:
        out.print(f"trial {tid}: {config['loss']} on {config['dataset']}, {config['epochs']} epochs, "
                  f"model {config['model']}")
    result = run_trial(config, on_epoch=None if quiet else lambda rec, _: out.print(_epoch_line(rec)))
    if out_dir is not None:
        write_trial(str(out_dir), tid, "train", config, result.summary,
                    result.epochs.to_dict("records"), result.steps.to_dict("records"))
    if quiet:
        payload = {"trial_id": tid, "config": config,
                   "summary": {k: (v.isoformat() if hasattr(v, "isoformat") else v)
                               for k, v in result.summary.items()},
                   "epochs": result.epochs.to_dict("records")}
        sys.stdout.write(json.dumps(payload, indent=2, default=str) + "\n")
        return
    epochs = result.epochs.set_index("epoch")
    evaluated = epochs.index[epochs["eval_s"].notna()] if "eval_s" in epochs else epochs.index[-1:]
    table = epochs.loc[evaluated[-SHOWN_EPOCHS:]].T  # metrics as rows: fits a terminal
    print_table([{"metric": name, **{str(e): v for e, v in row.items()}} for name, row in table.iterrows()],
                ["metric", *map(str, table.columns)],
                title="every column at the evaluated epochs" + (
                    f" (the last {SHOWN_EPOCHS}; all of them: --format json or --out)"
                    if len(evaluated) > SHOWN_EPOCHS else ""))
    out.print(f"status: {result.summary['status']}   wall: {result.summary['wall_s']:.1f}s"
              + (f"   results: {out_dir}" if out_dir else ""))


@app.command()
@user_errors
def launch(
    sweep_file: Path = SWEEP_ARG,
    storage: str | None = typer.Option(None, help="Folder or s3:// URI; overrides the file's storage."),
    address: str | None = typer.Option(None, help="Join a Ray cluster (auto | ray://host:10001); "
                                       "default: an embedded local Ray."),
    retry_failed: bool = typer.Option(False, "--retry-failed", help="Run failed and diverged trials again."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Show Ray's and Tune's own output."),
) -> None:
    """Run every pending trial of a sweep on Ray Tune; results land as Parquet.

    Trials already recorded are skipped: relaunch after Ctrl-C, a crash, or new values.
    """
    from mlsweep.orchestrator import launch as run_sweep
    from mlsweep.spec import load_sweep

    sweep = load_sweep(sweep_file)
    summary = run_sweep(sweep, sweep_file.read_text(), storage=storage, address=address,
                        retry_failed=retry_failed, verbose=verbose)
    if summary.launched == 0:
        out.print(f"nothing to run: all {summary.skipped} trials are recorded in {summary.run_dir}"
                  + ("" if retry_failed else " (--retry-failed runs failed ones again)"))
        return
    rows = [{"status": k, "trials": v} for k, v in sorted(summary.by_status.items())]
    print_table(rows, ["status", "trials"], title=f"sweep {sweep.name}: {summary.launched} launched, "
                f"{summary.skipped} already recorded, {summary.elapsed_s:.0f}s")
    if summary.interrupted:
        out.print("interrupted: trials not shown here were not recorded; launch again to run them")
    out.print(f"results: {summary.run_dir}/results   next: mlsweep analyze {summary.run_dir}")
    if summary.by_status.get("failed"):
        raise typer.Exit(1)


@app.command()
@user_errors
def status(run_dir: str = typer.Argument(..., help="A run folder (<storage>/<name>).")) -> None:
    """Counts of trials by status, the failed ones with their errors, and the slowest."""
    from mlsweep.status import run_status

    report = run_status(run_dir)
    print_table([{"status": k, "trials": v} for k, v in report.counts.items()], ["status", "trials"],
                title=f"{run_dir}: {report.planned} planned")
    if report.failed:
        print_table(report.failed, ["trial_id", "loss", "dataset", "status", "attempts", "error"],
                    title="failed and diverged")
    print_table(report.slowest, ["trial_id", "loss", "dataset", "wall_s", "epochs_run", "device"],
                title="slowest")


ADDRESS_OPT = typer.Option(..., "--address", envvar="RAY_API_SERVER_ADDRESS",
                           help="The Ray dashboard, e.g. http://127.0.0.1:8265 "
                           "(forwarded by `ray dashboard cluster.yaml`).")


def _write_raw(text: str) -> None:
    sys.stdout.write(text)
    sys.stdout.flush()


def _follow_to_end(follow: Callable[[], int], job_id: str, address: str) -> None:
    """Stream a job's logs; exit with its outcome. Ctrl-C stops following, not the job."""
    try:
        code = follow()
    except KeyboardInterrupt:
        err.print(f"stopped following; the job keeps running (mlsweep stop {job_id} --address {address})")
        raise typer.Exit(130) from None
    raise typer.Exit(code)


@app.command()
@user_errors
def submit(
    sweep_file: Path = SWEEP_ARG,
    address: str = ADDRESS_OPT,
    follow: bool = typer.Option(False, "--follow", "-f",
                                help="Stream the job's logs; exit with its outcome."),
    storage: str | None = typer.Option(None, help="Folder on the head node or s3:// URI; overrides the "
                                       "file's (a relative folder is taken from the head's home)."),
    requirements: Path | None = typer.Option(None, help="A pip requirements file the sweep needs "
                                             "beyond mlsweep's own dependencies."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Show Ray's packaging and upload messages."),
) -> None:
    """Run a sweep on a Ray cluster as a Ray Job, from this folder's code and sweep files.

    The folder is uploaded (minus what .gitignore lists, .venv, runs and data) and
    `mlsweep launch` runs on the head node.
    """
    from mlsweep import cluster

    client, job = cluster.submit(sweep_file, address, storage, requirements, verbose=verbose)
    out.print(f"submitted {job.job_id} to {job.address}")
    for line in cluster.next_steps(job):
        out.print(f"  {line}", markup=False, highlight=False)
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

    rows = [{k: _cell(v) for k, v in row.items()} for row in cluster.list_jobs(address)]
    if not rows:
        out.print(f"no jobs on {cluster.dashboard_url(address)}")
        return
    columns = ["job", "status", "sweep", "started", "seconds"]
    # Plain aligned columns: a table narrowed to the terminal would cut the ids people copy.
    widths = {c: max([len(c), *(len(row[c]) for row in rows)]) for c in columns}
    for row in [dict(zip(columns, columns, strict=True)), *rows]:
        out.print("  ".join(row[c].ljust(widths[c]) for c in columns).rstrip(), markup=False,
                  highlight=False)


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


@app.command()
@user_errors
def analyze(
    run_dir: str = typer.Argument(..., help="A run folder (<storage>/<name>), local or s3://."),
    metric: list[str] = typer.Option([], "--metric", "-m",
                                     help="Metrics to test (repeatable; default: all epoch metrics)."),
    alpha: float = typer.Option(0.05, help="Significance level, after Holm correction."),
    claims: str | None = typer.Option(None, help="`paper` or a YAML file of claims "
                                      "(default: the sweep's `claims:`, else paper)."),
    format: str = typer.Option("table", "--format", help="table | json"),
) -> None:
    """Seed-paired significance tests between losses, and verdicts on named claims.

    Writes analysis/{summary,tests,ranks,claims}.parquet in the run folder.
    """
    from mlsweep.analysis import analyze as run_analysis
    from mlsweep.analysis import format_result, result_json

    if format not in ("table", "json"):
        raise UserError(f"--format: {format!r} is not a format; known: table, json")
    result = run_analysis(run_dir, metrics=metric or None, alpha=alpha, claims=claims)
    if format == "json":
        sys.stdout.write(json.dumps(result_json(result), indent=2) + "\n")
    else:
        out.print(format_result(result), markup=False, highlight=False)


@app.command()
@user_errors
def report(
    run_dir: str = typer.Argument(..., help="A run folder (<storage>/<name>), local or s3://."),
    out_file: str | None = typer.Option(None, "--out", help="The HTML file (default: RUN_DIR/report.html)."),
    png: str | None = typer.Option(None, "--png", help="Also export each chart as PNG into this folder."),
) -> None:
    """One self-contained HTML report that works offline; runs `analyze` first when its tables
    are missing or older than the results."""
    from mlsweep.report import build_report

    result = build_report(run_dir, out_file, png)
    ran = " (ran analyze first)" if result.analyzed else ""
    out.print(f"wrote {result.path}: {result.n_charts} charts, {result.size / 1e6:.1f} MB{ran}",
              markup=False, highlight=False)
    for path in result.pngs:
        out.print(f"  {path}", markup=False, highlight=False)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
