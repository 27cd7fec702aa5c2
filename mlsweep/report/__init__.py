"""`mlsweep report`: one self-contained HTML page of a run's results that works offline.

Vega, Vega-Lite and vega-embed are inlined once for the whole page (vl-convert's bundle), and each
chart is a Vega-Lite spec of rows already aggregated over seeds: the page of a 1,000-trial sweep
carries cell means per epoch, never trial or step rows, so it stays small and opens quickly. The
analysis tables come from `<run>/analysis/`; `analyze` runs first when they are missing or older
than the results, so the page never shows statistics of an earlier state of the run.

A *partial* report (`partial=`: a sweep still running) skips the analysis: it shows the trials
by status, the learning curves so far and the failures under a banner; `live` keeps one fresh.

Modules: _inputs (analysis tables and staleness, manifest), _sections (what each section shows),
_charts (the Vega-Lite specs), _page (the HTML page from page.html, page.css, page.js), _png
(writing the page and PNG export), live (the report refreshed while a sweep runs).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from mlsweep.errors import UserError

__all__ = ["Partial", "ReportError", "ReportResult", "build_report"]


class ReportError(UserError):
    """A run folder the report cannot be made of; the message is one line for the user."""


@dataclass(frozen=True)
class Partial:
    """A report of a sweep still running: `running` trials now, where known."""

    running: int | None = None


@dataclass
class ReportResult:
    """What `build_report` wrote."""

    path: str
    n_charts: int
    size: int  # bytes of the HTML file
    pngs: list[str] = field(default_factory=list)
    analyzed: bool = False  # `analyze` ran first: its tables were missing or older than the results


def build_report(run_dir: str, out: str | None = None, png_dir: str | None = None,
                 partial: Partial | None = None) -> ReportResult:
    """Write the run's report to `out` (default `<run_dir>/report.html`), atomically; with
    `png_dir`, also each chart as a PNG there, for papers and slides. With `partial`, the page
    of a sweep still running (no analysis; see the module's doc).

    When `analyze` fails (no completed trial, ...), the page is still written, with the
    overview and the failed trials that explain why, and ReportError says analyze failed and
    why: there is no chart to draw.
    """
    # Here, not at the top: the driver imports this package for its live report, and Altair,
    # vl-convert and SciPy would cost a launch seconds before its first trial.
    from mlsweep.report._inputs import analysis_tables, sweep_name
    from mlsweep.report._page import page
    from mlsweep.report._png import export_pngs, write
    from mlsweep.report._sections import banner, sections
    from mlsweep.results import join, read_results

    trials = read_results(run_dir, "trials")
    if trials.empty:
        raise ReportError(f"no trials recorded in {run_dir}: nothing to report yet "
                          "(give <storage>/<sweep name> of a launched sweep)")
    tables, analyzed, problem = ({}, False, "") if partial else analysis_tables(run_dir)
    parts = sections(run_dir, trials, tables, problem, partial)
    html = page(sweep_name(run_dir, trials), parts, analyzed, banner(trials, run_dir, partial)).encode()
    out = out or join(run_dir, "report.html")
    write(out, html)
    if problem:
        raise ReportError(f"analyze failed: {problem}; wrote {out} with the overview and the "
                          "failed trials only, no charts")
    charts = {stem: spec for section in parts for stem, spec in section.charts.items()}
    pngs = export_pngs(charts, png_dir) if png_dir is not None else []
    return ReportResult(out, len(charts), len(html), pngs, analyzed)
