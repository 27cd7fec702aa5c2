"""`mlsweep report`: one self-contained HTML page of a run's results that works offline.

Vega, Vega-Lite and vega-embed are inlined once for the whole page (vl-convert's bundle), and each
chart is a Vega-Lite spec of rows already aggregated over seeds: the page of a 1,000-trial sweep
carries cell means per epoch, never trial or step rows, so it stays small and opens quickly. The
analysis tables come from `<run>/analysis/`; `analyze` runs first when they are missing or older
than the results, so the page never shows statistics of an earlier state of the run.
"""

from __future__ import annotations

import functools
import html
import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import altair as alt
import pandas as pd
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import vl_convert as vlc
from scipy import stats

from mlsweep import report_charts as charts
from mlsweep.analysis import LOWER_IS_BETTER, AnalysisError, analyze
from mlsweep.errors import UserError
from mlsweep.results import filesystem, join, read_results, write_atomic

__all__ = ["ReportError", "ReportResult", "build_report"]

CURVE_METRICS = ("train_loss", "active_ratio", "grad_norm", "emb_grad_norm")
VARIANCE_METRICS = ("intra_var_mean", "centroid_dist_mean", "var_ratio")
RETRIEVAL_METRICS = ("recall_at_1", "map_at_r", "knn_acc")
RANKED_METRICS = (*RETRIEVAL_METRICS, *VARIANCE_METRICS, *CURVE_METRICS)  # heat map and CD rows
ANALYSIS_TABLES = ("summary", "tests", "ranks", "claims")
MAX_FAILED_ROWS = 200
# The bundle's Vega-Lite must be the version Altair writes specs for ("v6.4.1" -> "6.4").
VL_VERSION = alt.SCHEMA_VERSION.lstrip("v").rsplit(".", 1)[0]
VERDICT_ORDER = ("supported", "contradicted", "inconclusive")


class ReportError(UserError):
    """A run folder the report cannot be made of; the message is one line for the user."""


@dataclass
class ReportResult:
    """What `build_report` wrote."""

    path: str
    n_charts: int
    size: int  # bytes of the HTML file
    pngs: list[str] = field(default_factory=list)
    analyzed: bool = False  # `analyze` ran first: its tables were missing or older than the results


@dataclass
class _Section:
    """A part of the page: a note on what it shows (or why it is empty), its charts, its HTML."""

    anchor: str
    title: str
    note: str
    charts: dict[str, dict[str, Any]] = field(default_factory=dict)  # PNG file stem -> spec
    body: str = ""


@dataclass(frozen=True)
class _Design:
    """How the run's cells are laid out: the losses (colour order) and the factors that vary
    within a data set besides loss and seed (margin, ...), whose combination is a `setting`."""

    losses: list[str]
    factors: list[str]
    settings: list[str]

    @classmethod
    def of(cls, summary: pd.DataFrame) -> _Design:
        """Read off the summary table, whose columns before `metric` are the analysis' cells."""
        cells = list(summary.columns[: summary.columns.get_loc("metric")])
        within = summary.groupby("dataset", dropna=False)
        factors = [c for c in cells if c not in ("dataset", "loss")
                   and within[c].nunique(dropna=True).max() > 1]
        losses = sorted(summary["loss"].unique())
        if not factors:
            return cls(losses, [], ["all"])
        labelled = cls(losses, factors, []).label(summary[cells]).sort_values(factors)
        return cls(losses, factors, list(dict.fromkeys(labelled["setting"])))

    def label(self, frame: pd.DataFrame) -> pd.DataFrame:
        """`frame` with a `setting` column (`margin=0.5`); a row null in a factor its loss never
        sets (margin for a margin-free loss) is repeated for each value of that factor, so it
        shows beside every loss it was compared with."""
        for factor in self.factors:
            null = frame[factor].isna()
            if null.any() and not null.all():
                values = pd.DataFrame({factor: frame.loc[~null, factor].unique()})
                spread = frame[null].drop(columns=factor).merge(values, how="cross")
                frame = pd.concat([frame[~null], spread[frame.columns]], ignore_index=True)
        parts = [frame[f].map(lambda v, f=f: f"{f}={_value(v)}") for f in self.factors]
        setting = functools.reduce(lambda a, b: a + ", " + b, parts) if parts else "all"
        return frame.assign(setting=setting)

    def block(self, frame: pd.DataFrame) -> pd.Series:
        """Data set and setting of each (labelled) row: one block of the paired tests."""
        return frame["dataset"] + (" · " + frame["setting"] if self.factors else "")


