"""The page's sections, shaped from the results and the analysis tables.

The design (cells, blocks, arms) is the analysis' own (`mlsweep.analysis.Design`), read off
summary.parquet. A sweep's factors besides the data set form a row's `setting` (`margin=0.2`);
a loss that sets no margin has the setting `no margin` and is plotted once, not once per margin.
"""

from __future__ import annotations

import html
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from mlsweep.analysis import VERDICTS, AnalysisError, Design, better, claim_tally, comparable
from mlsweep.analysis._design import show
from mlsweep.analysis._read import completed_config, excluded
from mlsweep.catalog import STATUSES
from mlsweep.report import Partial
from mlsweep.report import _charts as charts
from mlsweep.report._page import Section, spec
from mlsweep.results import read_results
from mlsweep.runfolder import RunFolder

CURVE_METRICS = ("train_loss", "active_ratio", "grad_norm", "emb_grad_norm")
VARIANCE_METRICS = ("intra_var_mean", "centroid_dist_mean", "var_ratio")
RETRIEVAL_METRICS = ("recall_at_1", "map_at_r", "knn_acc")
# Heat-map rows: the comparable ones. Critical-difference rows: those with a better side.
PVALUE_METRICS = tuple(m for m in (*RETRIEVAL_METRICS, *VARIANCE_METRICS, *CURVE_METRICS)
                       if comparable(m))
CD_METRICS = tuple(m for m in PVALUE_METRICS if better(m) is not None)
MAX_FAILED_ROWS = 200
# The paper's table: per data set, each loss's final mean with its 95% CI.
HEADLINE_METRICS = ("map_at_r", "recall_at_1", "knn_acc", "intra_var_mean", "centroid_dist_mean")
TRAINING = (("epochs", "epochs"), ("lr", "lr"), ("batch_size", "batch size"), ("model", "model"),
            ("miner", "miner"))
NORMALISED = "train_loss"  # losses differ in scale: each curve is shown relative to its epoch 1
STATISTICS = (("variance", "Embedding variance"), ("retrieval", "Retrieval"), ("pvalues", "Significance"),
              ("ranks", "Critical difference"), ("claims", "Claims"))


@dataclass(frozen=True, eq=False)
class _View:
    """The analysis design as the page shows it: losses (colour order), the factors besides
    the data set, and their settings (`options`: factor values and label) in axis order."""

    design: Design
    options: pd.DataFrame

    @property
    def factors(self) -> list[str]:
        return [f for f in self.design.factors if f != "dataset"]

    @property
    def losses(self) -> list[str]:
        return self.design.losses

    @property
    def settings(self) -> list[str]:
        return list(self.options["setting"])

    @classmethod
    def of_completed(cls, run_dir: str, trials: pd.DataFrame) -> _View | None:
        """The design of the trials completed so far (a partial report has no analysis), or
        None before the first."""
        epochs = read_results(run_dir, "epochs")
        try:
            config = completed_config(trials, epochs, run_dir, excluded(trials, epochs))
        except AnalysisError:
            return None
        design = Design.of_config(config)
        return cls.of(config[design.cells].drop_duplicates())

    @classmethod
    def of(cls, summary: pd.DataFrame) -> _View:
        design = Design.of_cells(summary)
        view = cls(design, pd.DataFrame())
        cells = summary[view.factors].drop_duplicates()
        cells = cells.sort_values(view.factors) if view.factors else cells.head(1)
        return cls(design, cells.assign(setting=view.label(cells)).drop_duplicates("setting"))

    def label(self, frame: pd.DataFrame) -> pd.Series:
        """Each row's setting: `margin=0.2, lr=0.01`; `no margin` where its loss sets none."""
        if not self.factors:
            return pd.Series("all", index=frame.index)
        parts = []
        for factor in self.factors:
            text = frame[factor].map(lambda v, f=factor: f"{f}={show(v)}")
            if factor in self.design.arm_factors:
                text = text.where(frame[factor].notna(), f"no {factor}")
            parts.append(text)
        return parts[0].str.cat(parts[1:], sep=", ")

    def block(self, frame: pd.DataFrame) -> pd.Series:
        """Data set and setting of each row: where a paired test or claim was made."""
        return frame["dataset"] + (" · " + self.label(frame) if self.factors else "")

    def shown_in(self, frame: pd.DataFrame) -> pd.Series:
        """`|margin=0.2|margin=1|` per row: the settings a curve shows under. A loss that sets
        no margin shows under every margin, beside the losses it is compared with, from its
        one row per epoch."""
        if not self.factors:
            return pd.Series("|all|", index=frame.index)
        combos = frame[self.factors].drop_duplicates()
        texts = []
        for _, combo in combos.iterrows():
            match = pd.Series(True, index=self.options.index)
            for f in self.factors:
                if not (pd.isna(combo[f]) and f in self.design.arm_factors):
                    column = self.options[f]
                    match &= (column == combo[f]) | (column.isna() & pd.isna(combo[f]))
            texts.append("|" + "|".join(self.options.loc[match, "setting"]) + "|")
        combos = combos.assign(shown_in=texts)
        shown = frame[self.factors].merge(combos, how="left", on=self.factors)["shown_in"]
        return shown.set_axis(frame.index)


