"""`mlsweep report`: the page of a real sweep, opened offline in a real headless Chromium."""

from __future__ import annotations

import itertools
import json
import os
import re
import shutil
import signal
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from conftest import ROOT, load_yaml, write_sweep
from typer.testing import CliRunner

from mlsweep.analysis import better
from mlsweep.cli import app
from mlsweep.report import ReportError, ReportResult, build_report
from mlsweep.report._sections import p_label
from mlsweep.results import read_results, write_trial

CHROMIUM = "/usr/bin/chromium"  # Debian's package; .ci/run installs it
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update"]
ALL_RENDERED = "[...document.querySelectorAll('.chart')].every(d => d.querySelector('svg, canvas'))"
SMOKE_CHARTS = {"curves-digits", "variance", "retrieval", "pvalues", "critical-difference"}


@pytest.fixture(scope="module")
def smoke_dir(smoke_run: tuple[dict[str, Any], Path, Any],
              tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the session's smoke sweep results, plus a failed and a diverged trial recorded
    with the driver's own writer (test_orchestrator runs such trials for real)."""
    _, storage, summary = smoke_run
    assert summary.by_status == {"completed": 4}
    run_dir = tmp_path_factory.mktemp("report") / "smoke"
    shutil.copytree(storage / "smoke", run_dir,
                    ignore=shutil.ignore_patterns("analysis", ".cache", "report.html"))
    trials, epochs = read_results(str(run_dir), "trials"), read_results(str(run_dir), "epochs")
    # Nulls back to None: an int64 column with nulls reads as float NaN.
    row = {k: None if isinstance(v, float) and v != v else v for k, v in trials.iloc[0].to_dict().items()}
    config = {k: row[k] for k in trials.columns if k in epochs.columns and k not in ("trial_id", "sweep")}
    for trial_id, status, error in (
            ("f00000000001", "failed", "InjectedFailure: failing on purpose\n  File loop.py, line 113"),
            ("d00000000002", "diverged", "non-finite loss at epoch 1, step 3")):
        record = {**row, "trial_id": trial_id, "status": status, "error": error, "epochs_run": 0}
        write_trial(str(run_dir), trial_id, "smoke", config, record, [], [])
    return run_dir


@pytest.fixture(scope="module")
def smoke_report(smoke_dir: Path) -> ReportResult:
    return build_report(str(smoke_dir))


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Debian's Chromium driven by Playwright. Missing, the tests fail: they never skip."""
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).is_file():
        pytest.fail(f"{CHROMIUM} is missing: apt-get install chromium (the report tests open the "
                    "page in a real browser)")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


def open_offline(browser: Any, page_path: Path) -> dict[str, Any]:
    """Open the page from a file:// URL with the network off and every other request refused;
    wait until every chart has drawn. What the page logged and asked for comes back."""
    context = browser.new_context(offline=True, viewport={"width": 1400, "height": 1000})
    left: list[str] = []

    def guard(route: Any) -> None:
        if route.request.url.startswith("file://"):
            route.continue_()
        else:
            left.append(route.request.url)
            route.abort()

    context.route("**/*", guard)
    page = context.new_page()
    errors: list[str] = []
    requests: list[str] = []
    page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.on("request", lambda request: requests.append(request.url))
    start = time.monotonic()
    page.goto(page_path.as_uri())
    page.wait_for_function(ALL_RENDERED, timeout=30_000)
    seconds = time.monotonic() - start
    drawn = page.eval_on_selector_all(
        ".chart", "divs => divs.map(d => d.querySelectorAll('svg, canvas').length)")
    marks = page.eval_on_selector_all(".chart", "divs => divs.map(d => d.querySelectorAll('path').length)")
    return {"page": page, "context": context, "errors": errors, "left": left, "seconds": seconds,
            "requests": requests, "drawn": drawn, "marks": marks}


def specs_of(html: str) -> dict[str, Any]:
    block = re.search(r'<script type="application/json" id="mlsweep-specs">(.*?)</script>', html, re.S)
    assert block is not None
    return json.loads(block.group(1))


