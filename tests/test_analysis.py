"""mlsweep.analysis on synthetic results written as real Parquet files, in the orchestrator's
layout; each statistic is checked against scipy / statsmodels called on the same numbers."""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterable, Mapping

import numpy as np
import pandas as pd
import pytest
import yaml
from scipy import stats
from statsmodels.stats.multitest import multipletests

from mlsweep.analysis import (
    AnalysisError,
    ClaimsError,
    analyze,
    claim_tally,
    format_result,
    load_claims,
    result_json,
)
from mlsweep.claims import CLAIM_SETS, Claim
from mlsweep.results import read_results, write_table

METRICS = ("train_loss", "active_ratio", "grad_norm", "intra_var_mean", "centroid_dist_mean",
           "var_ratio", "recall_at_1", "map_at_r", "n_terms", "epoch_s", "eval_s")
COMPARED = tuple(m for m in METRICS if m not in ("train_loss", "n_terms", "epoch_s", "eval_s"))
TESTS_COLUMNS = ["metric", "stat", "loss_a", "loss_b", "n_pairs", "mean_diff", "ci_low",
                 "ci_high", "t_stat", "t_p", "w_stat", "w_p", "p_holm", "holm_family", "d_z",
                 "rank_biserial", "better", "note"]
MARGIN_FREE = {"infonce", "supcon", "npair"}


def make_run(run_dir: str, *, losses: Iterable[str] = ("contrastive", "triplet"),
             datasets: Iterable[str] = ("digits",), margins: Iterable[float] = (0.5,),
             seeds: Iterable[int] = range(8), effect: Mapping[str, Mapping[str, float]] = {},
             status: Mapping[tuple[str, int], str] = {}, skip: Iterable[tuple[str, int]] = (),
             noise: float = 0.1, grid: float | None = None, epochs: int = 3,
             rng_seed: int = 0) -> None:
    """Trials and epochs tables: value = seed level + loss effect + noise, per epoch.

    `status[(loss, seed)]` marks failed / diverged trials (their epochs stop after one);
    `skip` leaves (loss, seed) trials out entirely; margin-free losses have margin and
    miner null;
    `grid` rounds values to its multiples (0.125 keeps differences exact: ties, zeros).
    """
    rng = np.random.default_rng(rng_seed)
    seed_level = {seed: rng.normal(0, 1) for seed in seeds}
    for dataset in datasets:
        for loss in losses:
            for margin in [None] if loss in MARGIN_FREE else margins:
                for seed in seeds:
                    if (loss, seed) in skip:
                        continue
                    config = {"loss": loss, "dataset": dataset, "margin": margin, "seed": seed,
                              "miner": None if margin is None else "random", "epochs": epochs,
                              "lr": 1e-3, "loss_params": "{}"}
                    state = status.get((loss, seed), "completed")
                    values = {m: seed_level[seed] + effect.get(loss, {}).get(m, 0.0)
                              + rng.normal(0, noise, epochs) + np.linspace(0, 0.1, epochs)
                              for m in METRICS}
                    if grid:
                        values = {m: np.round(v / grid) * grid for m, v in values.items()}
                    trial_id = f"{dataset}-{loss}-{margin}-{seed}"
                    _write_trial(run_dir, trial_id, config, values, state)


def _write_trial(run_dir: str, trial_id: str, config: dict, values: dict[str, np.ndarray],
                 state: str) -> None:
    n = len(values[METRICS[0]]) if state == "completed" else 1
    ids = {"trial_id": trial_id, "sweep": "test"}
    write_table(run_dir, "epochs", trial_id, [
        {**ids, **config, "epoch": e + 1, **{m: float(v[e]) for m, v in values.items()}}
        for e in range(n)])
    write_table(run_dir, "trials", trial_id, [
        {**ids, **config, "status": state, "error": None if state == "completed" else "boom",
         "attempts": 1, "wall_s": 1.0, **{f"final_{m}": float(v[n - 1]) for m, v in values.items()}}])


