"""Commands that run here: `plan` (validate and expand), `train` (one trial in this process)
and `launch` (a sweep on Ray Tune)."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

import typer

from mlsweep.cli.common import (
    SWEEP_ARG,
    Format,
    app,
    err,
    out,
    print_json,
    print_table,
    say,
    user_errors,
    wants_json,
)
from mlsweep.errors import UserError

SHOWN_EPOCHS = 4  # evaluated epochs `mlsweep train` tabulates at the end: a terminal's width


def _components_help() -> str:
    """Every loss, data set, model, miner and reporter with its doc, from the catalog."""
    from mlsweep.catalog.describe import components_help

    return components_help() + "\n\nEvery key of a sweep file: docs/sweep-file.md."


@app.command(epilog=_components_help())
@user_errors
def plan(
    sweep_file: Path = SWEEP_ARG,
    storage: str | None = typer.Option(None, help="Folder or s3:// URI; overrides the file's storage "
                                       "(where recorded trials and the history of earlier runs are read)."),
    calibrate: bool = typer.Option(False, "--calibrate", help="Time a short pack per (data set, model, "
                                   "loss, batch size) group here for the estimate, instead of the "
                                   "storage's earlier runs (seconds; run twice, so that what a worker "
                                   "pays once is told from what each pack pays)."),
    format: Format = "table",
) -> None:
    """Validate a sweep file and show the trials it expands to, which of them the storage has
    recorded, and how long the rest will take; nothing is launched.

    Pending trials are shown in the packs a launch here would train them in (the sweep's
    `pack`; a launch on a cluster sizes them to its slots).

    `--format json` prints one object: `sweep`, `trials` (list of {trial_id, config, recorded,
    pack_id}: null for a recorded trial), `packs` (list of {pack_id, trials}: the pending
    trials' ids), `totals` (trials, recorded, pending, packs, trial_epochs, resources_per_trial,
    max_concurrent_trials) and `estimate` ({source: history | calibration | none, detail, slots,
    trial_hours, wall_s}; null numbers when there is no estimate).
    """
    from mlsweep.estimate import estimate
    from mlsweep.orchestrator import recorded, run_dir_of
    from mlsweep.packs import local_slots, make_packs
    from mlsweep.spec import expand, load_sweep, totals

    as_json = wants_json(format)
    sweep = load_sweep(sweep_file)
    trials = expand(sweep)
    done = recorded(run_dir_of(sweep, storage), retry_failed=False)
    pending = [t for t in trials if t.trial_id not in done]
    base = storage or sweep.storage
    guess = estimate(sweep, pending, base if "://" in base else str(Path(base).expanduser().resolve()),
                     run_calibration=calibrate)
    here = local_slots(sweep)
    packs = make_packs(sweep, pending, here)
    pack_of = {t.trial_id: p.pack_id for p in packs for t in p.trials}
    summary = {**totals(sweep, trials), "recorded": len(trials) - len(pending), "pending": len(pending),
               "packs": len(packs)}
    if as_json:
        print_json({"sweep": sweep.name,
                    "trials": [{"trial_id": t.trial_id, "config": t.config, "recorded": t.trial_id in done,
                                "pack_id": pack_of.get(t.trial_id)} for t in trials],
                    "packs": [{"pack_id": p.pack_id, "trials": [t.trial_id for t in p.trials]}
                              for p in packs],
                    "totals": summary, "estimate": _estimate_json(guess)})
        return
    varying = [k for k, p in sweep.parameters.items() if len(p.choices) > 1]
    columns = ["trial_id", *dict.fromkeys(["loss", "dataset", *varying]), "pack", "recorded"]
    number = {p.pack_id: f"{n} ({len(p.trials)})" for n, p in enumerate(packs, 1)}
    print_table([{"trial_id": t.trial_id, **t.config, "recorded": done.get(t.trial_id, "no"),
                  "pack": number.get(pack_of.get(t.trial_id, ""), "-")}
                 for t in trials], columns, title=f"sweep {sweep.name}: {len(trials)} trials")
    res = summary["resources_per_trial"]
    out.print(f"trials: {summary['trials']} ({summary['recorded']} recorded, {summary['pending']} to run"
              f" in {len(packs)} pack{'s' * (len(packs) != 1)} for {here} slot{'s' * (here != 1)} here)"
              f"   trial-epochs: {summary['trial_epochs']}   "
              f"per trial: cpu {res['cpu']:g}, gpu {res['gpu']:g}   "
              f"max concurrent: {summary['max_concurrent_trials'] or 'as resources allow'}")
    say(estimate_line(guess))


def estimate_line(guess: Any) -> str:
    """`estimate: 0:04:10 wall, 0.52 trial-hours on 4 slots (history: ...)`, or why there is none."""
    if guess.source == "none":
        return f"no estimate: {guess.detail}"
    from mlsweep.progress import _clock

    return (f"estimate: {_clock(round(guess.wall_s))} wall, {guess.trial_hours:.2f} trial-hours on "
            f"{guess.slots} concurrent slot{'s' * (guess.slots != 1)} ({guess.detail})")


def _estimate_json(guess: Any) -> dict[str, Any]:
    def number(value: float) -> float | None:
        return None if value != value else value

    return {"source": guess.source, "detail": guess.detail, "slots": guess.slots,
            "trial_hours": number(guess.trial_hours), "wall_s": number(guess.wall_s)}


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
    format: Format = "table",
) -> None:
    """Run one trial in this process, no Ray: prints each epoch's diagnostics as it ends."""
    from mlsweep.catalog import TrialConfig, trial_id
    from mlsweep.results import write_trial
    from mlsweep.runfolder import require_writable_dir
    from mlsweep.trainer.loop import run_trial

    quiet = wants_json(format)
    options = {"loss": loss, "dataset": dataset}
    settings = _train_settings(set_, options)
    config = TrialConfig.from_mapping(
        settings, lambda key: f"--{key}" if options.get(key) else f"--set {key}")
    resolved = config.as_dict()
    tid = trial_id(resolved)
    if out_dir is not None:  # before training: a trial's minutes are not lost to a bad path
        require_writable_dir(str(out_dir), "--out")
    if not quiet:
        out.print(f"trial {tid}: {config.loss} on {config.dataset}, {config.epochs} epochs, "
                  f"model {config.model}")
    result = run_trial(config, on_epoch=None if quiet else lambda rec, _: out.print(_epoch_line(rec)))
    if out_dir is not None:
        write_trial(str(out_dir), tid, "train", resolved, result.summary,
                    result.epochs.to_dict("records"), result.steps.to_dict("records"))
    if quiet:
        payload = {"trial_id": tid, "config": resolved,
                   "summary": {k: (v.isoformat() if hasattr(v, "isoformat") else v)
                               for k, v in result.summary.items()},
                   "epochs": result.epochs.to_dict("records")}
        print_json(payload)
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
    storage_timeout: float = typer.Option(300.0, "--storage-timeout", min=1.0,
                                          help="Seconds to keep retrying a result write while "
                                          "storage does not answer, before stopping the sweep."),
    sweep_text_env: str | None = typer.Option(None, "--sweep-text-env", hidden=True,
                                              help="Read the sweep file's text from this environment "
                                              "variable (what `mlsweep submit` gives its job)."),
) -> None:
    """Run every pending trial of a sweep on Ray Tune; results land as Parquet.

    Trials already recorded are skipped: relaunch after Ctrl-C, a crash, or new values.
    Exit codes: 0 all ran, 1 a trial failed (also on a relaunch with nothing left to run),
    1 also when storage did not take a write for --storage-timeout (recorded trials stay),
    2 bad input or another launch of the sweep running, 130 / 143 stopped by Ctrl-C / SIGTERM
    (recorded trials stay; a second Ctrl-C stops at once). Unreadable run files are moved
    aside, each named in one line, and their trials run again.
    """
    from mlsweep.orchestrator import launch as run_sweep
    from mlsweep.runfolder import RunFolder

    sweep, text = _sweep_given(sweep_file, sweep_text_env)
    summary = run_sweep(sweep, text, storage=storage, address=address,
                        retry_failed=retry_failed, verbose=verbose, storage_timeout=storage_timeout,
                        notice=lambda line: err.print(f"warning: {line}", markup=False, highlight=False),
                        live=_live_report)
    run_dir = shlex.quote(summary.run_dir)
    if summary.storage_error is not None:
        err.print(f"error: {summary.storage_error} ({summary.ran} trials recorded this launch)",
                  markup=False, highlight=False)
        raise typer.Exit(1)
    if summary.launched == 0:
        say(_nothing_to_run(summary.skipped, summary.recorded, run_dir))
        raise typer.Exit(1 if summary.recorded.get("failed") else 0)
    stop = summary.interrupted
    rows = [{"status": k, "trials": v} for k, v in sorted(summary.by_status.items())]
    ran = f"{summary.ran} of {summary.launched} pending ran" if stop else f"{summary.ran} ran"
    print_table(rows, ["status", "trials"], title=f"sweep {sweep.name}: {ran}, "
                f"{summary.skipped} already recorded, {summary.elapsed_s:.0f}s")
    if stop is not None:
        say(f"stopped by {stop.name}: {summary.launched - summary.ran} trials not recorded; "
            "launch again to run them")
    say(f"results: {shlex.quote(RunFolder(summary.run_dir).results_uri)}   "
        f"next: mlsweep analyze {run_dir}")
    if stop is not None:
        raise typer.Exit(stop.exit_code)
    if summary.by_status.get("failed"):
        raise typer.Exit(1)