def test_smoke_report_renders_offline_in_chromium(smoke_report: ReportResult, browser: Any) -> None:
    opened = open_offline(browser, Path(smoke_report.path))
    page = opened["page"]
    try:
        assert smoke_report.n_charts == len(SMOKE_CHARTS)
        assert opened["drawn"] == [1] * smoke_report.n_charts  # an svg per chart, every chart
        assert all(n > 10 for n in opened["marks"]), opened["marks"]  # drawn, not just a frame
        assert opened["errors"] == []
        assert opened["left"] == [] and all(u.startswith("file://") for u in opened["requests"])
        claims = page.inner_text("#claims")
        assert "triplet intra_var_mean > contrastive (final)" in claims
        assert re.search(r"supported|contradicted|inconclusive", claims)
        assert "p (Holm, all 6 claims)" in claims and "Holm over all 6 claim tests" in claims
        failures = page.inner_text("#failures")
        assert "InjectedFailure: failing on purpose" in failures and "non-finite loss" in failures
        assert "2 of 6 trials" in failures
        overview = page.inner_text("#overview")
        assert "4 completed · 1 failed · 1 diverged" in overview
        # A click on a legend entry highlights that loss: the other loss's lines fade.
        lines = ("() => [...document.querySelectorAll('#chart-0 .mark-line path')]"
                 ".map(p => p.getAttribute('opacity'))")
        assert set(page.evaluate(lines)) == {"1"}
        page.locator("#chart-0 .role-legend-label text", has_text="triplet").click()
        page.wait_for_function(f"({lines})().some(o => o !== '1')")
        assert sorted(set(page.evaluate(lines))) == ["0.15", "1"]
    finally:
        opened["context"].close()


def test_page_inlines_the_scripts_once_and_uses_one_colour_per_loss(smoke_report: ReportResult) -> None:
    html = Path(smoke_report.path).read_text()
    assert smoke_report.size == len(html.encode())
    assert html.count("window.vegaEmbed=") == 1  # the bundle, once for the page
    assert external_references(html) == []
    specs = specs_of(html)
    assert len(specs) == smoke_report.n_charts
    colours = [{tuple(scale["range"]) for scale in loss_scales(spec)} for spec in specs.values()]
    assert sum(map(bool, colours)) == len(specs) - 1  # every chart but the heat map colours losses
    assert len(set().union(*colours)) == 1  # ... with the same colours


def external_references(html: str) -> list[str]:
    """Every src or href of the page's own tags (not strings inside its scripts) but anchors."""
    found: list[str] = []

    class Parser(HTMLParser):
        def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
            found.extend(f"{tag} {value}" for name, value in attrs
                         if name in ("src", "href") and not (value or "").startswith("#"))

    Parser().feed(html)
    return found


def loss_scales(node: Any) -> Iterator[dict[str, Any]]:
    """Every scale in a spec whose domain is the smoke sweep's losses and that sets colours."""
    if isinstance(node, dict):
        if node.get("domain") == ["contrastive", "triplet"] and "range" in node:
            yield node
        for value in node.values():
            yield from loss_scales(value)
    elif isinstance(node, list):
        for value in node:
            yield from loss_scales(value)


def test_png_export_writes_each_chart(smoke_dir: Path, tmp_path: Path) -> None:
    result = build_report(str(smoke_dir), out=str(tmp_path / "page.html"), png_dir=str(tmp_path / "png"))
    assert result.path == str(tmp_path / "page.html") and (tmp_path / "page.html").is_file()
    assert {Path(p).stem for p in result.pngs} == SMOKE_CHARTS
    for path in result.pngs:
        head = Path(path).read_bytes()[:24]
        assert head[:8] == b"\x89PNG\r\n\x1a\n"
        width, height = struct.unpack(">II", head[16:24])
        assert width > 300 and height > 150, (path, width, height)