def build_report(run_dir: str, out: str | None = None, png_dir: str | None = None) -> ReportResult:
    """Write the run's report to `out` (default `<run_dir>/report.html`), atomically; with
    `png_dir`, also each chart as a PNG there, for papers and slides."""
    trials = read_results(run_dir, "trials")
    if trials.empty:
        raise ReportError(f"no trials recorded in {run_dir}: nothing to report yet "
                          "(give <storage>/<sweep name> of a launched sweep)")
    tables, analyzed, problem = _analysis(run_dir)
    sections = _sections(run_dir, trials, tables, problem)
    page = _page(_sweep_name(run_dir, trials), sections, analyzed).encode()
    out = out or join(run_dir, "report.html")
    _write(out, page)
    pngs = _export_pngs(sections, png_dir) if png_dir is not None else []
    n_charts = sum(len(section.charts) for section in sections)
    return ReportResult(out, n_charts, len(page), pngs, analyzed)


# --- inputs ----------------------------------------------------------------------------------


def _analysis(run_dir: str) -> tuple[dict[str, pd.DataFrame], bool, str]:
    """The analysis tables, whether `analyze` ran for them, and why there are none (no
    completed trials) or ''."""
    fs, base = filesystem(run_dir)
    paths = [join(base, "analysis", f"{name}.parquet") for name in ANALYSIS_TABLES]
    if not _stale(fs, base, paths):
        return ({name: pq.read_table(path, filesystem=fs).to_pandas()
                 for name, path in zip(ANALYSIS_TABLES, paths, strict=True)}, False, "")
    try:
        result = analyze(run_dir)
    except AnalysisError as error:
        return {}, True, str(error)
    return {name: getattr(result, name) for name in ANALYSIS_TABLES}, True, ""


def _stale(fs: pafs.FileSystem, base: str, outputs: list[str]) -> bool:
    """An output is missing, or a results file is newer than the oldest output."""
    written = fs.get_file_info(outputs)
    if any(info.type != pafs.FileType.File for info in written):
        return True
    results = [info for table in ("trials", "epochs")
               for info in fs.get_file_info(pafs.FileSelector(join(base, "results", table),
                                                              allow_not_found=True))]
    oldest = min(info.mtime_ns or 0 for info in written)
    return any((info.mtime_ns or 0) > oldest for info in results)


def _manifest(run_dir: str) -> dict[str, Any]:
    """The run's manifest.json, or {} for a folder without one (`mlsweep train --out`)."""
    fs, base = filesystem(run_dir)
    path = join(base, "manifest.json")
    if fs.get_file_info(path).type != pafs.FileType.File:
        return {}
    with fs.open_input_stream(path) as stream:
        return json.loads(stream.readall())


def _sweep_name(run_dir: str, trials: pd.DataFrame) -> str:
    names = trials["sweep"].dropna().unique() if "sweep" in trials else []
    return str(names[0]) if len(names) else run_dir.rstrip("/").rsplit("/", 1)[-1]


# --- sections --------------------------------------------------------------------------------


def _sections(run_dir: str, trials: pd.DataFrame, tables: dict[str, pd.DataFrame],
              problem: str) -> list[_Section]:
    """Every section in page order; without analysis tables the charts say why they are empty."""
    design = _Design.of(tables["summary"]) if tables and not tables["summary"].empty else None
    overview = _overview(run_dir, trials, tables.get("claims"), design)
    failures = _failures(trials, design)
    if design is None:
        reason = f"Nothing to show: {problem or 'the analysis has no rows'}."
        empty = [_Section(anchor, title, reason) for anchor, title in (
            ("curves", "Learning curves"), ("variance", "Embedding variance"),
            ("retrieval", "Retrieval"), ("pvalues", "Significance"),
            ("ranks", "Critical difference"), ("claims", "Claims"))]
        return [overview, *empty, failures]
    summary = tables["summary"]
    return [
        overview,
        _curves(run_dir, trials, design),
        _ci_section("variance", "Embedding variance", summary, VARIANCE_METRICS, design,
                    "Spread within classes and between centroids of the test embeddings."),
        _ci_section("retrieval", "Retrieval", summary, RETRIEVAL_METRICS, design,
                    "Test set as query and gallery, self excluded; kNN fitted on train embeddings."),
        _pvalues(tables["tests"], design),
        _ranks(tables["ranks"], design),
        _claims(tables["claims"], design),
        failures,
    ]


