"""What `analyze` writes and prints: the Parquet tables, the CLI text and its JSON twin.

Every p-value printed says its Holm family: claims are corrected over all claim tests together,
the tests table within block x metric x stat (its `holm_family` column names the family).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from mlsweep.analysis._claims import claim_tally
from mlsweep.analysis._tables import PAIR_COLUMNS
from mlsweep.results import filesystem, join, write_atomic


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


def write(folder: str, tables: dict[str, pd.DataFrame]) -> dict[str, str]:
    """Each table to `<folder>/<name>.parquet`, atomically (local or s3://)."""
    fs, base = filesystem(folder)
    paths = {}
    for name, frame in tables.items():
        arrow = pa.Table.from_pandas(frame, preserve_index=False)
        write_atomic(fs, join(base, f"{name}.parquet"),
                     lambda stream, arrow=arrow: pq.write_table(arrow, stream))
        paths[name] = join(folder, f"{name}.parquet")
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
    lines.append(f"claims: {len(claims)} tests (paired t-test; p_holm: Holm over all "
                 f"{len(claims)} claim tests, alpha {result.alpha:g})")
    for name, tally in claim_tally(claims).groupby("claim", sort=False):
        counts = ", ".join(f"{row.units} {row.verdict}" for row in tally.itertuples())
        rows, units = int(tally["rows"].sum()), int(tally["units"].sum())
        shared = f" (from {rows} comparisons; those sharing one loss's runs count once)" * (rows > units)
        lines.append(f"  {name}: {counts}{shared}")
    if not claims.empty:
        shown = claims.drop(columns=["metric", "stat", "loss_a", "loss_b", "direction", "ci_low",
                                     "ci_high", "t_p", "holm_family", "unit", "note"])
        lines.append(_text(shown, max_rows))
    lines += [f"  skipped: {s['claim']} ({s['reason']})" for s in result.skipped_claims]
    significant = _significant(result)
    lines.append(f"significant differences: {len(significant)} of {len(result.tests)} tests "
                 f"(p_holm < {result.alpha:g}; p_holm: Holm within block x metric x stat, "
                 "its family in holm_family; not the claims' correction)")
    if not significant.empty:
        columns = [c for c in significant.columns if c not in PAIR_COLUMNS or c == "mean_diff"]
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
                     if k not in ("seed", "loss_a", "loss_b", "missing") and v is not None)
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
        "claim_tally": json.loads(claim_tally(result.claims).to_json(orient="records")),
        "skipped_claims": result.skipped_claims,
        "significant": json.loads(_significant(result).to_json(orient="records")),
        "n_tests": len(result.tests),
        "missing_pairs": result.missing_pairs,
        "paths": result.paths,
    }