def test_analysis_runs_only_when_missing_or_older_than_results(smoke_dir: Path,
                                                               smoke_report: ReportResult,
                                                               tmp_path: Path) -> None:
    assert smoke_report.analyzed  # the fixture's run had no analysis/ yet
    out = str(tmp_path / "r.html")
    assert not build_report(str(smoke_dir), out=out).analyzed
    earlier = time.time() - 3600  # before the sweep wrote its results
    for table in (smoke_dir / "analysis").glob("*.parquet"):
        os.utime(table, (earlier, earlier))
    assert build_report(str(smoke_dir), out=out).analyzed
    assert not build_report(str(smoke_dir), out=out).analyzed


def test_one_loss_run_still_gives_a_page_that_says_why_sections_are_empty(
        smoke_dir: Path, smoke_report: ReportResult, tmp_path: Path, browser: Any) -> None:
    run_dir = tmp_path / "smoke"
    shutil.copytree(smoke_dir, run_dir, ignore=shutil.ignore_patterns("analysis", "tune", "report.html"))
    trials = read_results(str(run_dir), "trials")
    for trial_id in trials.loc[trials["loss"] == "triplet", "trial_id"]:
        for file in (run_dir / "results").glob(f"*/{trial_id}.parquet"):
            file.unlink()
    result = build_report(str(run_dir))
    assert result.n_charts == 3  # curves, variance, retrieval: nothing to compare or rank
    opened = open_offline(browser, Path(result.path))
    try:
        page = opened["page"]
        assert opened["drawn"] == [1, 1, 1] and opened["errors"] == [] and opened["left"] == []
        assert "the run has one loss" in page.inner_text("#pvalues")
        assert "One loss: there is nothing to rank" in page.inner_text("#ranks")
        assert "No claim could be tested" in page.inner_text("#claims")
    finally:
        opened["context"].close()


def write_large_run(run_dir: Path, epochs: int = 10,
                    losses: tuple[str, ...] = ("contrastive", "triplet", "npair", "infonce", "supcon"),
                    margins: tuple[float, ...] = (0.1, 0.2, 0.5, 1.0),
                    lrs: tuple[float, ...] = (1e-4, 3e-4, 1e-3, 3e-3, 1e-2),
                    margin_free: tuple[str, ...] = ()) -> int:
    """1,000 completed trials (5 losses x 2 data sets x 4 margins x 5 learning rates x 5 seeds)
    with made-up epoch values, each table as one Parquet file, as fast to write as to read.
    `margin_free` losses run once per data set, learning rate and seed, with margin null."""
    rng = np.random.default_rng(0)
    grid = itertools.product(losses, ["digits", "synthetic"], margins, lrs, range(5))
    trials = pd.DataFrame(grid, columns=["loss", "dataset", "margin", "lr", "seed"])
    trials.loc[trials["loss"].isin(margin_free), "margin"] = np.nan
    trials = trials.drop_duplicates(ignore_index=True)
    trials.insert(0, "trial_id", [f"trial{i:04d}" for i in range(len(trials))])
    trials.insert(1, "sweep", "large")
    start = pd.Timestamp("2025-01-01", tz="UTC")
    trials = trials.assign(status="completed", error=None, attempts=1, wall_s=60.0, device="cuda",
                           epochs=epochs, batch_size=128, model="mlp", miner=None,
                           node=[f"node{i % 4}" for i in range(len(trials))], started_at=start,
                           finished_at=start + pd.Timedelta(hours=2))
    epoch_rows = trials.iloc[:, :7].merge(pd.DataFrame({"epoch": range(1, epochs + 1)}), how="cross")
    shift = epoch_rows["loss"].map({loss: i / 10 for i, loss in enumerate(losses)})
    for metric in ("train_loss", "active_ratio", "grad_norm", "emb_grad_norm", "intra_var_mean",
                   "centroid_dist_mean", "var_ratio", "recall_at_1", "map_at_r", "knn_acc"):
        epoch_rows[metric] = rng.random(len(epoch_rows)) / 10 + shift + 1 / epoch_rows["epoch"]
    for table, frame in (("trials", trials), ("epochs", epoch_rows)):
        (run_dir / "results" / table).mkdir(parents=True)
        frame.to_parquet(run_dir / "results" / table / "all.parquet", index=False)
    return len(trials)


