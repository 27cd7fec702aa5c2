"""Seed-paired statistics over a sweep's results: summaries, loss comparisons, ranks, claims.

Each completed trial's epoch curve is reduced to two numbers per metric: its value at the final
epoch (`stat = final`) and its mean over epochs (`stat = mean`; left out for a metric evaluated
once, where both are one number). docs/analysis.md says how cells, blocks, arms and Holm
families are formed: each trial lies in one block and one arm, so no rank test, summary or
tally uses a trial twice. Within a block two arms are compared on the seeds both ran (every
loss and seed sees the same data split), so seed-to-seed variation cancels out of the
difference. Only metrics the catalog marks comparable are tested and ranked.

Tests and claims use the paired t-test p-value (Holm-corrected): with the 3 to 10 seeds a sweep
usually has, an exact Wilcoxon test cannot go below 2 / 2**n (0.0625 at n = 5), so it could never
support a claim after Holm. The Wilcoxon test is reported alongside as a check that does not rest
on normally distributed differences.

Modules: _design (cells, blocks, arms), _stats (kernels), _read (the run folder), _tables
(summary, tests, ranks), _claims (claims and tallies), _output (files, text, JSON).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from mlsweep.analysis._claims import VERDICTS, claim_table, claim_tally
from mlsweep.analysis._design import Design
from mlsweep.analysis._output import AnalysisResult, format_result, result_json, write
from mlsweep.analysis._read import (
    AnalysisError,
    better,
    check_metrics,
    comparable,
    completed_config,
    excluded,
    metric_columns,
    run_claims,
    trial_values,
    usable_claims,
)
from mlsweep.analysis._stats import quiet
from mlsweep.analysis._tables import arm_table, missing_pairs, pair_tests, ranks, summary
from mlsweep.claims import Claim, ClaimsError, load_claims
from mlsweep.results import read_results
from mlsweep.runfolder import RunFolder

__all__ = [
    "VERDICTS",
    "AnalysisError",
    "AnalysisResult",
    "Claim",
    "ClaimsError",
    "Design",
    "analyze",
    "better",
    "claim_tally",
    "comparable",
    "format_result",
    "load_claims",
    "result_json",
]


def analyze(run_dir: str, metrics: Sequence[str] | None = None, alpha: float = 0.05,
            claims: str | Sequence[dict[str, Any] | Claim] | None = None,
            seed: int = 0, out: str | None = None) -> AnalysisResult:
    """Analyse a run folder and write `analysis/{summary,tests,ranks,claims}.parquet` in it
    (or `{summary,...}.parquet` in the folder `out`, for a run folder one cannot write).

    `metrics` chooses the summary's metrics; of those, the comparable ones are tested and
    ranked. `claims` defaults to the `claims:` of the run's sweep.yaml, else the `paper` set;
    claims naming a loss or metric the run lacks are skipped and listed, not errors. `seed`
    seeds the bootstrap, so the same results give the same intervals.
    """
    if not 0 < alpha < 1:
        raise AnalysisError(f"alpha must be between 0 and 1, not {alpha}")
    claim_list = run_claims(run_dir) if claims is None else load_claims(claims)
    trials, epochs = read_results(run_dir, "trials"), read_results(run_dir, "epochs")
    if trials.empty and epochs.empty:
        raise AnalysisError(f"no results in {run_dir}: results/trials and results/epochs are empty")
    n_excluded = excluded(trials, epochs)
    config = completed_config(trials, epochs, run_dir, n_excluded)
    epochs = epochs[epochs["trial_id"].isin(config["trial_id"])]
    known = metric_columns(epochs, config)
    wanted = check_metrics(metrics, known)
    compared = [m for m in wanted if comparable(m)]
    claim_list, skipped = usable_claims(claim_list, known, set(config["loss"]))
    design = Design.of_config(config)
    config = config[["trial_id", "seed", *design.cells]]
    config = config.assign(arm=design.arms(config))
    arms = arm_table(config, design)
    values = trial_values(epochs, list(dict.fromkeys([*wanted, *(c.metric for c in claim_list)])))
    with quiet():
        summary_table = summary(values[values["metric"].isin(wanted)].merge(config.drop(columns="arm")),
                                design.cells, np.random.default_rng([seed, 0]))
        arm_values = config.merge(values)
        tested = arm_values[arm_values["metric"].isin([*compared, *(c.metric for c in claim_list)])]
        pairs = pair_tests(tested, design, arms, alpha, np.random.default_rng([seed, 1]))
        rank_table = ranks(arm_values[arm_values["metric"].isin(compared)], design, arms, alpha)
        claims_table, unmatched = claim_table(pairs, claim_list, design, alpha)
    result = AnalysisResult(
        summary=summary_table, tests=pairs[pairs["metric"].isin(compared)].reset_index(drop=True),
        ranks=rank_table, claims=claims_table,
        n_trials=len(trials) + n_excluded.get("unfinished", 0), n_completed=len(config),
        n_excluded=n_excluded, missing_pairs=missing_pairs(config, design, arms),
        skipped_claims=skipped + unmatched, alpha=alpha)
    tables = {"summary": summary_table, "tests": result.tests, "ranks": rank_table, "claims": claims_table}
    result.paths = write(out or RunFolder(run_dir).analysis_uri, tables)
    return result
