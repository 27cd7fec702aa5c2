"""The summary, tests and ranks tables, and the seeds left unpaired, from per-trial values.

Each completed trial is one row of `values` (per metric and stat) with its factors, loss and
arm (see _design): summaries are per cell, paired tests per pair of compatible arms within a
block, ranks per block over the arms.
"""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from mlsweep.analysis._design import Design, show
from mlsweep.analysis._read import better
from mlsweep.analysis._stats import bootstrap_ci, by_size, group_ids, holm, nemenyi_q, pair_stats

PAIR_COLUMNS = ("mean_diff", "ci_low", "ci_high", "t_stat", "t_p", "w_stat", "w_p", "d_z",
                "rank_biserial")
TESTS_COLUMNS = ["loss_a", "loss_b", "n_pairs", "mean_diff", "ci_low", "ci_high", "t_stat", "t_p",
                 "w_stat", "w_p", "p_holm", "holm_family", "d_z", "rank_biserial", "better", "note"]
_RANK_STATS = ["mean_rank", "n_blocks", "friedman_stat", "friedman_p", "cd", "note"]


def arm_table(config: pd.DataFrame, design: Design) -> pd.DataFrame:
    """One row per arm (index: its label): its loss and its values of the arm factors."""
    frame = config.assign(arm=design.arms(config)).drop_duplicates("arm").set_index("arm")
    return frame[["loss", *design.arm_factors]]


def summary(values: pd.DataFrame, cells: list[str], rng: np.random.Generator) -> pd.DataFrame:
    """Per cell, metric and stat: n, mean, std, sem and a bootstrap CI of the mean over seeds."""
    keys = [*cells, "metric", "stat"]
    table = (values.groupby(keys, dropna=False, sort=True)["value"]
             .agg(n="count", mean="mean", std="std", sem="sem").reset_index())
    x = values["value"].to_numpy(dtype=float)
    table["ci_low"], table["ci_high"] = np.nan, np.nan
    for ids, rows in by_size(group_ids(values, keys)):
        low, high = bootstrap_ci(x[rows], rng)
        table.loc[ids, "ci_low"], table.loc[ids, "ci_high"] = low, high
    return table


def _paired(wide: pd.DataFrame, group: list[str], design: Design,
            arms: pd.DataFrame) -> pd.DataFrame:
    """Each compared pair of arms (the columns of `wide`, indexed by group columns and seed)
    side by side as `a` and `b`: a row per seed either has, in the groups where both have data.
    The arm factors take the value whichever arm sets (both agree where both do)."""
    flat = wide.reset_index()
    ids = group_ids(flat, group)
    frames = []
    for arm_a, arm_b in design.arm_pairs(arms.loc[list(wide.columns)]):
        has = flat[[arm_a, arm_b]].notna().to_numpy()
        both_ran = np.all([np.bincount(ids, weights=has[:, i])[ids] > 0 for i in (0, 1)], axis=0)
        keep = both_ran & has.any(axis=1)
        pair = flat.loc[keep, [*group, "seed", arm_a, arm_b]].set_axis([*group, "seed", "a", "b"], axis=1)
        a, b = arms.loc[arm_a], arms.loc[arm_b]
        settings = {f: a[f] if pd.notna(a[f]) else b[f] for f in design.arm_factors}
        frames.append(pair.assign(loss_a=a["loss"], loss_b=b["loss"], **settings))
    return concat(frames, [*group, *design.arm_factors, "seed", "a", "b", "loss_a", "loss_b"])


def concat(frames: list[pd.DataFrame], columns: list[str]) -> pd.DataFrame:
    """Rows of `frames` in `columns` order; an empty table with those columns when none."""
    if not frames:
        return pd.DataFrame(columns=columns)
    return pd.concat(frames, ignore_index=True)[columns]


def pair_tests(values: pd.DataFrame, design: Design, arms: pd.DataFrame, alpha: float,
               rng: np.random.Generator) -> pd.DataFrame:
    """Every compared pair of arms per block, metric and stat, paired by seed (tests.parquet);
    Holm within block x metric x stat."""
    keys = [*design.blocks, "metric", "stat"]
    wide = values.groupby([*keys, "seed", "arm"], dropna=False)["value"].mean().unstack("arm")
    pairs = _paired(wide, keys, design, arms)
    pairs[["a", "b"]] = pairs[["a", "b"]].astype(float)
    group = [*keys, *design.arm_factors, "loss_a", "loss_b"]
    table = (pairs.groupby(group, dropna=False, sort=True)
             .agg(n_a=("a", "count"), n_b=("b", "count")).reset_index())
    both = (pairs["a"].notna() & pairs["b"].notna()).to_numpy()
    ids = group_ids(pairs, group)[both]
    table["n_pairs"] = np.bincount(ids, minlength=len(table))
    a, b = pairs["a"].to_numpy()[both], pairs["b"].to_numpy()[both]
    for name in PAIR_COLUMNS:
        table[name] = np.nan
    for rows_of, rows in by_size(ids):
        for name, column in pair_stats(a[rows], b[rows], rng).items():
            table.loc[rows_of, name] = column
    table["p_holm"] = holm(table, keys)
    table["holm_family"] = family_labels(table, design.blocks)
    table["better"] = _better(table, alpha)
    table["note"] = _notes(table, alpha)
    return table[[*design.factors, "metric", "stat", *TESTS_COLUMNS]]