def test_report_of_1000_trials_is_small_and_opens_quickly(tmp_path: Path, browser: Any) -> None:
    run_dir = tmp_path / "large"
    assert write_large_run(run_dir) == 1000
    result = build_report(str(run_dir))
    assert result.analyzed and result.n_charts == 6
    assert result.size < 2_200_000  # ~0.9 MB of it the Vega scripts
    html = Path(result.path).read_text()
    assert "trial0001" not in html  # aggregates only: no trial (or step) rows
    rows = {chart_id: len(next(iter(spec["datasets"].values()))["columns"][0])
            for chart_id, spec in specs_of(html).items()}
    # Curves of one data set: 20 settings x 5 losses x 10 epochs x 4 metrics, seeds averaged.
    assert rows["chart-0"] == rows["chart-1"] == 20 * 5 * 10 * 4
    opened = open_offline(browser, Path(result.path))
    try:
        assert opened["drawn"] == [1] * 6 and opened["errors"] == []
        assert opened["seconds"] < 15, opened["seconds"]
    finally:
        opened["context"].close()


def test_cli_report_prints_what_it_wrote_and_refuses_a_folder_without_results(
        smoke_dir: Path, smoke_report: ReportResult, tmp_path: Path) -> None:
    runner = CliRunner()
    out = tmp_path / "cli.html"
    done = runner.invoke(app, ["report", str(smoke_dir), "--out", str(out)])
    assert done.exit_code == 0, done.output
    assert str(out) in done.output and "5 charts" in done.output and out.is_file()
    empty = runner.invoke(app, ["report", str(tmp_path / "nothing")])
    assert empty.exit_code == 2 and "nothing: not a run folder" in empty.output
    (tmp_path / "bare" / "results").mkdir(parents=True)
    bare = runner.invoke(app, ["report", str(tmp_path / "bare")])
    assert bare.exit_code == 2 and "error: no trials recorded" in bare.output
    assert "Traceback" not in empty.output


def chart_rows(spec: dict[str, Any]) -> pd.DataFrame:
    """The rows of a packed spec's (single) dataset, unpacked as the page's script does."""
    data = next(iter(spec["datasets"].values()))
    frame = pd.DataFrame(dict(zip(data["fields"], data["columns"], strict=True)))
    for name, levels in data["levels"].items():
        frame[name] = frame[name].map(
            lambda code, levels=levels: None if pd.isna(code) else levels[int(code)])
    return frame


def test_margin_free_loss_is_plotted_once_and_only_comparable_metrics_are_compared(
        tmp_path: Path) -> None:
    """Issue 14 items 4 and 5: supcon (no margin) is one point per data set in the CI charts,
    one curve per epoch under every margin, one arm in the CD diagram; train_loss is no row of
    the p-value map, grad_norm (no better side) none of the CD diagram."""
    run_dir = tmp_path / "mixed"
    n = write_large_run(run_dir, epochs=3, losses=("contrastive", "triplet", "supcon"),
                        margins=(0.2, 1.0), lrs=(1e-3,), margin_free=("supcon",))
    assert n == 2 * 2 * 2 * 5 + 2 * 5
    result = build_report(str(run_dir))
    specs = specs_of(Path(result.path).read_text())
    rows = {chart_id: chart_rows(spec) for chart_id, spec in specs.items()}
    curves, _, variance, retrieval, pvalues, ranks = rows.values()
    for table in (variance, retrieval):
        supcon = table[table["loss"] == "supcon"]
        assert set(supcon["setting"]) == {"no margin"}
        assert len(supcon) == len(supcon[["dataset", "metric"]].drop_duplicates())
        assert set(table.loc[table["loss"] == "triplet", "setting"]) == {"margin=0.2", "margin=1"}
    supcon = curves[curves["loss"] == "supcon"]
    assert len(supcon) == 3 * supcon["metric"].nunique()  # one row per epoch and metric
    assert set(supcon["shown_in"]) == {"|margin=0.2|margin=1|no margin|"}
    assert set(curves.loc[curves["loss"] == "triplet", "shown_in"]) == {"|margin=0.2|", "|margin=1|"}
    assert "train_loss" not in set(pvalues["metric"]) and "grad_norm" not in set(ranks["metric"])
    assert {"recall_at_1", "map_at_r", "knn_acc", "var_ratio"} == set(ranks["metric"])
    arms = ranks[ranks["metric"] == "map_at_r"]
    assert sorted(arms["arm"]) == ["contrastive margin=0.2", "contrastive margin=1", "supcon",
                                   "triplet margin=0.2", "triplet margin=1"]
    assert (arms["n_blocks"] == 2).all()


