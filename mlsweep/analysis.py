"""Seed-paired statistics over a sweep's results: summaries, loss comparisons, ranks, claims.

Each completed trial's epoch curve is reduced to two numbers per metric: its value at the final
epoch (`stat = final`) and its mean over epochs (`stat = mean`). A cell is a setting of every
factor but the seed; a block is a setting of every factor but loss and seed. Within a block two
losses are compared on the seeds both ran (every loss and seed sees the same data split), so
seed-to-seed variation cancels out of the difference.

Tests and claims use the paired t-test p-value (Holm-corrected): with the 3 to 10 seeds a sweep
usually has, an exact Wilcoxon test cannot go below 2 / 2**n (0.0625 at n = 5), so it could never
support a claim after Holm. The Wilcoxon test is reported alongside as a check that does not rest
on normally distributed differences.

Everything per trial is vectorised pandas; scipy runs once per group size on stacked groups.
"""

from __future__ import annotations

import functools
import json
import math
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from itertools import combinations
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import yaml
from scipy import special, stats

from mlsweep.claims import Claim, ClaimsError, load_claims
from mlsweep.errors import UserError
from mlsweep.results import filesystem, join, read_results, write_atomic

__all__ = [
    "AnalysisError",
    "AnalysisResult",
    "Claim",
    "ClaimsError",
    "analyze",
    "format_result",
    "load_claims",
    "result_json",
]

STATS = ("final", "mean")
LOWER_IS_BETTER = frozenset({"train_loss", "epoch_s"})
N_RESAMPLES = 2000
_ALPHA = 0.025  # each tail of the 95% bootstrap CIs
_IDS = ("trial_id", "sweep")
_NOT_FACTORS = frozenset({*_IDS, "seed", "epoch"})
_CHUNK = 10_000_000  # array elements per vectorised scipy call (80 MB of float64)
_PAIR_COLUMNS = ("mean_diff", "ci_low", "ci_high", "t_stat", "t_p", "w_stat", "w_p", "d_z",
                 "rank_biserial")
_TESTS_COLUMNS = ["loss_a", "loss_b", "n_pairs", "mean_diff", "ci_low", "ci_high", "t_stat", "t_p",
                  "w_stat", "w_p", "p_holm", "d_z", "rank_biserial", "better", "note"]
_RANK_COLUMNS = ["metric", "stat", "loss", "mean_rank", "n_blocks", "friedman_stat",
                 "friedman_p", "cd", "note"]


class AnalysisError(UserError):
    """A run folder or request that cannot be analysed; the message is one line for the user."""


@dataclass
class AnalysisResult:
    """The four tables `analyze` writes, with the counts the printed summary needs."""

    summary: pd.DataFrame
    tests: pd.DataFrame
    ranks: pd.DataFrame
    claims: pd.DataFrame
    n_trials: int
    n_completed: int
    n_excluded: dict[str, int]
    missing_pairs: list[dict[str, Any]]
    skipped_claims: list[dict[str, str]]
    alpha: float = 0.05
    paths: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class _Design:
    """Which columns identify cells and blocks, read off the trials that completed."""

    cells: list[str]  # every factor but seed, `dataset` and `loss` always
    blocks: list[str]  # the cell columns but loss


def analyze(run_dir: str, metrics: Sequence[str] | None = None, alpha: float = 0.05,
            claims: str | Sequence[dict[str, Any] | Claim] | None = None,
            seed: int = 0) -> AnalysisResult:
    """Analyse a run folder and write `analysis/{summary,tests,ranks,claims}.parquet` in it.

    `claims` defaults to the `claims:` of the run's sweep.yaml, else the `paper` set; claims
    naming a loss or metric the run lacks are skipped and listed, not errors. `seed` seeds the
    bootstrap, so the same results give the same intervals.
    """
    if not 0 < alpha < 1:
        raise AnalysisError(f"alpha must be between 0 and 1, not {alpha}")
    claim_list = _run_claims(run_dir) if claims is None else load_claims(claims)
    trials, epochs = read_results(run_dir, "trials"), read_results(run_dir, "epochs")
    if trials.empty and epochs.empty:
        raise AnalysisError(f"no results in {run_dir}: results/trials and results/epochs are empty")
    n_excluded = _excluded(trials, epochs)
    config = _completed_config(trials, epochs, run_dir, n_excluded)
    epochs = epochs[epochs["trial_id"].isin(config["trial_id"])]
    known = _metric_columns(epochs, config)
    wanted = _check_metrics(metrics, known)
    claim_list, skipped = _usable_claims(claim_list, known, set(config["loss"]))
    design = _design(config)
    values = _trial_values(epochs, list(dict.fromkeys([*wanted, *(c.metric for c in claim_list)])))
    blocked = _in_blocks(config, design.blocks)
    with _quiet():
        summary = _summary(values[values["metric"].isin(wanted)].merge(config), design.cells,
                           np.random.default_rng([seed, 0]))
        block_values = blocked.merge(values)
        pairs = _pair_tests(block_values, design.blocks, alpha, np.random.default_rng([seed, 1]))
        ranks = _ranks(block_values[block_values["metric"].isin(wanted)], design.blocks, alpha)
        claim_table, unmatched = _claim_table(pairs, claim_list, design.blocks, alpha)
    result = AnalysisResult(
        summary=summary, tests=pairs[pairs["metric"].isin(wanted)].reset_index(drop=True),
        ranks=ranks, claims=claim_table, n_trials=len(trials) + n_excluded.get("unfinished", 0),
        n_completed=len(config), n_excluded=n_excluded,
        missing_pairs=_missing_pairs(blocked, design.blocks),
        skipped_claims=skipped + unmatched, alpha=alpha)
    result.paths = _write(run_dir, {"summary": summary, "tests": result.tests, "ranks": ranks,
                                    "claims": claim_table})
    return result