def family_labels(table: pd.DataFrame, blocks: list[str]) -> pd.Series:
    """The Holm family of each test row, as printed beside its p_holm:
    `dataset=digits lr=0.01 · map_at_r final · 6 tests`."""
    keys = [*blocks, "metric", "stat"]
    ids = group_ids(table, keys)
    size = np.bincount(ids, weights=table["t_p"].notna().to_numpy(), minlength=ids.max(initial=-1) + 1)
    parts = [table[c].map(lambda v, c=c: f"{c}={show(v)}") for c in blocks]
    block = parts[0].str.cat(parts[1:], sep=" ") if parts else pd.Series("", index=table.index)
    tests = pd.Series(size[ids].astype(int), index=table.index).astype(str) + " tests"
    return block + " · " + table["metric"] + " " + table["stat"] + " · " + tests


def _better(table: pd.DataFrame, alpha: float) -> np.ndarray:
    """The loss significantly better by the metric's catalog direction; None when the difference
    is not significant or the metric has no better side (variance, greediness)."""
    direction = table["metric"].map(better)
    higher_is_a = table["mean_diff"] > 0
    if_higher = np.where(higher_is_a, table["loss_a"], table["loss_b"])
    if_lower = np.where(higher_is_a, table["loss_b"], table["loss_a"])
    choice = np.where(direction == "lower", if_lower, if_higher)
    return np.where((table["p_holm"] < alpha) & direction.notna(), choice, None)


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
        parts.append(f"{n_pairs} pair{'s' * (n_pairs > 1)}: Wilcoxon cannot reach p < {alpha:g}, "
                     "p_holm and verdicts rest on the paired t-test")
    for loss, other, n in ((loss_a, loss_b, n_a), (loss_b, loss_a, n_b)):
        if n > n_pairs:
            parts.append(f"{n - n_pairs} {loss} seed(s) without {other}")
    return "; ".join(parts)


def ranks(values: pd.DataFrame, design: Design, arms: pd.DataFrame, alpha: float) -> pd.DataFrame:
    """Per metric and stat: Friedman test over blocks of seed-averaged arm means, each arm's
    mean rank and the Nemenyi critical difference. Blocks share no trial."""
    means = values.groupby([*design.blocks, "metric", "stat", "arm"], dropna=False)["value"].mean()
    means = means.reset_index()
    means["block"] = group_ids(means, design.blocks)
    rows = []
    for (metric, stat), frame in means.groupby(["metric", "stat"], sort=True):
        table = frame.pivot(index="block", columns="arm", values="value")
        table = table[arms.loc[table.columns].sort_values(
            ["loss", *design.arm_factors], na_position="first").index]
        rows += _rank_rows(table, str(metric), str(stat), alpha)
    columns = ["metric", "stat", "arm", *_RANK_STATS]
    frame = pd.DataFrame(rows, columns=columns).merge(arms, left_on="arm", right_index=True, how="left")
    return frame[["metric", "stat", "loss", *design.arm_factors, *_RANK_STATS]]


def _rank_rows(table: pd.DataFrame, metric: str, stat: str, alpha: float) -> list[dict[str, Any]]:
    complete = table.dropna().to_numpy()
    n, k = complete.shape
    direction = better(metric)
    lower = direction == "lower"
    notes = ["rank 1 = lowest value (lower is better)" if lower else
             "rank 1 = highest value" + ("" if direction else " (no better side)")]
    if len(table) > n:
        notes.append(f"{len(table) - n} of {len(table)} blocks left out: not every arm ran")
    friedman, p, cd = math.nan, math.nan, math.nan
    if n < 2:
        notes.append("Friedman test needs at least 2 complete blocks")
    elif k < 3:
        notes.append("Friedman test needs at least 3 arms")
    if n >= 2 and k >= 3:
        friedman, p = stats.friedmanchisquare(*complete.T)
    if n >= 2 and k >= 2:
        cd = nemenyi_q(k, alpha) * math.sqrt(k * (k + 1) / (6 * n))
    mean_ranks = (stats.rankdata(complete if lower else -complete, axis=1).mean(axis=0) if n
                  else np.full(k, np.nan))
    return [{"metric": metric, "stat": stat, "arm": arm, "mean_rank": rank, "n_blocks": n,
             "friedman_stat": friedman, "friedman_p": p, "cd": cd, "note": "; ".join(notes)}
            for arm, rank in zip(table.columns, mean_ranks, strict=True)]


def missing_pairs(config: pd.DataFrame, design: Design, arms: pd.DataFrame) -> list[dict[str, Any]]:
    """Seeds that one arm of a compared pair has in a block and the other lacks (failed,
    diverged or not run): such trials cannot be paired and are listed, not silently dropped."""
    ran = config.groupby([*design.blocks, "seed", "arm"], dropna=False).size().unstack("arm")
    pairs = _paired(ran, design.blocks, design, arms)
    lone = pairs[pairs["a"].isna() | pairs["b"].isna()]
    missing = np.where(lone["a"].isna(), lone["loss_a"], lone["loss_b"])
    frame = lone[[*design.factors, "seed", "loss_a", "loss_b"]].assign(missing=missing)
    return json.loads(frame.to_json(orient="records"))