def _live_report(run_dir: str, progress: Any) -> Any:
    """report.html kept fresh while the trials run: refreshed when the progress has counted a
    trial finished since, with the running ones in its banner."""
    from mlsweep.report.live import LiveReport

    return LiveReport(run_dir, lambda: sum(progress.by_status.values()), lambda: len(progress.running))


def _sweep_given(sweep_file: Path, text_env: str | None) -> tuple[Any, str]:
    """The sweep and its text: from the file, or from the variable `text_env` (what a cluster
    job carries), validated under the file's name."""
    import os
    import tempfile

    from mlsweep.spec import load_sweep

    if text_env is None:
        return load_sweep(sweep_file), sweep_file.read_text()
    if text_env not in os.environ:
        raise UserError(f"--sweep-text-env {text_env}: no such environment variable")
    text = os.environ[text_env]
    with tempfile.TemporaryDirectory(prefix="mlsweep-sweep-") as folder:
        copy = Path(folder) / sweep_file.name
        copy.write_text(text)
        return load_sweep(copy), text


def _nothing_to_run(n: int, recorded: dict[str, int], run_dir: str) -> str:
    """What a launch with every trial recorded says: failed ones are called out, since the
    launch exits 1 for them as the first one did."""
    failed = recorded.get("failed", 0) + recorded.get("diverged", 0)
    if failed:
        which = "all" if failed == n else str(failed)
        return (f"nothing to run: all {n} trials are recorded, {which} of them failed; "
                f"--retry-failed runs them again (run folder {run_dir})")
    return f"nothing to run: all {n} trials are recorded in {run_dir}"