def _overview(run_dir: str, trials: pd.DataFrame, claims: pd.DataFrame | None,
              design: _Design | None) -> _Section:
    """Trials by status, wall time, devices, the design and the claims' verdicts at a glance."""
    manifest = _manifest(run_dir)
    counts = trials["status"].value_counts()
    status = [f"{counts.get(s, 0)} {s}" for s in ("completed", "failed", "diverged")]
    if manifest.get("trials"):
        pending = len(set(manifest["trials"]) - set(trials["trial_id"]))
        status = [f"{len(manifest['trials'])} planned", *status, f"{pending} pending"]
    span = (trials["finished_at"].max() - trials["started_at"].min()).total_seconds()
    devices = ", ".join(f"{device} × {n}" for device, n in trials["device"].value_counts().items())
    cards = {  # title -> HTML
        "Trials": html.escape(" · ".join(status)),
        "Wall time": html.escape(f"{_duration(span)} from first start to last finish · "
                                 f"{_duration(trials['wall_s'].sum())} summed over trials"),
        "Devices": html.escape(f"{devices} on {trials['node'].nunique()} node(s)"),
    }
    if design is not None:
        swatches = " ".join(f'<span class="loss" style="--c:{color}">{html.escape(loss)}</span>'
                            for loss, color in charts.loss_colors(design.losses).items())
        datasets = ", ".join(sorted(trials["dataset"].dropna().unique()))
        factors = "".join(f" · {f} " + ", ".join(_value(v) for v in sorted(trials[f].dropna().unique()))
                          for f in design.factors)
        cards["Design"] = (f"losses {swatches}<br>" + html.escape(
            f"data sets {datasets}{factors} · {trials['seed'].nunique()} seeds"))
    if claims is not None and not claims.empty:
        tally = claims["verdict"].value_counts()
        cards["Claims"] = " · ".join(f'<span class="verdict {v}">{tally.get(v, 0)} {v}</span>'
                                     for v in VERDICT_ORDER)
    if manifest.get("versions"):
        cards["Versions"] = html.escape(" · ".join(f"{k} {v}" for k, v in manifest["versions"].items()))
    body = "".join(f'<div class="card"><h3>{title}</h3><p>{text}</p></div>' for title, text in cards.items())
    return _Section("overview", "Overview", f"Run folder {run_dir}.", body=f'<div class="cards">{body}</div>')


def _curves(run_dir: str, trials: pd.DataFrame, design: _Design) -> _Section:
    """One chart per data set: the per-epoch curves of the optimisation diagnostics."""
    section = _Section("curves", "Learning curves",
                       "How each loss optimises: per epoch, mean over seeds and its 95% t-interval. "
                       "Active ratio is the share of loss terms still non-zero.")
    epochs = read_results(run_dir, "epochs")
    metrics = [m for m in CURVE_METRICS if m in epochs]
    if not metrics:
        section.note = f"The epochs table has none of {', '.join(CURVE_METRICS)}."
        return section
    done = trials.loc[trials["status"] == "completed", "trial_id"]
    keys = ["dataset", *design.factors, "loss", "epoch"]
    long = (epochs[epochs["trial_id"].isin(done)][[*keys, *metrics]]
            .melt(id_vars=keys, var_name="metric").dropna(subset=["value"]))
    table = (long.groupby([*keys, "metric"], dropna=False)["value"]
             .agg(n="count", mean="mean", sem="sem").reset_index())
    half = stats.t.ppf(0.975, table["n"] - 1) * table["sem"]  # NaN for a single seed: no band
    table = design.label(table.assign(low=table["mean"] - half, high=table["mean"] + half))
    columns = ["setting", "loss", "epoch", "metric", "n", "mean", "low", "high"]
    for dataset, rows in table.groupby("dataset", sort=True):
        chart = charts.curves_chart(rows[columns], str(dataset), metrics, design.losses,
                                    design.settings)
        section.charts[f"curves-{dataset}"] = _spec(chart)
    return section


def _ci_section(anchor: str, title: str, summary: pd.DataFrame, metrics: Sequence[str],
                design: _Design, note: str) -> _Section:
    """Final-epoch means with bootstrap CIs of one group of metrics, from summary.parquet."""
    rows = summary[(summary["stat"] == "final") & summary["metric"].isin(metrics)]
    if rows.empty:
        return _Section(anchor, title, f"The analysis has none of {', '.join(metrics)}: the results "
                        "lack them, or `mlsweep analyze --metric` left them out.")
    shown = [m for m in metrics if m in set(rows["metric"])]
    frame = design.label(rows)[["dataset", "setting", "loss", "metric", "n", "mean", "std", "ci_low",
                                "ci_high"]]
    chart = charts.ci_chart(frame, title, shown, design.losses, design.settings)
    return _Section(anchor, title, note, charts={anchor: _spec(chart)})