def test_p_values_are_printed_to_three_significant_digits() -> None:
    assert [p_label(p) for p in (0.0521, 0.37, 0.004567, 3.21e-5, 1.0)] == [
        "0.0521", "0.37", "0.00457", "3.21e-5", "1"]


def test_report_of_a_run_whose_analysis_failed_says_why_and_exits_2(smoke_dir: Path,
                                                                     tmp_path: Path) -> None:
    """Issue 14 item 9: every trial failed, so analyze fails: the page still lists the failures,
    and the CLI says analyze failed and why, with exit 2 (there is no chart to draw)."""
    run_dir = tmp_path / "failed"
    shutil.copytree(smoke_dir, run_dir, ignore=shutil.ignore_patterns("analysis", "tune", "report.html"))
    trials = read_results(str(run_dir), "trials")
    for trial_id in trials.loc[trials["status"] == "completed", "trial_id"]:
        for file in (run_dir / "results").glob(f"*/{trial_id}.parquet"):
            file.unlink()
    failed = r"^analyze failed: no completed trials .*1 failed.*; wrote "
    with pytest.raises(ReportError, match=failed) as error:
        build_report(str(run_dir))
    assert "\n" not in str(error.value)
    done = CliRunner().invoke(app, ["report", str(run_dir)])
    assert done.exit_code == 2 and "Traceback" not in done.output
    assert "error: analyze failed: no completed trials" in done.output
    assert "ran analyze first" not in done.output
    html = (run_dir / "report.html").read_text()
    assert "InjectedFailure: failing on purpose" in html and "Nothing to show: analyze failed" in html