# --- reading ---------------------------------------------------------------------------------


def _run_claims(run_dir: str) -> list[Claim]:
    """The claims the run's sweep.yaml names under `claims:`, or the `paper` set."""
    fs, base = filesystem(run_dir)
    path = join(base, "sweep.yaml")
    if fs.get_file_info(path).type != pafs.FileType.File:
        return load_claims("paper")
    shown = join(run_dir, "sweep.yaml")
    with fs.open_input_stream(path) as stream:
        try:
            sweep = yaml.safe_load(stream.read())
        except yaml.YAMLError:
            raise AnalysisError(f"{shown}: not valid YAML") from None
    spec = sweep.get("claims") if isinstance(sweep, dict) else None
    try:
        return load_claims("paper" if spec is None else spec)
    except ClaimsError as error:
        raise ClaimsError(f"{shown}: {error}") from None


def _excluded(trials: pd.DataFrame, epochs: pd.DataFrame) -> dict[str, int]:
    """Trials left out, by status; `unfinished` ones have epochs but no trials row yet."""
    status = trials.get("status", pd.Series("completed", index=trials.index))
    counts = {str(k): int(v) for k, v in status.value_counts().items() if k != "completed"}
    if not epochs.empty:
        started = pd.Index(epochs["trial_id"].unique())
        unfinished = len(started.difference(trials.get("trial_id", pd.Index([]))))
        if unfinished:
            counts["unfinished"] = unfinished
    return counts


def _completed_config(trials: pd.DataFrame, epochs: pd.DataFrame, run_dir: str,
                      excluded: dict[str, int]) -> pd.DataFrame:
    """`trial_id`, `seed` and the config columns (those both tables carry) of completed trials."""
    if "status" in trials:
        trials = trials[trials["status"] == "completed"]
    if trials.empty or epochs.empty:
        left_out = ", ".join(f"{n} {status}" for status, n in excluded.items()) or "none run"
        raise AnalysisError(f"no completed trials with epochs in {run_dir} ({left_out})")
    columns = [c for c in trials.columns if c in epochs.columns and c not in _IDS]
    if "loss" not in columns:
        raise AnalysisError(f"{run_dir}: the results have no `loss` column")
    config = trials[["trial_id", *columns]].reset_index(drop=True)
    return config if "seed" in config else config.assign(seed=0)


def _metric_columns(epochs: pd.DataFrame, config: pd.DataFrame) -> list[str]:
    """Numeric epoch columns with data that are not config columns: the metrics."""
    return [c for c in epochs.columns
            if c not in config.columns and c not in _NOT_FACTORS
            and pd.api.types.is_numeric_dtype(epochs[c]) and not pd.api.types.is_bool_dtype(epochs[c])
            and epochs[c].notna().any()]


def _check_metrics(metrics: Sequence[str] | None, known: list[str]) -> list[str]:
    if not metrics:
        return known
    unknown = [m for m in metrics if m not in known]
    if unknown:
        raise AnalysisError(f"unknown metric {', '.join(unknown)}; known: {', '.join(known)}")
    return list(dict.fromkeys(metrics))