def _pvalues(tests: pd.DataFrame, design: _Design) -> _Section:
    """Heat map of Holm-corrected p-values, per loss pair, metric and block."""
    section = _Section("pvalues", "Significance",
                       "Each loss pair compared on the seeds both ran, within each data set and "
                       "setting. Hover a cell for the difference, its CI, the effect size and n.")
    rows = tests[(tests["stat"] == "final") & tests["metric"].isin(RANKED_METRICS)
                 & tests["p_holm"].notna()]
    if rows.empty:
        section.note = ("No paired tests: " + ("the run has one loss." if len(design.losses) < 2
                        else "no two losses ran the same seeds in any data set and setting."))
        return section
    frame = design.label(rows)
    frame = frame.assign(block=design.block(frame), pair=frame["loss_a"] + " vs " + frame["loss_b"],
                         p_label=frame["p_holm"].map(_p_label))
    columns = ["pair", "block", "metric", "p_holm", "p_label", "t_p", "w_p", "mean_diff",
               "ci_low", "ci_high", "d_z", "n_pairs", "better", "note"]
    metrics = [m for m in RANKED_METRICS if m in set(frame["metric"])]
    blocks = list(dict.fromkeys(frame.sort_values(["dataset", *design.factors])["block"]))
    section.charts["pvalues"] = _spec(charts.pvalue_chart(frame[columns], metrics, blocks))
    return section


def _ranks(ranks: pd.DataFrame, design: _Design) -> _Section:
    """Critical-difference diagram of the mean ranks over blocks, per metric."""
    section = _Section("ranks", "Critical difference",
                       "Losses ranked within each data set and setting (block), ranks averaged over "
                       "blocks. Hover a point for the Friedman test and notes.")
    rows = ranks[(ranks["stat"] == "final") & ranks["metric"].isin(RANKED_METRICS)
                 & ranks["mean_rank"].notna()]
    if len(design.losses) < 2 or rows.empty:
        section.note = ("One loss: there is nothing to rank." if len(design.losses) < 2
                        else "No metric has a complete block to rank the losses in.")
        return section
    rows = rows.sort_values(["metric", "mean_rank"], kind="stable")
    best = rows.groupby("metric")["mean_rank"].transform("min")
    labels = {metric: _rank_label(metric, group.iloc[0])
              for metric, group in rows.groupby("metric", sort=False)}
    frame = rows.assign(is_best=~rows.duplicated("metric"),
                        cd_end=(best + rows["cd"]).clip(upper=len(design.losses)),
                        label=rows["metric"].map(labels))
    order = [labels[m] for m in RANKED_METRICS if m in labels]
    columns = ["label", "metric", "loss", "mean_rank", "n_blocks", "friedman_p", "cd", "cd_end",
               "is_best", "note"]
    section.charts["critical-difference"] = _spec(charts.cd_chart(frame[columns], order, design.losses))
    if rows["cd"].isna().all():
        section.note += (" No critical difference: it needs two or more blocks in which every loss "
                         "ran.")
    return section


def _claims(claims: pd.DataFrame, design: _Design) -> _Section:
    """The claims table with verdicts coloured."""
    section = _Section("claims", "Claims",
                       "Each claim per data set and setting: paired t-test, Holm over all claim "
                       "tests; supported or contradicted when significant, else inconclusive.")
    if claims.empty:
        section.note = ("No claim could be tested: the claims name losses or metrics this run "
                        "lacks, or need two losses that ran in the same block.")
        return section
    frame = design.label(claims)
    frame = frame.assign(where=design.block(frame))
    rows = [[html.escape(r.claim), html.escape(r.where), str(r.n_pairs),
             f"{r.mean_diff:.4g} [{r.ci_low:.4g}, {r.ci_high:.4g}]", _p_label(r.p_holm),
             f'<span class="verdict {r.verdict}">{r.verdict}</span>', html.escape(_value(r.note))]
            for r in frame.itertuples()]
    section.body = _table(["claim", "where", "pairs", "difference a − b [95% CI]", "p (Holm)",
                           "verdict", "note"], rows, "claims")
    return section