def _wait_for(condition: Any, what: str, timeout: float, process: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert process is None or process.poll() is None, f"{what}: the process ended first"
        assert time.monotonic() < deadline, f"{what}: not within {timeout} s"
        time.sleep(0.2)


def test_live_report_is_partial_while_a_launch_runs_and_full_after(tmp_path: Path, browser: Any) -> None:
    """Issue 19 item 3: `mlsweep launch` rewrites report.html as trials finish, marked partial,
    and leaves the full report at the end; `mlsweep report --watch` follows the same run from
    outside until every planned trial is recorded, then exits 0."""
    data = {**load_yaml("smoke.yaml"), "name": "live", "max_concurrent_trials": 1, "pack": 1}
    data["parameters"] = {**data["parameters"], "epochs": {"value": 8}}
    sweep_file = write_sweep(tmp_path, data)
    run_dir = tmp_path / "runs" / "live"
    env = {**os.environ, "MLSWEEP_LIVE_REPORT_S": "1", "PYTHONPATH": str(ROOT)}
    log = (tmp_path / "launch.log").open("w")
    launch = subprocess.Popen([sys.executable, "-m", "mlsweep.cli", "launch", str(sweep_file),
                               "--storage", str(tmp_path / "runs")], cwd=ROOT, env=env, stdout=log,
                              stderr=subprocess.STDOUT)
    watched = tmp_path / "watched.html"
    watcher = None
    try:
        page_file = run_dir / "report.html"
        _wait_for(lambda: page_file.is_file() and "Partial report" in page_file.read_text(),
                  "a partial report", 240, launch)
        snapshot = tmp_path / "snapshot.html"
        shutil.copy(page_file, snapshot)
        assert launch.poll() is None  # the copy was taken while the launch ran
        recorded = set(read_results(str(run_dir), "trials")["trial_id"])
        watcher = subprocess.Popen([sys.executable, "-m", "mlsweep.cli", "report", str(run_dir), "--watch",
                                    "--interval", "1", "--out", str(watched)], cwd=ROOT, env=env,
                                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        opened = open_offline(browser, snapshot)
        try:
            page = opened["page"]
            assert opened["errors"] == [] and opened["drawn"] == [1]  # the learning curves
            banner = page.inner_text("#partial")
            said = re.search(r"Partial report: (\d+) of 4 trials recorded, [01] running; the sweep has "
                             "not finished", banner)
            assert said is not None, banner
            shown = int(said.group(1))
            assert 1 <= shown <= len(recorded)
            assert f"{shown} completed" in page.inner_text("#overview")
            assert "Shown when the sweep ends" in page.inner_text("#pvalues")
            curves = chart_rows(specs_of(snapshot.read_text())["chart-0"])
            assert set(curves["n"]) <= set(range(1, 3)) and curves["epoch"].max() == 8
        finally:
            opened["context"].close()
        assert launch.wait(timeout=300) == 0, (tmp_path / "launch.log").read_text()[-3000:]
        final = page_file.read_text()
        assert "Partial report" not in final and "Critical-difference diagram" in final
        out, _ = watcher.communicate(timeout=240)
        assert watcher.returncode == 0, out
        assert "every planned trial is recorded" in out and f"wrote {watched}" in out
        assert "Partial report" not in watched.read_text()
    finally:
        for process in (launch, watcher):
            if process is not None and process.poll() is None:
                process.kill()
        log.close()


def test_watch_stops_on_ctrl_c_with_exit_0(smoke_dir: Path, tmp_path: Path) -> None:
    """A run folder with a planned trial never recorded: watching goes on until SIGINT."""
    run_dir = tmp_path / "smoke"
    shutil.copytree(smoke_dir, run_dir, ignore=shutil.ignore_patterns("analysis", "report.html"))
    manifest = json.loads((run_dir / "manifest.json").read_text())
    manifest["trials"]["p00000000003"] = {}
    (run_dir / "manifest.json").write_text(json.dumps(manifest))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    watcher = subprocess.Popen([sys.executable, "-m", "mlsweep.cli", "report", str(run_dir), "--watch",
                                "--interval", "0.5"], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    page_file = run_dir / "report.html"
    _wait_for(lambda: page_file.is_file(), "the partial page", 120, watcher)
    watcher.send_signal(signal.SIGINT)
    out, _ = watcher.communicate(timeout=60)
    assert watcher.returncode == 0, out
    assert "stopped watching (SIGINT)" in out and "Traceback" not in out
    text = page_file.read_text()
    assert "Partial report" in text and "6 of 7 trials recorded; the sweep has not" in text


def test_report_answers_at_a_glance(tmp_path: Path, browser: Any) -> None:
    """Issue 19 item 8: a numeric table of final means [95% CI] per data set, the training
    settings in the overview, the p-value map's colour signed by which loss wins, and train_loss
    divided by each curve's epoch-1 mean (losses differ in scale). Checked against the epochs
    table by hand."""
    run_dir = tmp_path / "glance"
    write_large_run(run_dir, epochs=3, losses=("contrastive", "triplet", "supcon"), margins=(0.2, 1.0),
                    lrs=(1e-3,), margin_free=("supcon",))
    result = build_report(str(run_dir))
    html = Path(result.path).read_text()
    epochs = pd.read_parquet(run_dir / "results" / "epochs")
    final = epochs[epochs["epoch"] == 3]

    opened = open_offline(browser, Path(result.path))
    try:
        page = opened["page"]
        assert opened["errors"] == []
        overview = page.inner_text("#overview")
        assert "epochs 3 · lr 0.001 · batch size 128 · model mlp · miner none" in overview
        table = page.inner_text("#table")
        assert "digits" in table and "synthetic" in table
        cells = page.eval_on_selector_all(
            "#table table", "ts => ts.map(t => [...t.rows].map(r => [...r.cells].map(c => c.innerText)))")
    finally:
        opened["context"].close()
    assert len(cells) == 2  # one table per data set
    header, *rows = cells[0]  # digits
    assert header == ["loss", "setting", "map_at_r", "recall_at_1", "knn_acc", "intra_var_mean",
                      "centroid_dist_mean"]
    assert len(rows) == 5  # contrastive and triplet at two margins, supcon once
    for row in rows:
        loss, setting = row[0], row[1]
        mine = final[(final["dataset"] == "digits") & (final["loss"] == loss)]
        if setting != "no margin":
            mine = mine[mine["margin"] == float(setting.split("=")[1])]
        for metric, text in zip(header[2:], row[2:], strict=True):
            mean, low, high = map(float, re.fullmatch(r"(\S+) \[(\S+), (\S+)\]", text).groups())
            assert mean == pytest.approx(mine[metric].mean(), rel=1e-3)
            assert low <= mean <= high
    digits_final = final[final["dataset"] == "digits"]
    best = digits_final.groupby(["loss", "margin"], dropna=False)["map_at_r"].mean().max()
    assert f"<b>{best:.4g} [" in html  # the best map_at_r of digits is bold

    rows = {chart_id: chart_rows(spec) for chart_id, spec in specs_of(html).items()}
    curves = rows["chart-0"]  # digits
    assert "train_loss" not in set(curves["metric"])
    scaled = curves[curves["metric"] == "train_loss ÷ epoch 1"]
    digits = epochs[epochs["dataset"] == "digits"]
    by_hand = digits.groupby(["loss", "margin", "epoch"], dropna=False)["train_loss"].mean().unstack("epoch")
    ratio = by_hand.div(by_hand[1], axis=0)
    for r in scaled.itertuples():
        margin = np.nan if r.setting == "no margin" else float(r.setting.split("=")[1])
        expected = ratio.loc[(r.loss, margin), r.epoch] if r.loss != "supcon" else \
            ratio.xs("supcon", level="loss").iloc[0][r.epoch]
        assert r.mean == pytest.approx(expected, rel=1e-3)
    assert set(scaled.loc[scaled["epoch"] == 1, "mean"]) == {1.0}

    tests = pd.read_parquet(run_dir / "analysis" / "tests.parquet")
    pvalues = rows["chart-4"]
    shown = pvalues.groupby(["pair", "metric", "p_label"])["wins"].agg(list)
    tested = tests[(tests["stat"] == "final") & tests["metric"].isin(set(pvalues["metric"]))]
    assert len(tested) == len(pvalues)
    for t in tested.itertuples():
        side = -1 if better(t.metric) == "lower" else 1  # positive: the pair's first loss wins
        expected = -np.log10(max(t.p_holm, 1e-12)) * np.sign(t.mean_diff) * side
        values = shown[(f"{t.loss_a} vs {t.loss_b}", t.metric, p_label(t.p_holm))]
        assert any(v == pytest.approx(expected, rel=1e-3, abs=1e-4) for v in values), (values, expected)
    assert (pvalues["wins"] > 0).any() and (pvalues["wins"] < 0).any()  # both sides win somewhere
    scales = [node for node in loss_scales_any(specs_of(html)["chart-4"]) if node.get("scheme") == "redblue"]
    assert scales and scales[0]["domainMid"] == 0


def loss_scales_any(node: Any) -> Iterator[dict[str, Any]]:
    """Every scale object in a spec."""
    if isinstance(node, dict):
        if "scheme" in node:
            yield node
        for value in node.values():
            yield from loss_scales_any(value)
    elif isinstance(node, list):
        for value in node:
            yield from loss_scales_any(value)