def sections(run_dir: str, trials: pd.DataFrame, tables: dict[str, pd.DataFrame],
             problem: str, partial: Partial | None = None) -> list[Section]:
    """Every section in page order; without analysis tables the charts say why they are empty.
    A partial report has the overview, the curves so far and the failures, no statistics."""
    if partial is not None:
        view = _View.of_completed(run_dir, trials)
        later = [Section(anchor, title, "Shown when the sweep ends: this report is partial.")
                 for anchor, title in STATISTICS]
        curves = (_curves(run_dir, trials, view) if view is not None
                  else Section("curves", "Learning curves", "No trial has completed yet."))
        return [_overview(run_dir, trials, None, view, partial), curves, *later, _failures(trials, view)]
    view = _View.of(tables["summary"]) if tables and not tables["summary"].empty else None
    overview = _overview(run_dir, trials, tables.get("claims"), view)
    failures = _failures(trials, view)
    if view is None:
        reason = (f"Nothing to show: analyze failed: {problem}." if problem
                  else "Nothing to show: the analysis has no rows.")
        empty = [Section(anchor, title, reason)
                 for anchor, title in (("curves", "Learning curves"), *STATISTICS)]
        return [overview, *empty, failures]
    summary = tables["summary"]
    return [
        overview,
        _headline(summary, view),
        _curves(run_dir, trials, view),
        _ci_section("variance", "Embedding variance", summary, VARIANCE_METRICS, view,
                    "Spread within classes and between centroids of the test embeddings."),
        _ci_section("retrieval", "Retrieval", summary, RETRIEVAL_METRICS, view,
                    "Test set as query and gallery, self excluded; kNN fitted on train embeddings."),
        _pvalues(tables["tests"], view),
        _ranks(tables["ranks"], view),
        _claims(tables["claims"], view),
        failures,
    ]