def _failures(trials: pd.DataFrame, design: _Design | None) -> _Section:
    """Failed and diverged trials with their errors: first line shown, the rest on a click."""
    section = _Section("failures", "Failed and diverged trials", "")
    bad = trials[trials["status"] != "completed"].sort_values(["status", "loss", "dataset"])
    if bad.empty:
        section.note = "None: every recorded trial completed."
        return section
    section.note = f"{len(bad)} of {len(trials)} trials; left out of every statistic above."
    factors = design.factors if design is not None else []
    columns = [c for c in ("trial_id", "status", "loss", "dataset", *factors, "seed", "attempts")
               if c in bad]
    rows = []
    for r in bad.head(MAX_FAILED_ROWS).to_dict("records"):
        first, _, rest = str(r.get("error") or "").strip().partition("\n")
        error = (f"<details><summary>{html.escape(first)}</summary><pre>{html.escape(rest)}</pre></details>"
                 if rest else html.escape(first))
        rows.append([html.escape(_value(r[c])) for c in columns] + [error])
    section.body = _table([*columns, "error"], rows, "failures")
    if len(bad) > MAX_FAILED_ROWS:
        section.body += f"<p>… and {len(bad) - MAX_FAILED_ROWS} more (mlsweep status lists them all).</p>"
    return section


# --- formatting ------------------------------------------------------------------------------


def _value(value: Any) -> str:
    """A value in a label or table cell: 0.5 and 1 rather than 0.50 and 1.0; missing is ''."""
    if pd.isna(value):
        return ""
    return f"{value:g}" if isinstance(value, float) else str(value)


def _p_label(p: float) -> str:
    """Short p-value text for a heat-map cell: 0.37, 0.04, 3e-3, 5e-9."""
    if p >= 0.01:
        return f"{p:.2f}"
    return re.sub(r"e-0*", "e-", f"{p:.0e}")


def _rank_label(metric: str, row: pd.Series) -> str:
    """`recall_at_1 · rank 1 = highest · CD 0.80 · 6 blocks · Friedman p 0.003`: the facts of
    one CD row (rank 1 is the highest value but for losses and times)."""
    parts = [metric, "rank 1 = " + ("lowest" if metric in LOWER_IS_BETTER else "highest")]
    if not math.isnan(row["cd"]):
        parts.append(f"CD {row['cd']:.2f}")
    n = int(row["n_blocks"])
    parts.append(f"{n} block" + "s" * (n != 1))
    if not math.isnan(row["friedman_p"]):
        parts.append(f"Friedman p {row['friedman_p']:.2g}")
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


def _spec(chart: alt.TopLevelMixin) -> dict[str, Any]:
    """The chart's Vega-Lite spec with its data inline, however many rows (they are aggregates)."""
    with alt.data_transformers.enable("default", max_rows=None):
        return chart.to_dict()


def _packed(spec: dict[str, Any]) -> dict[str, Any]:
    """The spec for the page: each inline dataset column-wise, strings as indices into a list
    of levels, numbers to 4 significant digits (what the tooltips show). Vega's row objects
    repeat every key and label on every row, which made the page of a 1,000-trial sweep three
    times larger. The page's script unpacks the rows before embedding."""
    datasets = {}
    for name, rows in spec.get("datasets", {}).items():
        frame = pd.DataFrame.from_records(rows)
        columns, levels = [], {}
        for field_name in frame.columns:
            values = frame[field_name]
            if pd.api.types.is_float_dtype(values):  # None became NaN in from_records
                columns.append([float(f"{v:.4g}") if math.isfinite(v) else None for v in values])
            elif any(isinstance(v, str) for v in values):
                codes, uniques = pd.factorize(values)
                columns.append([None if code < 0 else int(code) for code in codes])
                levels[field_name] = list(uniques)
            else:
                columns.append([None if pd.isna(v) else v for v in values.tolist()])
        datasets[name] = {"fields": list(frame.columns), "columns": columns, "levels": levels}
    return {**spec, "datasets": datasets}


# --- page ------------------------------------------------------------------------------------


@functools.cache
def _vega_bundle() -> str:
    """Vega, Vega-Lite and vega-embed as one script (vl-convert ships them: no network)."""
    return vlc.javascript_bundle(vl_version=VL_VERSION).replace("</script", "<\\/script")


