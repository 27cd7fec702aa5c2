"""Reading a run folder for analysis: completed trials, their metrics, the claims to test."""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import pandas as pd
import yaml

from mlsweep import catalog
from mlsweep.analysis._design import IDS, NOT_FACTORS
from mlsweep.catalog.metrics import Better
from mlsweep.claims import STATS, Claim, ClaimsError, load_claims
from mlsweep.errors import UserError
from mlsweep.results import UnreadableResultWarning
from mlsweep.runfolder import RunFolder


class AnalysisError(UserError):
    """A run folder or request that cannot be analysed; the message is one line for the user."""


def run_claims(run_dir: str) -> list[Claim]:
    """The claims the run's sweep.yaml names under `claims:`, or the `paper` set."""
    folder = RunFolder(run_dir)
    text = folder.sweep_text()
    if text is None:
        return load_claims("paper")
    shown = folder.uri_of("sweep.yaml")
    try:
        sweep = yaml.safe_load(text)
    except yaml.YAMLError:  # a damaged copy: named, and the paper's claims tested instead
        warnings.warn(UnreadableResultWarning(f"{shown}: unreadable, left out (not valid YAML); "
                                              "testing the paper claims"), stacklevel=2)
        return load_claims("paper")
    spec = sweep.get("claims") if isinstance(sweep, dict) else None
    try:
        return load_claims("paper" if spec is None else spec)
    except ClaimsError as error:
        raise ClaimsError(f"{shown}: {error}") from None


def excluded(trials: pd.DataFrame, epochs: pd.DataFrame) -> dict[str, int]:
    """Trials left out, by status; `unfinished` ones have epochs but no trials row yet."""
    status = trials.get("status", pd.Series("completed", index=trials.index))
    counts = {str(k): int(v) for k, v in status.value_counts().items() if k != "completed"}
    if not epochs.empty:
        started = pd.Index(epochs["trial_id"].unique())
        unfinished = len(started.difference(trials.get("trial_id", pd.Index([]))))
        if unfinished:
            counts["unfinished"] = unfinished
    return counts


def completed_config(trials: pd.DataFrame, epochs: pd.DataFrame, run_dir: str,
                      excluded: dict[str, int]) -> pd.DataFrame:
    """`trial_id`, `seed` and the config columns (those both tables carry) of completed trials."""
    if "status" in trials:
        trials = trials[trials["status"] == "completed"]
    if trials.empty or epochs.empty:
        left_out = ", ".join(f"{n} {status}" for status, n in excluded.items()) or "none run"
        raise AnalysisError(f"no completed trials with epochs in {run_dir} ({left_out})")
    columns = [c for c in trials.columns if c in epochs.columns and c not in IDS]
    if "loss" not in columns:
        raise AnalysisError(f"{run_dir}: the results have no `loss` column")
    config = trials[["trial_id", *columns]].reset_index(drop=True)
    return config if "seed" in config else config.assign(seed=0)


def metric_columns(epochs: pd.DataFrame, config: pd.DataFrame) -> list[str]:
    """Numeric epoch columns with data that are not config columns: the metrics."""
    return [c for c in epochs.columns
            if c not in config.columns and c not in NOT_FACTORS
            and pd.api.types.is_numeric_dtype(epochs[c]) and not pd.api.types.is_bool_dtype(epochs[c])
            and epochs[c].notna().any()]


def check_metrics(metrics: Sequence[str] | None, known: list[str]) -> list[str]:
    if not metrics:
        return known
    unknown = [m for m in metrics if m not in known]
    if unknown:
        raise AnalysisError(f"unknown metric {', '.join(unknown)}; known: {', '.join(known)}")
    return list(dict.fromkeys(metrics))


def usable_claims(claims: list[Claim], metrics: list[str],
                   losses: set[str]) -> tuple[list[Claim], list[dict[str, str]]]:
    """Claims the run can test, and the others with the reason they cannot be."""
    usable, skipped = [], []
    for claim in claims:
        absent = [loss for loss in (claim.a, claim.b) if loss not in losses]
        if absent:
            skipped.append({"claim": claim.name, "reason": f"no completed {' or '.join(absent)} trials"})
        elif claim.metric not in metrics:
            skipped.append({"claim": claim.name, "reason": f"metric {claim.metric} not in the results"})
        else:
            usable.append(claim)
    return usable, skipped


def trial_values(epochs: pd.DataFrame, metrics: list[str]) -> pd.DataFrame:
    """Long table `trial_id, metric, stat, value`: the final epoch's value and the mean over the
    epochs that have one (evaluation metrics are NaN on epochs that were not evaluated). A metric
    no trial has more than one value of (evaluated once: eval_every >= epochs) has a mean equal
    to its final value, so it gets `final` only: one number is reported once."""
    epochs = epochs.reset_index(drop=True)
    final = epochs.loc[epochs.groupby("trial_id")["epoch"].idxmax(), ["trial_id", *metrics]]
    once = epochs.groupby("trial_id")[metrics].count().max() <= 1
    repeated = [m for m in metrics if not once[m]]
    mean = epochs.groupby("trial_id", as_index=False)[repeated].mean()
    long = pd.concat([frame.melt(id_vars="trial_id", var_name="metric").assign(stat=stat)
                      for stat, frame in zip(STATS, (final, mean), strict=True)], ignore_index=True)
    return long.dropna(subset=["value"])[["trial_id", "metric", "stat", "value"]]


def comparable(metric: str) -> bool:
    """Whether two losses can be compared on `metric` (catalog metadata; a metric the catalog
    does not know is taken as comparable, without a better side)."""
    info = catalog.METRICS.get(metric)
    return info is None or info.comparable


def better(metric: str) -> Better:
    """The better direction of `metric`: higher, lower, or None where it has no better side."""
    info = catalog.METRICS.get(metric)
    return None if info is None else info.better