def _overview(run_dir: str, trials: pd.DataFrame, claims: pd.DataFrame | None,
              view: _View | None, partial: Partial | None = None) -> Section:
    """Trials by status, wall time, devices, the design and the claims' verdicts at a glance."""
    plan = RunFolder(run_dir).manifest()
    counts = trials["status"].value_counts()
    status = [f"{counts.get(s, 0)} {s}" for s in STATUSES]
    running = partial.running if partial is not None else None
    if running is not None:
        status.append(f"{running} running")
    if plan.get("trials"):
        pending = len(set(plan["trials"]) - set(trials["trial_id"])) - (running or 0)
        status = [f"{len(plan['trials'])} planned", *status, f"{max(0, pending)} pending"]
    span = (trials["finished_at"].max() - trials["started_at"].min()).total_seconds()
    devices = ", ".join(f"{device} × {n}" for device, n in trials["device"].value_counts().items())
    cards = {  # title -> HTML
        "Trials": html.escape(" · ".join(status)),
        "Wall time": html.escape(f"{_duration(span)} from first start to last finish · "
                                 f"{_duration(trials['wall_s'].sum())} summed over trials"),
        "Devices": html.escape(f"{devices} on {trials['node'].nunique()} node(s)"),
    }
    if view is not None:
        swatches = " ".join(f'<span class="loss" style="--c:{color}">{html.escape(loss)}</span>'
                            for loss, color in charts.loss_colors(view.losses).items())
        datasets = ", ".join(sorted(trials["dataset"].dropna().unique()))
        factors = "".join(f" · {f} " + ", ".join(show(v) for v in sorted(trials[f].dropna().unique()))
                          for f in view.factors)
        cards["Design"] = (f"losses {swatches}<br>" + html.escape(
            f"data sets {datasets}{factors} · {trials['seed'].nunique()} seeds"))
    training = [f"{label} {', '.join(show(v) for v in _values(trials[column]))}"
                for column, label in TRAINING if column in trials]
    if training:
        cards["Training"] = html.escape(" · ".join(training))
    if claims is not None and not claims.empty:
        tally = claim_tally(claims).groupby("verdict")["units"].sum()
        cards["Claims"] = " · ".join(f'<span class="verdict {v}">{tally.get(v, 0)} {v}</span>'
                                     for v in VERDICTS) + html.escape(
            " (comparisons that share one loss's runs count once)")
    if plan.get("versions"):
        cards["Versions"] = html.escape(" · ".join(f"{k} {v}" for k, v in plan["versions"].items()))
    body = "".join(f'<div class="card"><h3>{title}</h3><p>{text}</p></div>' for title, text in cards.items())
    return Section("overview", "Overview", f"Run folder {run_dir}.", body=f'<div class="cards">{body}</div>')


def _values(column: pd.Series) -> list:
    """A column's distinct values, sorted, `none` for a missing one (a trial without a miner)."""
    present = sorted(column.dropna().unique().tolist())
    return present + (["none"] if column.isna().any() else [])


def _headline(summary: pd.DataFrame, view: _View) -> Section:
    """Per data set, a table of each loss's (and setting's) final mean [95% CI] of the headline
    metrics; the best mean of a column by the metric's better side is bold."""
    section = Section("table", "Results table",
                      "Final epoch, mean over seeds [95% bootstrap CI], from the analysis' summary; "
                      "bold: the best mean of the column (by the metric's better side) within the "
                      "data set.")
    rows = summary[(summary["stat"] == "final") & summary["metric"].isin(HEADLINE_METRICS)]
    if rows.empty:
        section.note = f"The analysis has none of {', '.join(HEADLINE_METRICS)}."
        return section
    metrics = [m for m in HEADLINE_METRICS if m in set(rows["metric"])]
    rows = rows.assign(setting=view.label(rows))
    parts = []
    for dataset, block in rows.groupby("dataset", sort=True):
        best = {m: _best(block[block["metric"] == m]["mean"], m) for m in metrics}
        body = []
        for (setting, loss), cells in block.groupby(["setting", "loss"], sort=False):
            by_metric = cells.set_index("metric")
            row = [html.escape(str(loss))] + ([html.escape(str(setting))] if view.factors else [])
            for m in metrics:
                if m not in by_metric.index:
                    row.append("")
                    continue
                cell = by_metric.loc[m]
                text = html.escape(f"{cell['mean']:.4g} [{cell['ci_low']:.4g}, {cell['ci_high']:.4g}]")
                row.append(f"<b>{text}</b>" if cell["mean"] == best[m] else text)
            body.append(row)
        order = {loss: i for i, loss in enumerate(view.losses)}
        body.sort(key=lambda r: (r[1] if view.factors else "", order.get(html.unescape(r[0]), 0)))
        header = ["loss", *(["setting"] if view.factors else []), *metrics]
        parts.append(f"<h3>{html.escape(str(dataset))}</h3>" + _table(header, body, "headline"))
    section.body = "".join(parts)
    return section


