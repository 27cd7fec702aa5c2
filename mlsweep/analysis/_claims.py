"""The claims table: each claim per comparison from the paired tests, Holm over all claim rows,
a verdict per row, and tallies that count each set of runs once."""

from __future__ import annotations

import numpy as np
import pandas as pd

from mlsweep.analysis._design import Design
from mlsweep.analysis._stats import holm
from mlsweep.analysis._tables import concat
from mlsweep.claims import Claim

VERDICTS = ("supported", "contradicted", "inconclusive")
_FLOATS = ["mean_diff", "ci_low", "ci_high", "t_p"]


def claim_table(pairs: pd.DataFrame, claims: list[Claim], design: Design,
                alpha: float) -> tuple[pd.DataFrame, list[dict[str, str]]]:
    """Each claim per comparison of its two losses (a row of the tests), oriented as the claim
    states it, with Holm over every claim row together; claims whose losses are never compared
    are returned apart. A claim on the mean of a metric evaluated once tests its final value
    (the same number). Rows that share the runs of one loss (a margin-free loss against each
    margin of the other) get one `unit`: tallies count a unit once."""
    frames, unmatched, units = [], [], 0
    for claim in claims:
        of_metric = pairs[pairs["metric"] == claim.metric]
        stat = claim.stat if (of_metric["stat"] == claim.stat).any() else "final"
        forward = (of_metric["loss_a"] == claim.a) & (of_metric["loss_b"] == claim.b)
        backward = (of_metric["loss_a"] == claim.b) & (of_metric["loss_b"] == claim.a)
        rows = of_metric[(of_metric["stat"] == stat) & (forward | backward)]
        if rows.empty:
            unmatched.append({"claim": claim.name,
                              "reason": f"{claim.a} and {claim.b} never ran in the same block"})
            continue
        flip = (rows["loss_a"] != claim.a).to_numpy()
        unit_keys = [*design.blocks, *design.shared(claim.a, claim.b)]
        unit = (rows.groupby(unit_keys, dropna=False, sort=True).ngroup().to_numpy()
                if unit_keys else np.zeros(len(rows), dtype=int))
        frames.append(rows[design.factors].assign(
            claim=claim.name, metric=claim.metric, stat=stat, loss_a=claim.a, loss_b=claim.b,
            direction=claim.direction, n_pairs=rows["n_pairs"],
            mean_diff=np.where(flip, -1.0, 1.0) * rows["mean_diff"],
            ci_low=np.where(flip, -rows["ci_high"], rows["ci_low"]),
            ci_high=np.where(flip, -rows["ci_low"], rows["ci_high"]), t_p=rows["t_p"],
            unit=units + unit, note=rows["note"]))
        units += int(unit.max()) + 1
    table = concat(frames, ["claim", *design.factors, "metric", "stat", "loss_a", "loss_b",
                            "direction", "n_pairs", *_FLOATS, "unit", "note"])
    table[_FLOATS] = table[_FLOATS].astype(float)
    table["p_holm"] = holm(table, [])
    table["holm_family"] = f"all claims · {int(table['t_p'].notna().sum())} tests"
    table["verdict"] = _verdicts(table, alpha)
    return table[[*table.columns.drop(["unit", "note"]), "unit", "note"]], unmatched


def _verdicts(table: pd.DataFrame, alpha: float) -> np.ndarray:
    """supported / contradicted when Holm's p < alpha and the difference has the claimed /
    the opposite sign; inconclusive otherwise."""
    claimed = np.where(table["direction"] == "greater", 1.0, -1.0) * table["mean_diff"]
    significant = table["p_holm"] < alpha
    return np.select([significant & (claimed > 0), significant & (claimed < 0)],
                     ["supported", "contradicted"], "inconclusive")


def claim_tally(claims: pd.DataFrame) -> pd.DataFrame:
    """`claim, verdict, units, rows` per claim and verdict, claims in table order: a unit (rows
    sharing one loss's runs) counts once, with its rows' common verdict, or inconclusive when
    its rows disagree."""
    columns = ["claim", "verdict", "units", "rows"]
    if claims.empty:
        return pd.DataFrame(columns=columns)
    per_unit = claims.groupby(["claim", "unit"], sort=False)["verdict"].agg(
        verdict=lambda v: v.iloc[0] if v.nunique() == 1 else "inconclusive", rows="size")
    tally = (per_unit.groupby(["claim", "verdict"], sort=False)
             .agg(units=("rows", "size"), rows=("rows", "sum")).reset_index())
    return tally[columns]
