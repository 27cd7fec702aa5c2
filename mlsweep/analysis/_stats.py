"""Statistics kernels: bootstrap CIs, paired tests, Wilcoxon, Holm, Friedman and Nemenyi.

Vectorised over groups: scipy runs once per group size on stacked groups, never once per group.
"""

from __future__ import annotations

import functools
import math
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import pandas as pd
from scipy import special, stats

N_RESAMPLES = 2000
_ALPHA = 0.025  # each tail of the 95% bootstrap CIs
_CHUNK = 10_000_000  # array elements per vectorised scipy call (80 MB of float64)


@contextmanager
def quiet() -> Iterator[None]:
    """scipy warns on degenerate groups (one pair, zero variance); those give NaN, documented
    in the tables' notes, so the warnings would only be noise for the user."""
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        yield


def group_ids(frame: pd.DataFrame, keys: list[str]) -> np.ndarray:
    """Group number of each row, in the sorted order `groupby(keys).agg` returns groups."""
    if not keys:
        return np.zeros(len(frame), dtype=np.intp)
    return frame.groupby(keys, dropna=False, sort=True).ngroup().to_numpy()


def by_size(ids: np.ndarray) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Groups of equal size as (group ids, G x n matrix of row positions): one vectorised scipy
    call per group size instead of one per group."""
    sizes = np.bincount(ids)[ids]
    order = np.lexsort((ids, sizes))
    for n in np.unique(sizes):
        rows = order[sizes[order] == n].reshape(-1, n)
        yield ids[rows[:, 0]], rows


def _chunks(n_rows: int, row_cost: int) -> Iterator[slice]:
    """Row slices whose scipy intermediates (row_cost elements a row) stay within _CHUNK."""
    step = max(1, _CHUNK // max(row_cost, 1))
    for start in range(0, n_rows, step):
        yield slice(start, start + step)


def bootstrap_ci(x: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
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


def pair_stats(a: np.ndarray, b: np.ndarray, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Paired statistics of each row of a (G x n) against the same row of b."""
    diff = a - b
    mean = diff.mean(axis=1)
    t = stats.ttest_rel(a, b, axis=1)
    w_stat, w_p = _wilcoxon(a, b)
    low, high = bootstrap_ci(diff, rng)
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


def holm(table: pd.DataFrame, family: list[str], p: str = "t_p") -> np.ndarray:
    """Holm-adjusted `p` within each family (all rows when `family` is empty); NaN stays NaN.

    Equal to statsmodels' `multipletests(method="holm")` per family (a test checks it), but for
    all families in one pass: statsmodels runs gc.collect() on every call, 40 ms each, and a
    large sweep has thousands of families.
    """
    values = table[p].to_numpy(dtype=float)
    valid = np.flatnonzero(~np.isnan(values))
    frame = pd.DataFrame({"family": group_ids(table, family)[valid], "p": values[valid]})
    frame = frame.sort_values(["family", "p"], kind="stable")
    by_family = frame.groupby("family", sort=False)
    frame["p"] *= by_family["p"].transform("size") - by_family.cumcount()
    adjusted = np.full(len(values), np.nan)
    adjusted[valid[frame.index]] = frame.groupby("family", sort=False)["p"].cummax().clip(upper=1)
    return adjusted


@functools.lru_cache
def nemenyi_q(k: int, alpha: float) -> float:
    """Studentized range quantile over sqrt(2), the q_alpha of the Nemenyi test (Demšar 2006)."""
    return float(stats.studentized_range.ppf(1 - alpha, k, np.inf) / math.sqrt(2))