def trial_values(run_dir: str, stat: str) -> pd.DataFrame:
    """Per completed trial: its config and each metric's final or epoch-mean value, computed
    independently of mlsweep.analysis."""
    trials = read_results(run_dir, "trials")
    epochs = read_results(run_dir, "epochs").sort_values("epoch")
    epochs = epochs[epochs["trial_id"].isin(trials.loc[trials["status"] == "completed", "trial_id"])]
    grouped = epochs.groupby("trial_id")[list(METRICS)]
    reduced = grouped.last() if stat == "final" else grouped.mean()
    return trials[["trial_id", "loss", "dataset", "margin", "seed"]].merge(reduced.reset_index())


def paired(values: dict[str, pd.DataFrame], row: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """The seed-paired values of loss_a and loss_b behind one row of tests.parquet, from
    `trial_values` of each stat."""
    values = values[row["stat"]]
    values = values[values["dataset"] == row["dataset"]]
    table = values.pivot_table(index="seed", columns="loss", values=row["metric"]).dropna()
    return table[row["loss_a"]].to_numpy(), table[row["loss_b"]].to_numpy()


def test_paired_statistics_equal_scipy(tmp_path):
    run = str(tmp_path)
    make_run(run, datasets=("digits", "synthetic"), effect={"triplet": {"map_at_r": 0.1}})
    tests = analyze(run).tests
    assert list(tests.columns) == ["dataset", *TESTS_COLUMNS]
    assert len(tests) == 2 * len(COMPARED) * 2
    values = {stat: trial_values(run, stat) for stat in ("final", "mean")}
    for _, row in tests.iterrows():
        a, b = paired(values, row)
        diff = a - b
        t = stats.ttest_rel(a, b)
        w = stats.wilcoxon(a, b)
        ranks = stats.rankdata(np.abs(diff))
        assert row["n_pairs"] == len(a) == 8
        assert row["mean_diff"] == pytest.approx(diff.mean(), rel=1e-12)
        assert (row["t_stat"], row["t_p"]) == pytest.approx((t.statistic, t.pvalue), rel=1e-12)
        assert (row["w_stat"], row["w_p"]) == pytest.approx((w.statistic, w.pvalue), rel=1e-12)
        assert row["d_z"] == pytest.approx(diff.mean() / diff.std(ddof=1), rel=1e-12)
        assert row["rank_biserial"] == pytest.approx(
            (ranks[diff > 0].sum() - ranks[diff < 0].sum()) / ranks.sum(), rel=1e-12)
        assert row["ci_low"] <= row["mean_diff"] <= row["ci_high"]


def test_wilcoxon_per_row_with_ties_and_zeros(tmp_path):
    """Above 13 pairs scipy tests rows with tied or zero differences by the normal
    approximation and the others exactly: each row gets the p-value it gets alone, though
    both kinds are computed in one batch."""
    run = str(tmp_path)
    make_run(run, datasets=("digits", "synthetic"), seeds=range(14), noise=0.3, grid=0.125)
    make_run(run, datasets=("cifar10",), seeds=range(14), rng_seed=1)
    tests = analyze(run, metrics=["map_at_r"]).tests
    assert set(tests["dataset"]) == {"digits", "synthetic", "cifar10"}
    values = {stat: trial_values(run, stat) for stat in ("final", "mean")}
    for _, row in tests.iterrows():
        a, b = paired(values, row)
        w = stats.wilcoxon(a, b)
        np.testing.assert_allclose([row["w_stat"], row["w_p"]], [w.statistic, w.pvalue],
                                   rtol=1e-12)


def test_holm_within_block_and_metric_equals_statsmodels(tmp_path):
    run = str(tmp_path)
    make_run(run, losses=("contrastive", "triplet", "multi_similarity"),
             datasets=("digits", "synthetic"), effect={"triplet": {"map_at_r": 0.2}})
    tests = analyze(run).tests
    for (dataset, metric, stat), family in tests.groupby(["dataset", "metric", "stat"]):
        assert len(family) == 3
        expected = multipletests(family["t_p"], method="holm")[1]
        np.testing.assert_allclose(family["p_holm"], expected, rtol=1e-12)
        assert set(family["holm_family"]) == {f"dataset={dataset} · {metric} {stat} · 3 tests"}
    planted = tests[(tests["metric"] == "map_at_r") & (tests["loss_b"] == "triplet")]
    assert len(planted) == 8 and (planted["better"] == "triplet").all()
    assert tests.loc[tests["p_holm"] >= 0.05, "better"].isna().all()


def test_ranks_equal_scipy_friedman_and_nemenyi(tmp_path):
    run = str(tmp_path)
    losses = ("contrastive", "triplet", "multi_similarity")
    datasets = ("digits", "synthetic", "mnist", "cifar10", "cub200")
    make_run(run, losses=losses, datasets=datasets, seeds=range(3),
             effect={"triplet": {"map_at_r": 0.3, "var_ratio": 0.3}})
    ranks = analyze(run).ranks
    assert list(ranks.columns) == ["metric", "stat", "loss", "mean_rank", "n_blocks",
                                   "friedman_stat", "friedman_p", "cd", "note"]
    values = trial_values(run, "final")
    for metric, sign in (("map_at_r", -1), ("var_ratio", 1)):
        means = values.pivot_table(index="dataset", columns="loss", values=metric)[sorted(losses)]
        rows = ranks[(ranks["metric"] == metric) & (ranks["stat"] == "final")]
        friedman = stats.friedmanchisquare(*means.to_numpy().T)
        mean_ranks = stats.rankdata(sign * means.to_numpy(), axis=1).mean(axis=0)
        q = stats.studentized_range.ppf(0.95, 3, np.inf) / np.sqrt(2)
        assert list(rows["loss"]) == sorted(losses)
        np.testing.assert_allclose(rows["mean_rank"], mean_ranks, rtol=1e-12)
        np.testing.assert_allclose(rows["friedman_stat"], friedman.statistic, rtol=1e-12)
        np.testing.assert_allclose(rows["friedman_p"], friedman.pvalue, rtol=1e-12)
        np.testing.assert_allclose(rows["cd"], q * np.sqrt(3 * 4 / (6 * 5)), rtol=1e-12)
        assert (rows["n_blocks"] == 5).all()
    best = ranks[(ranks["metric"] == "map_at_r") & (ranks["stat"] == "final")]
    assert best.loc[best["mean_rank"].idxmin(), "loss"] == "triplet"
    assert "highest" in best["note"].iloc[0]
    lowest = ranks[(ranks["metric"] == "var_ratio") & (ranks["stat"] == "final")]
    assert lowest.loc[lowest["mean_rank"].idxmax(), "loss"] == "triplet"
    assert "lowest" in lowest["note"].iloc[0]


def test_only_comparable_metrics_are_tested_and_directions_come_from_the_catalog(tmp_path):
    """Issue 14 item 5: bookkeeping and train_loss are summarised, never compared; grad_norm
    (no better side) differs significantly but names no better loss; var_ratio is lower-better."""
    run = str(tmp_path)
    planted = {m: 2.0 for m in ("train_loss", "n_terms", "epoch_s", "eval_s", "grad_norm", "var_ratio")}
    make_run(run, losses=("contrastive", "triplet", "multi_similarity"),
             datasets=("digits", "synthetic"), effect={"triplet": planted})
    result = analyze(run)
    assert set(result.summary["metric"]) == set(METRICS)
    assert set(result.tests["metric"]) == set(result.ranks["metric"]) == set(COMPARED)
    significant = result_json(result)["significant"]
    assert {row["metric"] for row in significant} <= set(COMPARED)
    grad = result.tests[(result.tests["metric"] == "grad_norm") & (result.tests["loss_b"] == "triplet")]
    assert (grad["p_holm"] < 0.05).all() and grad["better"].isna().all()
    ratio = result.tests[(result.tests["metric"] == "var_ratio") & (result.tests["loss_b"] == "triplet")]
    assert (ratio["p_holm"] < 0.05).all() and (ratio["better"] == ratio["loss_a"]).all()
    note = result.ranks.loc[result.ranks["metric"] == "grad_norm", "note"].iloc[0]
    assert note.startswith("rank 1 = highest value (no better side)")
    text = format_result(result)
    assert "n_terms" not in text and "epoch_s" not in text and "eval_s" not in text


def test_ranks_with_two_losses_or_one_block_explain_what_is_missing(tmp_path):
    run = str(tmp_path)
    make_run(run, seeds=range(3))
    ranks = analyze(run, metrics=["map_at_r"]).ranks
    assert len(ranks) == 4 and ranks["friedman_p"].isna().all() and ranks["cd"].isna().all()
    assert "at least 2 complete blocks" in ranks["note"].iloc[0]


def test_summary_cis_contain_the_mean_and_are_reproducible(tmp_path):
    run = str(tmp_path)
    make_run(run, datasets=("digits", "synthetic"), seeds=range(5))
    first, again, other = analyze(run), analyze(run), analyze(run, seed=1)
    summary = first.summary
    assert list(summary.columns) == ["dataset", "loss", "metric", "stat", "n", "mean", "std",
                                     "sem", "ci_low", "ci_high"]
    assert len(summary) == 2 * 2 * len(METRICS) * 2 and (summary["n"] == 5).all()
    assert ((summary["ci_low"] <= summary["mean"]) & (summary["mean"] <= summary["ci_high"])).all()
    values = trial_values(run, "mean")
    row = summary[(summary["dataset"] == "digits") & (summary["loss"] == "triplet")
                  & (summary["metric"] == "map_at_r") & (summary["stat"] == "mean")].iloc[0]
    cell = values[(values["dataset"] == "digits") & (values["loss"] == "triplet")]["map_at_r"]
    assert row["mean"] == pytest.approx(cell.mean()) and row["sem"] == pytest.approx(cell.sem())
    pd.testing.assert_frame_equal(summary, again.summary)
    pd.testing.assert_frame_equal(first.tests, again.tests)
    assert not np.allclose(summary["ci_low"], other.summary["ci_low"])


def test_degenerate_groups_get_defined_cis_without_warnings(tmp_path, recwarn):
    run = str(tmp_path)
    make_run(run, seeds=range(2), noise=0.0)  # two seeds: percentile; identical epochs
    make_run(run, datasets=("mnist",), seeds=range(1), rng_seed=3)  # one seed: no CI
    summary = analyze(run).summary
    two = summary[summary["dataset"] == "digits"]
    assert ((two["ci_low"] <= two["mean"]) & (two["mean"] <= two["ci_high"])).all()
    assert summary.loc[summary["dataset"] == "mnist", ["ci_low", "ci_high"]].isna().all().all()
    assert not recwarn.list


@pytest.mark.parametrize(("effect", "verdict"), [(0.5, "supported"), (0.0, "inconclusive"),
                                                  (-0.5, "contradicted")])
def test_claim_verdicts_follow_the_planted_effect(tmp_path, effect, verdict):
    run = str(tmp_path)
    make_run(run, effect={"triplet": {"intra_var_mean": effect}}, rng_seed=4)
    claims = [{"a": "triplet", "b": "contrastive", "metric": "intra_var_mean"},
              {"a": "contrastive", "b": "triplet", "metric": "intra_var_mean", "direction": "less",
               "stat": "mean", "name": "contrastive keeps less variance"}]
    table = analyze(run, claims=claims).claims
    assert list(table["verdict"]) == [verdict, verdict]
    assert list(table["claim"]) == ["triplet intra_var_mean > contrastive (final)",
                                    "contrastive keeps less variance"]
    np.testing.assert_allclose(table["p_holm"], multipletests(table["t_p"], method="holm")[1])


def test_paper_claims_per_dataset_and_margin(tmp_path):
    run = str(tmp_path)
    effect = {"triplet": {m: 0.5 for m in ("intra_var_mean", "centroid_dist_mean", "grad_norm",
                                          "recall_at_1", "map_at_r")},
              "contrastive": {"active_ratio": 0.5}}
    make_run(run, datasets=("digits", "synthetic"), margins=(0.2, 1.0), effect=effect)
    result = analyze(run)
    claims = result.claims
    assert {"claim", "dataset", "margin", "metric", "stat", "loss_a", "loss_b", "direction",
            "mean_diff", "p_holm", "verdict"} <= set(claims.columns)
    assert len(claims) == 6 * 4 and (claims["verdict"] == "supported").all()
    active = claims[claims["metric"] == "active_ratio"]
    assert set(active["loss_a"]) == {"contrastive"} and set(active["stat"]) == {"mean"}
    assert set(claims.loc[claims["metric"] == "map_at_r", "stat"]) == {"final"}
    assert result.skipped_claims == []


def test_excluded_trials_are_counted_and_unpaired_seeds_reported(tmp_path):
    run = str(tmp_path)
    make_run(run, status={("triplet", 7): "failed", ("contrastive", 5): "diverged"},
             skip={("contrastive", 6)})
    (tmp_path / "results" / "trials" / "digits-triplet-0.5-3.parquet").unlink()  # still running
    result = analyze(run, metrics=["map_at_r"])
    assert (result.n_trials, result.n_completed) == (15, 12)
    assert result.n_excluded == {"failed": 1, "diverged": 1, "unfinished": 1}
    row = result.tests.iloc[0]
    assert row["n_pairs"] == 4
    assert row["note"] == ("4 pairs: Wilcoxon cannot reach p < 0.05, p_holm and verdicts rest "
                           "on the paired t-test; "
                           "2 contrastive seed(s) without triplet; "
                           "2 triplet seed(s) without contrastive")
    missing = {(m["seed"], m["missing"]) for m in result.missing_pairs}
    assert missing == {(3, "triplet"), (7, "triplet"), (5, "contrastive"), (6, "contrastive")}
    assert result.summary.set_index("loss").loc["triplet", "n"].tolist() == [6, 6]


def test_margin_free_loss_is_one_arm_and_no_trial_counts_twice(tmp_path):
    """Issue 14 item 4: infonce and supcon (margin null) are one arm each, ranked once per data
    set beside triplet and contrastive at each margin; they are compared with each margin's
    runs of a margin loss (distinct comparisons), with each other once, and a claim about one
    of them tallies its runs once."""
    run = str(tmp_path)
    datasets = ("digits", "synthetic", "mnist")
    make_run(run, losses=("contrastive", "triplet", "infonce", "supcon"), datasets=datasets,
             margins=(0.2, 1.0), seeds=range(6), effect={"infonce": {"map_at_r": 0.5}})
    claims = [{"a": "infonce", "b": "triplet", "metric": "map_at_r"},
              {"a": "triplet", "b": "contrastive", "metric": "map_at_r"}]
    result = analyze(run, metrics=["map_at_r"], claims=claims)
    tests = result.tests[result.tests["stat"] == "final"]
    assert list(tests.columns[:2]) == ["dataset", "margin"]
    digits = tests[tests["dataset"] == "digits"]
    pairs = {(r.loss_a, r.loss_b, None if pd.isna(r.margin) else r.margin) for r in digits.itertuples()}
    assert pairs == {("contrastive", "triplet", 0.2), ("contrastive", "triplet", 1.0),
                     *((a, b, m) for a, b in (("contrastive", "infonce"), ("infonce", "triplet"),
                                               ("contrastive", "supcon"), ("supcon", "triplet"))
                       for m in (0.2, 1.0)),
                     ("infonce", "supcon", None)}
    assert len(digits) == len(pairs) and (digits["n_pairs"] == 6).all()
    assert (digits["holm_family"] == "dataset=digits · map_at_r final · 11 tests").all()
    assert result.missing_pairs == []
    summary = result.summary[result.summary["stat"] == "final"]
    assert len(summary) == len(datasets) * (2 * 2 + 2) and (summary["n"] == 6).all()
    # Ranks: blocks are data sets, arms are (loss, margin it sets): each trial in one block-arm.
    ranks = result.ranks[result.ranks["stat"] == "final"]
    assert list(ranks.columns[:4]) == ["metric", "stat", "loss", "margin"]
    assert (ranks["n_blocks"] == 3).all() and len(ranks) == 6
    values = trial_values(run, "final").assign(margin=lambda f: f["margin"].fillna(-1))
    means = values.pivot_table(index="dataset", columns=["loss", "margin"], values="map_at_r")
    friedman = stats.friedmanchisquare(*means.to_numpy().T)
    np.testing.assert_allclose(ranks["friedman_stat"], friedman.statistic, rtol=1e-12)
    expected = dict(zip(means.columns, stats.rankdata(-means.to_numpy(), axis=1).mean(axis=0),
                        strict=True))
    got = {(r.loss, -1 if pd.isna(r.margin) else r.margin): r.mean_rank for r in ranks.itertuples()}
    assert got == pytest.approx(expected)
    # Claims: two rows per data set for infonce (one per triplet margin), one run set of infonce.
    claim_rows = result.claims[result.claims["loss_a"] == "infonce"]
    assert len(claim_rows) == 2 * len(datasets) and claim_rows["unit"].nunique() == len(datasets)
    tally = claim_tally(result.claims).set_index(["claim", "verdict"])
    assert tally.loc[("infonce map_at_r > triplet (final)", "supported"), "units"] == 3
    assert tally.loc[("infonce map_at_r > triplet (final)", "supported"), "rows"] == 6
    other = result.claims[result.claims["loss_a"] == "triplet"]
    assert other["unit"].nunique() == len(other) == 2 * len(datasets)  # disjoint runs each
    assert "(from 6 comparisons; those sharing one loss's runs count once)" in format_result(result)


def test_loss_specific_settings_do_not_split_blocks(tmp_path):
    """Each loss at its own margin (as in the seed paper) is still compared: margin describes
    the loss there, not a condition of the study."""
    run = str(tmp_path)
    make_run(run, losses=("contrastive",), margins=(1.0,))
    make_run(run, losses=("triplet",), margins=(0.2,), rng_seed=0)
    tests = analyze(run, metrics=["map_at_r"]).tests
    assert "margin" not in tests.columns and (tests["n_pairs"] == 8).all()


def test_mean_over_epochs_skips_epochs_without_evaluation(tmp_path):
    run = str(tmp_path)
    for trial_id, loss in (("a", "triplet"), ("b", "contrastive")):
        config = {"trial_id": trial_id, "sweep": "s", "loss": loss, "dataset": "digits", "seed": 0}
        write_table(run, "epochs", trial_id, [
            {**config, "epoch": e, "train_loss": float(e),
             "map_at_r": float("nan") if e < 4 else 0.5} for e in range(1, 5)])
        write_table(run, "trials", trial_id, [{**config, "status": "completed"}])
    summary = analyze(run).summary.set_index(["loss", "metric", "stat"])
    assert summary.loc[("triplet", "map_at_r", "final"), "mean"] == 0.5
    assert ("triplet", "map_at_r", "mean") not in summary.index  # evaluated once: one number
    assert summary.loc[("triplet", "train_loss", "mean"), "mean"] == 2.5
    assert summary.loc[("triplet", "train_loss", "final"), "mean"] == 4.0


def test_tables_are_written_and_printed(tmp_path):
    run = str(tmp_path)
    make_run(run, effect={"triplet": {"intra_var_mean": 0.5}}, status={("triplet", 0): "failed"})
    result = analyze(run, claims="paper")
    assert set(result.paths) == {"summary", "tests", "ranks", "claims"}
    for name, path in result.paths.items():
        assert path == f"{run}/analysis/{name}.parquet"
        written = pd.read_parquet(path)
        assert list(written.columns) == list(getattr(result, name).columns)
        assert len(written) == len(getattr(result, name))
    text = format_result(result)
    assert "analysed 15 of 16 trials (excluded: 1 failed)" in text
    assert "supported" in text and "significant differences" in text
    assert "unpaired seeds: 1" in text and result.paths["claims"] in text
    document = json.loads(json.dumps(result_json(result)))
    assert document["n_excluded"] == {"failed": 1}
    assert {c["verdict"] for c in document["claims"]} <= {"supported", "inconclusive"}
    assert document["paths"] == result.paths


def test_analyze_out_writes_the_tables_elsewhere_and_leaves_the_run_folder_alone(tmp_path):
    from typer.testing import CliRunner

    from mlsweep.cli import app

    run, out = tmp_path / "run", tmp_path / "tables"
    make_run(str(run), effect={"triplet": {"intra_var_mean": 0.5}})
    result = CliRunner().invoke(app, ["analyze", str(run), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == ["claims.parquet", "ranks.parquet", "summary.parquet",
                                                     "tests.parquet"]
    assert not (run / "analysis").exists() and str(out / "tests.parquet") in result.stdout


def test_every_printed_p_names_its_holm_family(tmp_path):
    """Issue 14 item 6: a claim and the test of the same comparison carry different p_holm
    (Holm over all claims vs within block x metric x stat); each says which family it is of."""
    run = str(tmp_path)
    make_run(run, effect={"triplet": {m: 0.1 for m in COMPARED}}, rng_seed=2)
    result = analyze(run, claims="paper")
    claims, tests = result.claims, result.tests
    assert (claims["holm_family"] == "all claims · 6 tests").all()
    claim = claims[claims["metric"] == "map_at_r"].iloc[0]
    test = tests[(tests["metric"] == "map_at_r") & (tests["stat"] == "final")].iloc[0]
    assert claim["t_p"] == pytest.approx(test["t_p"])
    assert claim["p_holm"] != pytest.approx(test["p_holm"])  # two corrections, both shown
    assert test["holm_family"] == f"dataset=digits · map_at_r final · {1} tests"
    text = format_result(result)
    assert "p_holm: Holm over all 6 claim tests" in text
    assert "p_holm: Holm within block x metric x stat, its family in holm_family" in text
    significant = result_json(result)["significant"]
    assert all("holm_family" in row for row in significant)


def test_claims_come_from_the_runs_sweep_file_and_absent_losses_are_skipped(tmp_path):
    run = str(tmp_path)
    make_run(run, effect={"triplet": {"map_at_r": 0.5}})
    sweep = {"name": "x", "claims": [{"a": "triplet", "b": "contrastive", "metric": "map_at_r"},
                                     {"a": "npair", "b": "triplet", "metric": "map_at_r"},
                                     {"a": "triplet", "b": "contrastive", "metric": "knn_acc"}]}
    (tmp_path / "sweep.yaml").write_text(yaml.safe_dump(sweep))
    result = analyze(run)
    assert list(result.claims["verdict"]) == ["supported"]
    assert [s["reason"] for s in result.skipped_claims] == [
        "no completed npair trials", "metric knn_acc not in the results"]
    assert "skipped: npair map_at_r > triplet (final)" in format_result(result)


def test_metric_subset_still_tests_the_claims(tmp_path):
    run = str(tmp_path)
    make_run(run)
    result = analyze(run, metrics=["recall_at_1"])
    assert set(result.summary["metric"]) == set(result.tests["metric"]) == {"recall_at_1"}
    assert set(result.ranks["metric"]) == {"recall_at_1"}
    assert len(result.claims) == 6


def test_user_errors_are_one_line(tmp_path):
    with pytest.raises(AnalysisError, match="no results in") as error:
        analyze(str(tmp_path))
    assert "\n" not in str(error.value)
    make_run(str(tmp_path), status={("triplet", s): "failed" for s in range(8)}
             | {("contrastive", s): "diverged" for s in range(8)})
    with pytest.raises(AnalysisError, match=r"no completed trials .* \(8 diverged, 8 failed\)|"
                                            r"no completed trials .* \(8 failed, 8 diverged\)"):
        analyze(str(tmp_path))


def test_unknown_metric_lists_the_known_ones(tmp_path):
    make_run(str(tmp_path))
    with pytest.raises(AnalysisError, match=r"unknown metric mAP; known: train_loss, .*map_at_r"):
        analyze(str(tmp_path), metrics=["mAP"])


def test_load_claims(tmp_path):
    paper = load_claims("paper")
    assert paper == list(CLAIM_SETS["paper"]) and len(paper) == 6
    assert [(c.a, c.metric, c.stat) for c in paper] == [
        ("triplet", "intra_var_mean", "final"), ("triplet", "centroid_dist_mean", "final"),
        ("contrastive", "active_ratio", "mean"), ("triplet", "grad_norm", "mean"),
        ("triplet", "recall_at_1", "final"), ("triplet", "map_at_r", "final")]
    listed = [{"a": "supcon", "b": "infonce", "metric": "knn_acc", "direction": "less"}]
    assert load_claims(listed) == [Claim("supcon", "infonce", "knn_acc", "less")]
    as_list, as_sweep = tmp_path / "claims.yaml", tmp_path / "sweep.yaml"
    as_list.write_text(yaml.safe_dump(listed))
    as_sweep.write_text(yaml.safe_dump({"name": "s", "claims": "paper"}))
    assert load_claims(str(as_list)) == load_claims(listed)
    assert load_claims(as_sweep) == paper


@pytest.mark.parametrize(("spec", "message"), [
    ("papers", r"neither a claim set \(paper\) nor a file"),
    ([{"a": "triplet", "metric": "map_at_r"}], r"claims\[0\]: missing keys \['b'\]"),
    ([{"a": "x", "b": "y", "metric": "m", "sign": ">"}], r"unknown keys \['sign'\]"),
    ([{"a": "x", "b": "y", "metric": "m", "direction": "up"}], "allowed: greater, less"),
    ([{"a": "x", "b": "y", "metric": "m", "stat": "max"}], "allowed: final, mean"),
    ([{"a": "x", "b": "x", "metric": "m"}], "with itself"),
    (["triplet"], "must be a mapping"),
])
def test_bad_claims_are_one_line_errors(spec, message):
    with pytest.raises(ClaimsError, match=message) as error:
        load_claims(spec)
    assert "\n" not in str(error.value) and isinstance(error.value, ValueError)


def test_bad_claims_file_names_the_file(tmp_path):
    path = tmp_path / "claims.yaml"
    path.write_text("claims: [{a: triplet}]")
    with pytest.raises(ClaimsError, match=rf"{path}: claims\[0\]: missing keys"):
        load_claims(str(path))
    path.write_text("name: only")
    with pytest.raises(ClaimsError, match="no top-level `claims:` key"):
        load_claims(path)


@pytest.mark.parametrize("n", [2, 3, 5, 8])
@pytest.mark.parametrize("bca", [True, False])
def test_bootstrap_ci_is_scipys(n: int, bca: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    """The matrix-product bootstrap against scipy.stats.bootstrap with the same generator, over
    several chunks. Integer-valued rows make every mean exact in both, so nothing is left to
    rounding: equal up to the last bits."""
    from mlsweep.analysis import _stats as analysis

    monkeypatch.setattr(analysis, "_CHUNK", 40 * n * analysis.N_RESAMPLES)  # 40 rows a chunk
    x = np.random.default_rng(n).integers(-50, 50, size=(130, n)).astype(float)
    ours = analysis._mean_ci(x, bca, np.random.default_rng(7))
    expected = []
    rng = np.random.default_rng(7)
    for rows in (slice(0, 40), slice(40, 80), slice(80, 120), slice(120, 130)):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # BCa's degenerate rows: NaN in both
            ci = stats.bootstrap((x[rows],), np.mean, axis=-1, vectorized=True, rng=rng,
                                 method="BCa" if bca else "percentile",
                                 n_resamples=analysis.N_RESAMPLES).confidence_interval
        expected.append((ci.low, ci.high))
    for got, want in zip(ours, map(np.concatenate, zip(*expected, strict=True)), strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