def _usable_claims(claims: list[Claim], metrics: list[str],
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


def _design(config: pd.DataFrame) -> _Design:
    """Factors are the config columns that vary, except those fixed by the loss (a margin only
    triplet uses, a loss's own parameters) or by the data set (its default model, its own
    parameters): those describe the loss or the data set rather than a condition."""
    varying = [c for c in config.columns if c not in _NOT_FACTORS and c not in ("loss", "dataset")
               and config[c].nunique(dropna=False) > 1]
    fixed_by = [config.groupby(key)[varying].nunique(dropna=False).max()
                for key in ("loss", "dataset") if key in config]
    blocks = [c for c in config.columns
              if c == "dataset" or (c in varying and all(counts[c] > 1 for counts in fixed_by))]
    return _Design(cells=[*blocks, "loss"], blocks=blocks)


def _trial_values(epochs: pd.DataFrame, metrics: list[str]) -> pd.DataFrame:
    """Long table `trial_id, metric, stat, value`: the final epoch's value and the mean over the
    epochs that have one (evaluation metrics are NaN on epochs that were not evaluated)."""
    epochs = epochs.reset_index(drop=True)
    final = epochs.loc[epochs.groupby("trial_id")["epoch"].idxmax(), ["trial_id", *metrics]]
    mean = epochs.groupby("trial_id", as_index=False)[metrics].mean()
    long = pd.concat([frame.melt(id_vars="trial_id", var_name="metric").assign(stat=stat)
                      for stat, frame in zip(STATS, (final, mean), strict=True)], ignore_index=True)
    return long.dropna(subset=["value"])[["trial_id", "metric", "stat", "value"]]


def _in_blocks(config: pd.DataFrame, blocks: list[str]) -> pd.DataFrame:
    """`trial_id, seed, loss` and block columns; a trial null in a block column its loss never
    sets (margin for infonce) joins every block that matches it on the other block columns, so
    a margin-free loss is compared within each margin block against its single run set."""
    config = config[["trial_id", "seed", "loss", *blocks]]
    wild = _wildcards(config, blocks)
    null = config[wild].isna()
    if not null.to_numpy().any():
        return config
    complete = ~null.any(axis=1)
    keys = config.loc[complete, blocks].drop_duplicates()
    parts = [config[complete]]
    for pattern, group in config[~complete].groupby([null[c] for c in wild]):
        nulls = [c for c, is_null in zip(wild, pattern, strict=True) if is_null]
        on = [c for c in blocks if c not in nulls]
        joined = (group.drop(columns=nulls).merge(keys, on=on) if on
                  else group.drop(columns=nulls).merge(keys[nulls].drop_duplicates(), how="cross"))
        parts += [joined, group[~group["trial_id"].isin(joined["trial_id"])]]
    return pd.concat(parts, ignore_index=True)[config.columns]


def _wildcards(config: pd.DataFrame, blocks: list[str]) -> list[str]:
    """Block columns that some losses never set (always null) and the others always set."""
    share = config[blocks].isna().groupby(config["loss"]).mean()
    return [c for c in blocks
            if share[c].isin([0.0, 1.0]).all() and (share[c] == 1).any() and (share[c] == 0).any()]


# --- statistics ------------------------------------------------------------------------------


@contextmanager
def _quiet() -> Iterator[None]:
    """scipy warns on degenerate groups (one pair, zero variance); those give NaN, documented
    in the tables' notes, so the warnings would only be noise for the user."""
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        yield


def _group_ids(frame: pd.DataFrame, keys: list[str]) -> np.ndarray:
    """Group number of each row, in the sorted order `groupby(keys).agg` returns groups."""
    if not keys:
        return np.zeros(len(frame), dtype=np.intp)
    return frame.groupby(keys, dropna=False, sort=True).ngroup().to_numpy()


def _by_size(group_ids: np.ndarray) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Groups of equal size as (group ids, G x n matrix of row positions): one vectorised scipy
    call per group size instead of one per group."""
    sizes = np.bincount(group_ids)[group_ids]
    order = np.lexsort((group_ids, sizes))
    for n in np.unique(sizes):
        rows = order[sizes[order] == n].reshape(-1, n)
        yield group_ids[rows[:, 0]], rows


def _chunks(n_rows: int, row_cost: int) -> Iterator[slice]:
    """Row slices whose scipy intermediates (row_cost elements a row) stay within _CHUNK."""
    step = max(1, _CHUNK // max(row_cost, 1))
    for start in range(0, n_rows, step):
        yield slice(start, start + step)


def _bootstrap_ci(x: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """95% bootstrap CI of each row's mean: BCa, percentile for 2 values or where BCa fails;
    [mean, mean] for constant rows, NaN for single values (no spread to resample)."""
    low, high = np.full(len(x), np.nan), np.full(len(x), np.nan)
    if x.shape[1] < 2:
        return low, high
    flat = np.ptp(x, axis=1) == 0
    low[flat] = high[flat] = x[flat, 0]
    todo = np.flatnonzero(~flat)
    bca = x.shape[1] >= 3
    low[todo], high[todo] = _mean_ci(x[todo], bca, rng)
    failed = todo[np.isnan(low[todo]) | np.isnan(high[todo])]
    if bca and len(failed):
        low[failed], high[failed] = _mean_ci(x[failed], False, rng)
    return low, high


def _mean_ci(x: np.ndarray, bca: bool, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """What `scipy.stats.bootstrap((x,), np.mean, axis=-1, vectorized=True, method=...)` gives
    (same resamples from the same generator, same BCa and linear quantiles; the tests compare),
    at a fraction of its cost: a resample's mean is its counts of each value times the row,
    so the bootstrap distribution of every row is one matrix product, not a gather of
    rows x resamples x n values and their means."""
    n = x.shape[1]
    lows, highs = [np.empty(0)], [np.empty(0)]
    for rows in _chunks(len(x), n * N_RESAMPLES):
        draws = rng.integers(0, n, (N_RESAMPLES, n))  # scipy's draw: one set for all rows
        counts = np.zeros((N_RESAMPLES, n))
        np.add.at(counts, (np.arange(N_RESAMPLES)[:, None], draws), 1.0)
        chunk = x[rows]
        theta = chunk.sum(axis=1, keepdims=True) / n
        theta_b = (chunk @ counts.T) / n
        # A resample that is a permutation of the row has exactly the row's mean; summed in
        # another order it could land an ulp either side and tip BCa's bias estimate.
        theta_b[:, (counts == 1).all(axis=1)] = theta
        levels = _bca_levels(chunk, theta, theta_b) if bca else np.broadcast_to(
            [[_ALPHA], [1 - _ALPHA]], (2, len(theta_b)))
        theta_b.sort(axis=1)
        low, high = (_linear_quantile(theta_b, level) for level in levels)
        lows.append(low)
        highs.append(high)
    return np.concatenate(lows), np.concatenate(highs)


def _bca_levels(x: np.ndarray, theta: np.ndarray, theta_b: np.ndarray) -> np.ndarray:
    """Per row, the BCa-adjusted quantile levels of the bootstrap distribution (Efron and
    Tibshirani 1993, 14.3 and 15.4; as scipy computes them): bias z0 from the share of
    resampled means below the row's mean `theta`, acceleration from the jackknife
    (leave-one-out means)."""
    n = x.shape[1]
    share = ((theta_b < theta).sum(axis=1) + (theta_b <= theta).sum(axis=1)) / (2 * theta_b.shape[1])
    z0 = special.ndtri(share)
    jackknife = (x.sum(axis=1, keepdims=True) - x) / (n - 1)
    u = (n - 1) * (jackknife.mean(axis=1, keepdims=True) - jackknife)
    with np.errstate(divide="ignore", invalid="ignore"):
        accel = (u**3).sum(axis=1) / n**3 / ((u**2).sum(axis=1) / n**2) ** 1.5 / 6
        z = np.array([special.ndtri(_ALPHA), -special.ndtri(_ALPHA)])[:, None]
        return special.ndtr(z0 + (z0 + z) / (1 - accel * (z0 + z)))


def _linear_quantile(sorted_rows: np.ndarray, level: np.ndarray) -> np.ndarray:
    """Each row's quantile at its own level (NaN level: NaN), interpolating linearly between
    order statistics (numpy's and scipy's default method)."""
    position = np.nan_to_num(level, nan=0.0) * (sorted_rows.shape[1] - 1)
    below = np.clip(np.floor(position).astype(int), 0, sorted_rows.shape[1] - 2)
    rows = np.arange(len(sorted_rows))
    lo, hi = sorted_rows[rows, below], sorted_rows[rows, below + 1]
    value = lo + (position - below) * (hi - lo)
    return np.where(np.isnan(level), np.nan, value)


def _summary(values: pd.DataFrame, cells: list[str], rng: np.random.Generator) -> pd.DataFrame:
    """Per cell, metric and stat: n, mean, std, sem and a bootstrap CI of the mean over seeds."""
    keys = [*cells, "metric", "stat"]
    table = (values.groupby(keys, dropna=False, sort=True)["value"]
             .agg(n="count", mean="mean", std="std", sem="sem").reset_index())
    x = values["value"].to_numpy(dtype=float)
    table["ci_low"], table["ci_high"] = np.nan, np.nan
    for ids, rows in _by_size(_group_ids(values, keys)):
        low, high = _bootstrap_ci(x[rows], rng)
        table.loc[ids, "ci_low"], table.loc[ids, "ci_high"] = low, high
    return table


def _paired(wide: pd.DataFrame, group: list[str]) -> pd.DataFrame:
    """Each pair of losses (the columns of `wide`, indexed by group columns and seed) side by
    side as `a` and `b`: a row per seed either has, in the groups where both have data."""
    flat = wide.reset_index()
    ids = _group_ids(flat, group)
    frames = []
    for loss_a, loss_b in combinations(sorted(wide.columns), 2):
        has = flat[[loss_a, loss_b]].notna().to_numpy()
        both_ran = np.all([np.bincount(ids, weights=has[:, i])[ids] > 0 for i in (0, 1)], axis=0)
        keep = both_ran & has.any(axis=1)
        pair = flat.loc[keep, [*group, "seed", loss_a, loss_b]]
        frames.append(pair.set_axis([*group, "seed", "a", "b"], axis=1)
                      .assign(loss_a=loss_a, loss_b=loss_b))
    return _concat(frames, [*group, "seed", "a", "b", "loss_a", "loss_b"])


def _concat(frames: list[pd.DataFrame], columns: list[str]) -> pd.DataFrame:
    """Rows of `frames` in `columns` order; an empty table with those columns when none."""
    if not frames:
        return pd.DataFrame(columns=columns)
    return pd.concat(frames, ignore_index=True)[columns]


def _pair_tests(values: pd.DataFrame, blocks: list[str], alpha: float,
                rng: np.random.Generator) -> pd.DataFrame:
    """Every pair of losses per block, metric and stat, paired by seed (tests.parquet)."""
    keys = [*blocks, "metric", "stat"]
    wide = values.groupby([*keys, "seed", "loss"], dropna=False)["value"].mean().unstack("loss")
    pairs = _paired(wide, keys)
    pairs[["a", "b"]] = pairs[["a", "b"]].astype(float)
    group = [*keys, "loss_a", "loss_b"]
    table = (pairs.groupby(group, dropna=False, sort=True)
             .agg(n_a=("a", "count"), n_b=("b", "count")).reset_index())
    both = (pairs["a"].notna() & pairs["b"].notna()).to_numpy()
    ids = _group_ids(pairs, group)[both]
    table["n_pairs"] = np.bincount(ids, minlength=len(table))
    a, b = pairs["a"].to_numpy()[both], pairs["b"].to_numpy()[both]
    for name in _PAIR_COLUMNS:
        table[name] = np.nan
    for group_ids, rows in _by_size(ids):
        for name, column in _pair_stats(a[rows], b[rows], rng).items():
            table.loc[group_ids, name] = column
    table["p_holm"] = _holm(table, keys)
    table["better"] = _better(table, alpha)
    table["note"] = _notes(table, alpha)
    return table[[*keys, *_TESTS_COLUMNS]]


def _pair_stats(a: np.ndarray, b: np.ndarray, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Paired statistics of each row of a (G x n) against the same row of b."""
    diff = a - b
    mean = diff.mean(axis=1)
    t = stats.ttest_rel(a, b, axis=1)
    w_stat, w_p = _wilcoxon(a, b)
    low, high = _bootstrap_ci(diff, rng)
    return {"mean_diff": mean, "ci_low": low, "ci_high": high, "t_stat": t.statistic,
            "t_p": t.pvalue, "w_stat": w_stat, "w_p": w_p, "d_z": mean / diff.std(axis=1, ddof=1),
            "rank_biserial": _rank_biserial(diff)}


def _wilcoxon(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """scipy's Wilcoxon signed-rank test per row. scipy picks exact / permutation / normal for a
    whole batch (by whether any row has ties or zeros), so rows are batched by that property to
    give each row the p-value scipy gives it alone. A single pair has no test (NaN)."""
    statistic, p = np.full(len(a), np.nan), np.full(len(a), np.nan)
    if a.shape[1] < 2:
        return statistic, p
    diff = np.sort(np.abs(a - b), axis=1)
    irregular = (diff[:, 0] == 0) | (np.diff(diff, axis=1) == 0).any(axis=1)
    cost = a.shape[1] * 2 ** min(a.shape[1], 13)  # a permutation test enumerates sign flips
    for rows in (np.flatnonzero(irregular), np.flatnonzero(~irregular)):
        for chunk in _chunks(len(rows), cost):
            res = stats.wilcoxon(a[rows[chunk]], b[rows[chunk]], axis=1)
            statistic[rows[chunk]], p[rows[chunk]] = res.statistic, res.pvalue
    return statistic, p


def _rank_biserial(diff: np.ndarray) -> np.ndarray:
    """Matched-pairs rank-biserial r = (R+ - R-) / (R+ + R-) over ranks of |diff|, zero
    differences dropped as in Wilcoxon's default."""
    ranks = stats.rankdata(np.where(diff == 0, np.nan, np.abs(diff)), axis=1, nan_policy="omit")
    r_plus = np.where(diff > 0, ranks, 0.0).sum(axis=1)
    r_minus = np.where(diff < 0, ranks, 0.0).sum(axis=1)
    return (r_plus - r_minus) / (r_plus + r_minus)


def _holm(table: pd.DataFrame, family: list[str], p: str = "t_p") -> np.ndarray:
    """Holm-adjusted `p` within each family (all rows when `family` is empty); NaN stays NaN.

    Equal to statsmodels' `multipletests(method="holm")` per family (a test checks it), but for
    all families in one pass: statsmodels runs gc.collect() on every call, 40 ms each, and a
    large sweep has thousands of families.
    """
    values = table[p].to_numpy(dtype=float)
    valid = np.flatnonzero(~np.isnan(values))
    frame = pd.DataFrame({"family": _group_ids(table, family)[valid], "p": values[valid]})
    frame = frame.sort_values(["family", "p"], kind="stable")
    by_family = frame.groupby("family", sort=False)
    frame["p"] *= by_family["p"].transform("size") - by_family.cumcount()
    adjusted = np.full(len(values), np.nan)
    adjusted[valid[frame.index]] = frame.groupby("family", sort=False)["p"].cummax().clip(upper=1)
    return adjusted


def _better(table: pd.DataFrame, alpha: float) -> np.ndarray:
    """The loss with the significantly higher value (lower for losses and times), else None."""
    higher_is_a = table["mean_diff"] > 0
    if_higher = np.where(higher_is_a, table["loss_a"], table["loss_b"])
    if_lower = np.where(higher_is_a, table["loss_b"], table["loss_a"])
    choice = np.where(table["metric"].isin(LOWER_IS_BETTER), if_lower, if_higher)
    return np.where(table["p_holm"] < alpha, choice, None)


def _notes(table: pd.DataFrame, alpha: float) -> np.ndarray:
    """Per row: too few pairs for Wilcoxon to reach alpha, and seeds left unpaired."""
    n_pairs = table["n_pairs"]
    needs = ((2.0 ** (1 - n_pairs) >= alpha) | (table["n_a"] > n_pairs)
             | (table["n_b"] > n_pairs)).to_numpy()
    notes = np.full(len(table), "", dtype=object)
    columns = [table.loc[needs, c] for c in ("loss_a", "loss_b", "n_a", "n_b", "n_pairs")]
    notes[needs] = [_note(*row, alpha) for row in zip(*columns, strict=True)]
    return notes


def _note(loss_a: str, loss_b: str, n_a: int, n_b: int, n_pairs: int, alpha: float) -> str:
    parts = []
    if n_pairs == 0:
        parts.append("no paired seeds")
    elif 2.0 ** (1 - n_pairs) >= alpha:
        parts.append(f"{n_pairs} pair{'s' * (n_pairs > 1)}: Wilcoxon cannot reach p < {alpha:g}")
    for loss, other, n in ((loss_a, loss_b, n_a), (loss_b, loss_a, n_b)):
        if n > n_pairs:
            parts.append(f"{n - n_pairs} {loss} seed(s) without {other}")
    return "; ".join(parts)


def _ranks(values: pd.DataFrame, blocks: list[str], alpha: float) -> pd.DataFrame:
    """Per metric and stat: Friedman test over blocks of seed-averaged cell means, each loss's
    mean rank and the Nemenyi critical difference."""
    means = values.groupby([*blocks, "metric", "stat", "loss"], dropna=False)["value"].mean()
    means = means.reset_index()
    means["block"] = _group_ids(means, blocks)
    rows = []
    for (metric, stat), frame in means.groupby(["metric", "stat"], sort=True):
        table = frame.pivot(index="block", columns="loss", values="value")
        rows += _rank_rows(table, str(metric), str(stat), alpha)
    return pd.DataFrame(rows, columns=_RANK_COLUMNS)


def _rank_rows(table: pd.DataFrame, metric: str, stat: str, alpha: float) -> list[dict[str, Any]]:
    complete = table.dropna().to_numpy()
    n, k = complete.shape
    lower = metric in LOWER_IS_BETTER
    notes = ["rank 1 = lowest value (lower is better)" if lower else "rank 1 = highest value"]
    if len(table) > n:
        notes.append(f"{len(table) - n} of {len(table)} blocks left out: not every loss ran")
    friedman, p, cd = math.nan, math.nan, math.nan
    if n < 2:
        notes.append("Friedman test needs at least 2 complete blocks")
    elif k < 3:
        notes.append("Friedman test needs at least 3 losses")
    if n >= 2 and k >= 3:
        friedman, p = stats.friedmanchisquare(*complete.T)
    if n >= 2 and k >= 2:
        cd = _nemenyi_q(k, alpha) * math.sqrt(k * (k + 1) / (6 * n))
    ranks = (stats.rankdata(complete if lower else -complete, axis=1).mean(axis=0) if n
             else np.full(k, np.nan))
    return [{"metric": metric, "stat": stat, "loss": loss, "mean_rank": rank, "n_blocks": n,
             "friedman_stat": friedman, "friedman_p": p, "cd": cd, "note": "; ".join(notes)}
            for loss, rank in zip(table.columns, ranks, strict=True)]


@functools.lru_cache
def _nemenyi_q(k: int, alpha: float) -> float:
    """Studentized range quantile over sqrt(2), the q_alpha of the Nemenyi test (Demšar 2006)."""
    return float(stats.studentized_range.ppf(1 - alpha, k, np.inf) / math.sqrt(2))


# --- claims ----------------------------------------------------------------------------------


def _claim_table(pairs: pd.DataFrame, claims: list[Claim], blocks: list[str],
                 alpha: float) -> tuple[pd.DataFrame, list[dict[str, str]]]:
    """Each claim per block from the pair tests, oriented as the claim states it, with Holm
    over every claim row together; claims whose losses never share a block are returned apart."""
    frames, unmatched = [], []
    for claim in claims:
        forward = (pairs["loss_a"] == claim.a) & (pairs["loss_b"] == claim.b)
        backward = (pairs["loss_a"] == claim.b) & (pairs["loss_b"] == claim.a)
        rows = pairs[(pairs["metric"] == claim.metric) & (pairs["stat"] == claim.stat)
                     & (forward | backward)]
        if rows.empty:
            unmatched.append({"claim": claim.name,
                              "reason": f"{claim.a} and {claim.b} never ran in the same block"})
            continue
        flip = (rows["loss_a"] != claim.a).to_numpy()
        sign = np.where(flip, -1.0, 1.0)
        frames.append(rows[blocks].assign(
            claim=claim.name, metric=claim.metric, stat=claim.stat, loss_a=claim.a,
            loss_b=claim.b, direction=claim.direction, n_pairs=rows["n_pairs"],
            mean_diff=sign * rows["mean_diff"],
            ci_low=np.where(flip, -rows["ci_high"], rows["ci_low"]),
            ci_high=np.where(flip, -rows["ci_low"], rows["ci_high"]), t_p=rows["t_p"],
            note=rows["note"]))
    table = _concat(frames, ["claim", *blocks, "metric", "stat", "loss_a", "loss_b", "direction",
                             "n_pairs", "mean_diff", "ci_low", "ci_high", "t_p", "note"])
    table[["mean_diff", "ci_low", "ci_high", "t_p"]] = table[
        ["mean_diff", "ci_low", "ci_high", "t_p"]].astype(float)
    table["p_holm"] = _holm(table, [])
    table["verdict"] = _verdicts(table, alpha)
    return table[[*table.columns.drop(["note"]), "note"]], unmatched


def _verdicts(table: pd.DataFrame, alpha: float) -> np.ndarray:
    """supported / contradicted when Holm's p < alpha and the difference has the claimed /
    the opposite sign; inconclusive otherwise."""
    claimed = np.where(table["direction"] == "greater", 1.0, -1.0) * table["mean_diff"]
    significant = table["p_holm"] < alpha
    return np.select([significant & (claimed > 0), significant & (claimed < 0)],
                     ["supported", "contradicted"], "inconclusive")


def _missing_pairs(blocked: pd.DataFrame, blocks: list[str]) -> list[dict[str, Any]]:
    """Seeds that one loss of a pair has in a block and the other lacks (failed, diverged or
    not run): such trials cannot be paired and are listed rather than silently dropped."""
    ran = blocked.groupby([*blocks, "seed", "loss"], dropna=False).size().unstack("loss")
    pairs = _paired(ran, blocks)
    lone = pairs[pairs["a"].isna() | pairs["b"].isna()]
    missing = np.where(lone["a"].isna(), lone["loss_a"], lone["loss_b"])
    frame = lone[[*blocks, "seed", "loss_a", "loss_b"]].assign(missing=missing)
    return json.loads(frame.to_json(orient="records"))


# --- output ----------------------------------------------------------------------------------


def _write(run_dir: str, tables: dict[str, pd.DataFrame]) -> dict[str, str]:
    """Each table to `<run_dir>/analysis/<name>.parquet`, atomically (local or s3://)."""
    fs, base = filesystem(run_dir)
    paths = {}
    for name, frame in tables.items():
        arrow = pa.Table.from_pandas(frame, preserve_index=False)
        write_atomic(fs, join(base, "analysis", f"{name}.parquet"),
                     lambda stream, arrow=arrow: pq.write_table(arrow, stream))
        paths[name] = join(run_dir, "analysis", f"{name}.parquet")
    return paths


def _significant(result: AnalysisResult) -> pd.DataFrame:
    tests = result.tests
    return tests[tests["p_holm"] < result.alpha].sort_values("p_holm", kind="stable")


def format_result(result: AnalysisResult, max_rows: int = 20) -> str:
    """The compact text the CLI prints: trial counts, claim verdicts, the most significant
    differences, unpaired seeds and the files written."""
    excluded = ", ".join(f"{n} {status}" for status, n in result.n_excluded.items())
    lines = [f"analysed {result.n_completed} of {result.n_trials} trials"
             + (f" (excluded: {excluded})" if excluded else "")]
    claims = result.claims
    lines.append(f"claims: {len(claims)} tests (paired t-test, Holm over all claim tests, "
                 f"alpha {result.alpha:g})")
    for name, verdicts in claims.groupby("claim", sort=False)["verdict"]:
        tally = ", ".join(f"{n} {verdict}" for verdict, n in verdicts.value_counts().items())
        lines.append(f"  {name}: {tally}")
    if not claims.empty:
        shown = claims.drop(columns=["metric", "stat", "loss_a", "loss_b", "direction", "ci_low",
                                     "ci_high", "t_p", "note"])
        lines.append(_text(shown, max_rows))
    lines += [f"  skipped: {s['claim']} ({s['reason']})" for s in result.skipped_claims]
    significant = _significant(result)
    lines.append(f"significant differences: {len(significant)} of {len(result.tests)} tests "
                 f"(p_holm < {result.alpha:g}, Holm within block x metric x stat)")
    if not significant.empty:
        columns = [c for c in significant.columns if c not in _PAIR_COLUMNS or c == "mean_diff"]
        shown = significant[columns].drop(columns=["n_pairs", "note"])
        lines.append(_text(shown, max_rows))
    if result.missing_pairs:
        lines.append(f"unpaired seeds: {len(result.missing_pairs)}")
        lines += [f"  {_unpaired(entry)}" for entry in result.missing_pairs[:3]]
        lines += ["  ..."] if len(result.missing_pairs) > 3 else []
    lines.append("wrote:")
    lines += [f"  {path}" for path in result.paths.values()]
    return "\n".join(lines)


def _unpaired(entry: dict[str, Any]) -> str:
    """`dataset=digits margin=0.2 seed 4: triplet has no contrastive run`."""
    block = " ".join(f"{k}={v}" for k, v in entry.items()
                     if k not in ("seed", "loss_a", "loss_b", "missing"))
    present = entry["loss_b"] if entry["missing"] == entry["loss_a"] else entry["loss_a"]
    return f"{block} seed {entry['seed']}: {present} has no {entry['missing']} run".lstrip()


def _text(frame: pd.DataFrame, max_rows: int) -> str:
    text = frame.head(max_rows).to_string(index=False, float_format=lambda v: f"{v:.4g}")
    more = len(frame) - max_rows
    return text + (f"\n  ... {more} more" if more > 0 else "")


def result_json(result: AnalysisResult) -> dict[str, Any]:
    """Everything `format_result` shows, as plain JSON types (for `--format json`)."""
    return {
        "n_trials": result.n_trials,
        "n_completed": result.n_completed,
        "n_excluded": result.n_excluded,
        "alpha": result.alpha,
        "claims": json.loads(result.claims.to_json(orient="records")),
        "skipped_claims": result.skipped_claims,
        "significant": json.loads(_significant(result).to_json(orient="records")),
        "n_tests": len(result.tests),
        "missing_pairs": result.missing_pairs,
        "paths": result.paths,
    }