_CSS = """
body{font:14px/1.45 system-ui,sans-serif;margin:0;color:#222;background:#fafafa}
header{background:#1f2d3d;color:#fff;padding:18px 32px}
header h1{margin:0;font-size:22px}
header p{margin:4px 0 0;opacity:.8}
nav{padding:8px 32px;background:#eef1f4;position:sticky;top:0;z-index:2}
nav a{margin-right:16px;color:#1f4e79;text-decoration:none}
main{padding:0 32px 48px;max-width:1400px}
section{margin-top:28px}
h2{font-size:18px;margin:0 0 4px;border-bottom:1px solid #ddd}
.note{color:#555;margin:4px 0 12px}
.chart{overflow-x:auto;margin:8px 0 20px}
.cards{display:flex;flex-wrap:wrap;gap:12px}
.card{background:#fff;border:1px solid #ddd;border-radius:6px;padding:10px 14px;min-width:220px;flex:1}
.card h3{margin:0;font-size:12px;text-transform:uppercase;color:#666}
.card p{margin:4px 0 0}
.loss{border-left:12px solid var(--c);padding-left:4px;margin-right:8px}
table{border-collapse:collapse;background:#fff;font-size:13px}
th,td{border:1px solid #ddd;padding:4px 8px;text-align:left;vertical-align:top}
th{background:#f0f0f0}
.verdict{padding:1px 6px;border-radius:3px;font-weight:600;white-space:nowrap}
.supported{background:#d4edda;color:#155724}
.contradicted{background:#f8d7da;color:#721c24}
.inconclusive{background:#e2e3e5;color:#383d41}
pre{white-space:pre-wrap;font-size:12px;margin:4px 0}
"""

_EMBED = """
// Datasets come column-wise, strings as indices into `levels` (see _packed): rows again here.
function unpack(data) {
  return Array.from({length: data.columns[0].length}, (_, i) => Object.fromEntries(
    data.fields.map((field, j) => {
      const value = data.columns[j][i];
      return [field, field in data.levels && value !== null ? data.levels[field][value] : value];
    })));
}
const specs = JSON.parse(document.getElementById("mlsweep-specs").textContent);
for (const [id, spec] of Object.entries(specs)) {
  for (const name in spec.datasets) spec.datasets[name] = unpack(spec.datasets[name]);
  vegaEmbed("#" + id, spec, {renderer: "svg", actions: false}).catch((error) => {
    document.getElementById(id).textContent = "This chart failed to render: " + error;
    console.error(error);
  });
}
"""


def _page(name: str, sections: list[_Section], analyzed: bool) -> str:
    """The whole HTML document: scripts inlined once, specs in one JSON block, charts as divs."""
    specs: dict[str, dict[str, Any]] = {}
    parts = []
    for section in sections:
        divs = []
        for spec in section.charts.values():
            chart_id = f"chart-{len(specs)}"
            specs[chart_id] = _packed(spec)
            divs.append(f'<div class="chart" id="{chart_id}"></div>')
        parts.append(f'<section id="{section.anchor}"><h2>{html.escape(section.title)}</h2>'
                     f'<p class="note">{html.escape(section.note)}</p>{section.body}'
                     f'{"".join(divs)}</section>')
    nav = "".join(f'<a href="#{s.anchor}">{html.escape(s.title)}</a>' for s in sections)
    when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    source = "analysis run now" if analyzed else "analysis tables up to date"
    # "<" escaped inside the JSON, so no string in the data (an error message) can end the script.
    data = json.dumps(specs, separators=(",", ":"), allow_nan=False).replace("<", "\\u003c")
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width,initial-scale=1">
<title>{html.escape(name)} · mlsweep report</title><style>{_CSS}</style>
<script>{_vega_bundle()}</script></head>
<body><header><h1>{html.escape(name)}</h1><p>mlsweep report · {when} · {source}</p></header>
<nav>{nav}</nav><main>{"".join(parts)}</main>
<script type="application/json" id="mlsweep-specs">{data}</script>
<script>{_EMBED}</script></body></html>
"""


# --- output ----------------------------------------------------------------------------------


def _write(path: str, data: bytes) -> None:
    """`data` to a local path or s3:// URI, atomically."""
    fs, target = filesystem(path)
    write_atomic(fs, target, lambda stream: stream.write(data))


def _export_pngs(sections: list[_Section], png_dir: str) -> list[str]:
    """Each chart as `<png_dir>/<name>.png` at twice the screen resolution (vl-convert, offline)."""
    paths = []
    for section in sections:
        for stem, spec in section.charts.items():
            path = join(png_dir, f"{_slug(stem)}.png")
            _write(path, vlc.vegalite_to_png(spec, vl_version=VL_VERSION, scale=2))
            paths.append(path)
    return paths


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-") or "chart"