def _best(means: pd.Series, metric: str) -> float | None:
    """The best of a column's means, or None for a metric with no better side."""
    side = better(metric)
    if side is None or means.empty:
        return None
    return float(means.max() if side == "higher" else means.min())


def _normalised(table: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """NORMALISED's mean and band divided by the same curve's epoch-1 mean: contrastive's loss
    and triplet's differ in scale, so on one axis one would look flat."""
    curve = [k for k in keys if k != "epoch"]
    rows = table["metric"] == NORMALISED
    first = (table[rows].sort_values("epoch").groupby(curve, dropna=False)["mean"].first()
             .rename("first").reset_index())
    scaled = table[rows].merge(first, how="left", on=curve).set_axis(table.index[rows])
    out = table.copy()
    for column in ("mean", "low", "high"):
        out.loc[rows, column] = scaled[column] / scaled["first"].where(scaled["first"] != 0)
    out.loc[rows, "metric"] = f"{NORMALISED} ÷ epoch 1"
    return out


def _curves(run_dir: str, trials: pd.DataFrame, view: _View) -> Section:
    """One chart per data set: the per-epoch curves of the optimisation diagnostics."""
    section = Section("curves", "Learning curves",
                      "How each loss optimises: per epoch, mean over seeds and its 95% t-interval. "
                      "Losses differ in scale, so train_loss is shown divided by the same curve's "
                      "epoch-1 mean. Active ratio is the share of loss terms still non-zero. A loss "
                      "that sets no margin shows its one curve under every margin.")
    epochs = read_results(run_dir, "epochs")
    metrics = [m for m in CURVE_METRICS if m in epochs]
    if not metrics:
        section.note = f"The epochs table has none of {', '.join(CURVE_METRICS)}."
        return section
    done = trials.loc[trials["status"] == "completed", "trial_id"]
    keys = ["dataset", *view.factors, "loss", "epoch"]
    long = (epochs[epochs["trial_id"].isin(done)][[*keys, *metrics]]
            .melt(id_vars=keys, var_name="metric").dropna(subset=["value"]))
    table = (long.groupby([*keys, "metric"], dropna=False)["value"]
             .agg(n="count", mean="mean", sem="sem").reset_index())
    half = stats.t.ppf(0.975, table["n"] - 1) * table["sem"]  # NaN for a single seed: no band
    table = table.assign(low=table["mean"] - half, high=table["mean"] + half,
                         setting=view.label(table), shown_in=view.shown_in(table))
    table = _normalised(table, keys)
    metrics = [f"{m} ÷ epoch 1" if m == NORMALISED else m for m in metrics]
    columns = ["setting", "shown_in", "loss", "epoch", "metric", "n", "mean", "low", "high"]
    for dataset, rows in table.groupby("dataset", sort=True):
        chart = charts.curves_chart(rows[columns], str(dataset), metrics, view.losses, view.settings)
        section.charts[f"curves-{dataset}"] = spec(chart)
    return section


def _ci_section(anchor: str, title: str, summary: pd.DataFrame, metrics: Sequence[str],
                view: _View, note: str) -> Section:
    """Final-epoch means with bootstrap CIs of one group of metrics, from summary.parquet."""
    rows = summary[(summary["stat"] == "final") & summary["metric"].isin(metrics)]
    if rows.empty:
        return Section(anchor, title, f"The analysis has none of {', '.join(metrics)}: the results "
                       "lack them, or `mlsweep analyze --metric` left them out.")
    shown = [m for m in metrics if m in set(rows["metric"])]
    frame = rows.assign(setting=view.label(rows))[
        ["dataset", "setting", "loss", "metric", "n", "mean", "std", "ci_low", "ci_high"]]
    chart = charts.ci_chart(frame, title, shown, view.losses, view.settings)
    return Section(anchor, title, note, charts={anchor: spec(chart)})


def _pvalues(tests: pd.DataFrame, view: _View) -> Section:
    """Heat map of Holm-corrected p-values, per loss pair, metric and block."""
    section = Section("pvalues", "Significance",
                      "Each loss pair compared on the seeds both ran, within each data set and "
                      "setting; comparable metrics only. Number: the paired t-test's p, Holm within "
                      "block x metric (the tooltip names the family). Colour: which loss wins and "
                      "how surely, −log10 p signed: blue when the pair's first loss is better "
                      "(higher where the metric has no better side), red when the second is; "
                      "pale when not significant. Wilcoxon's p is a check, verdicts rest on the "
                      "t-test.")
    rows = tests[(tests["stat"] == "final") & tests["metric"].isin(PVALUE_METRICS)
                 & tests["p_holm"].notna()]
    if rows.empty:
        section.note = ("No paired tests: " + ("the run has one loss." if len(view.losses) < 2
                        else "no two losses ran the same seeds in any data set and setting."))
        return section
    side = rows["metric"].map(lambda m: -1.0 if better(m) == "lower" else 1.0)
    wins = (-np.log10(rows["p_holm"].clip(lower=1e-12)) * np.sign(rows["mean_diff"]) * side).fillna(0.0)
    frame = rows.assign(block=view.block(rows), pair=rows["loss_a"] + " vs " + rows["loss_b"],
                        p_label=rows["p_holm"].map(p_label), wins=wins)
    columns = ["pair", "block", "metric", "p_holm", "wins", "holm_family", "p_label", "t_p", "w_p",
               "mean_diff", "ci_low", "ci_high", "d_z", "n_pairs", "better", "note"]
    metrics = [m for m in PVALUE_METRICS if m in set(frame["metric"])]
    blocks = list(dict.fromkeys(frame.sort_values(["dataset", *view.factors])["block"]))
    section.charts["pvalues"] = spec(charts.pvalue_chart(frame[columns], metrics, blocks))
    return section


def _ranks(ranks: pd.DataFrame, view: _View) -> Section:
    """Critical-difference diagram of the arms' mean ranks over blocks, per metric with a
    better side (variance and greediness metrics have none, so no best to measure from)."""
    section = Section("ranks", "Critical difference",
                      "Arms (a loss with the margin it sets) ranked within each block (data set "
                      "and the factors every loss sets), ranks averaged over blocks; metrics "
                      "with a better side only. Hover a point for the Friedman test and notes.")
    rows = ranks[(ranks["stat"] == "final") & ranks["metric"].isin(CD_METRICS)
                 & ranks["mean_rank"].notna()]
    if len(view.losses) < 2 or rows.empty:
        section.note = ("One loss: there is nothing to rank." if len(view.losses) < 2
                        else "No metric has a complete block to rank the losses in.")
        return section
    rows = rows.assign(arm=view.design.arms(rows)).sort_values(["metric", "mean_rank"], kind="stable")
    by_metric = rows.groupby("metric")["mean_rank"]
    labels = {metric: _rank_label(metric, group.iloc[0])
              for metric, group in rows.groupby("metric", sort=False)}
    frame = rows.assign(is_best=~rows.duplicated("metric"),
                        cd_end=(by_metric.transform("min") + rows["cd"]).clip(
                            upper=by_metric.transform("size")),
                        label=rows["metric"].map(labels))
    order = [labels[m] for m in CD_METRICS if m in labels]
    columns = ["label", "metric", "loss", "arm", "mean_rank", "n_blocks", "friedman_p", "cd",
               "cd_end", "is_best", "note"]
    arms = list(dict.fromkeys(frame.sort_values(["loss", *view.design.arm_factors])["arm"]))
    section.charts["critical-difference"] = spec(charts.cd_chart(frame[columns], order, view.losses,
                                                                 arms))
    if rows["cd"].isna().all():
        section.note += (" No critical difference: it needs two or more blocks in which every arm "
                         "ran.")
    return section


def _claims(claims: pd.DataFrame, view: _View) -> Section:
    """The claims table with verdicts coloured."""
    n = int(claims["t_p"].notna().sum()) if not claims.empty else 0
    section = Section("claims", "Claims",
                      "Each claim per comparison of its two losses: paired t-test, Holm over all "
                      f"{n} claim tests together (not the per-block family of the heat map); "
                      "supported or contradicted when significant, else inconclusive.")
    if claims.empty:
        section.note = ("No claim could be tested: the claims name losses or metrics this run "
                        "lacks, or need two losses that ran in the same block.")
        return section
    frame = claims.assign(where=view.block(claims))
    rows = [[html.escape(r.claim), html.escape(r.where), str(r.n_pairs),
             f"{r.mean_diff:.4g} [{r.ci_low:.4g}, {r.ci_high:.4g}]", p_label(r.t_p),
             p_label(r.p_holm), f'<span class="verdict {r.verdict}">{r.verdict}</span>',
             html.escape(show(r.note))]
            for r in frame.itertuples()]
    section.body = _table(["claim", "where", "pairs", "difference a − b [95% CI]", "p (t-test)",
                           f"p (Holm, all {n} claims)", "verdict", "note"], rows, "claims")
    return section


def _failures(trials: pd.DataFrame, view: _View | None) -> Section:
    """Failed and diverged trials with their errors: first line shown, the rest on a click."""
    section = Section("failures", "Failed and diverged trials", "")
    bad = trials[trials["status"] != "completed"].sort_values(["status", "loss", "dataset"])
    if bad.empty:
        section.note = "None: every recorded trial completed."
        return section
    section.note = f"{len(bad)} of {len(trials)} trials; left out of every statistic above."
    factors = view.factors if view is not None else []
    columns = [c for c in ("trial_id", "status", "loss", "dataset", *factors, "seed", "attempts")
               if c in bad]
    rows = []
    for r in bad.head(MAX_FAILED_ROWS).to_dict("records"):
        first, _, rest = str(r.get("error") or "").strip().partition("\n")
        error = (f"<details><summary>{html.escape(first)}</summary><pre>{html.escape(rest)}</pre></details>"
                 if rest else html.escape(first))
        rows.append([html.escape(show(r[c])) for c in columns] + [error])
    section.body = _table([*columns, "error"], rows, "failures")
    if len(bad) > MAX_FAILED_ROWS:
        section.body += f"<p>… and {len(bad) - MAX_FAILED_ROWS} more (mlsweep status lists them all).</p>"
    return section


def banner(trials: pd.DataFrame, run_dir: str, partial: Partial | None) -> str:
    """The partial report's banner (HTML), or '' for the full report."""
    if partial is None:
        return ""
    planned = len(set(RunFolder(run_dir).manifest().get("trials", {})) | set(trials["trial_id"]))
    running = "" if partial.running is None else f", {partial.running} running"
    return ('<div class="partial" id="partial"><strong>Partial report</strong>: '
            f"{len(trials)} of {planned} trials recorded{running}; the sweep has not finished. "
            "This page is rewritten as trials finish: reload it. Statistics appear when the sweep "
            "ends.</div>")


def p_label(p: float) -> str:
    """A p-value to 3 significant digits: 0.0521, 0.37, 3.2e-5 (never 0.0521 as "0.05")."""
    if pd.isna(p):
        return ""
    return f"{p:.3g}" if p >= 1e-3 else re.sub(r"e-0*", "e-", f"{p:.3g}")


def _rank_label(metric: str, row: pd.Series) -> str:
    """`recall_at_1 · rank 1 = highest · CD 0.80 · 6 blocks · Friedman p 0.003`: the facts of
    one CD row (rank 1 is the best value by the metric's catalog direction)."""
    parts = [metric, "rank 1 = " + ("lowest" if better(metric) == "lower" else "highest")]
    if not math.isnan(row["cd"]):
        parts.append(f"CD {row['cd']:.2f}")
    n = int(row["n_blocks"])
    parts.append(f"{n} block" + "s" * (n != 1))
    if not math.isnan(row["friedman_p"]):
        parts.append(f"Friedman p {p_label(row['friedman_p'])}")
    return " · ".join(parts)


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.1f} min" if seconds < 7200 else f"{seconds / 3600:.1f} h"


def _table(header: list[str], rows: list[list[str]], css: str) -> str:
    """An HTML table of cells already escaped."""
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>" for row in rows)
    return f'<table class="{css}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'
