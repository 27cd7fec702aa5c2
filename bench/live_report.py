"""What the live report costs a sweep: `mlsweep launch` of the quickstart with the report
refreshed every 5 s (six times the default rate of 30 s) against the same launch with it never
refreshed. The quickstart runs as `pack: 1`, so that trials finish one after another through
the sweep, as in a long sweep, and every refresh has something new to show (with packs the
whole quickstart lasts less than one refresh interval).

Each launch is a fresh subprocess with its own embedded Ray; the two take turns within each
repeat. The figure compared is the sweep's own time (first trial's start to last trial's end,
from the trials table: where the report's thread competes with the trials), with the whole
command's wall time beside it (which also holds the full report written at the end when a
partial one was) and the partial pages seen (report.html rewritten while the launch ran).
"""

from __future__ import annotations

import subprocess
import time
from contextlib import suppress
from pathlib import Path

from bench.common import MLSWEEP, ROOT, Section, Target, bench_env, log, median
from bench.orchestration import sweep_file
from mlsweep.report import Partial, build_report
from mlsweep.results import read_results

VARIANTS = {"live report off": "1e9", "live report every 5 s": "5"}
TARGET = 1.05  # "a few percent"


def _launch(sweep: Path, storage: Path, every_s: str) -> tuple[float, float, int]:
    """The sweep's seconds, the command's seconds, and the partial pages seen."""
    env = {**bench_env(), "MLSWEEP_LIVE_REPORT_S": every_s}
    page, log_path = storage / "quickstart" / "report.html", storage.with_suffix(".log")
    storage.mkdir(parents=True)
    stamps: set[int] = set()
    start = time.perf_counter()
    with log_path.open("w") as out:
        proc = subprocess.Popen([MLSWEEP, "launch", str(sweep), "--storage", str(storage)], cwd=ROOT,
                                env=env, stdout=out, stderr=subprocess.STDOUT, text=True)
        while proc.poll() is None:
            with suppress(FileNotFoundError):
                stamps.add(page.stat().st_mtime_ns)
            time.sleep(0.25)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"launch exited {proc.returncode}:\n{log_path.read_text()[-3000:]}")
    trials = read_results(str(storage / "quickstart"), "trials", columns=["started_at", "finished_at"])
    sweep_s = (trials["finished_at"].max() - trials["started_at"].min()).total_seconds()
    return sweep_s, wall, max(0, len(stamps) - 1)  # the last rewrite is the full report


def refresh_cost(run_dir: Path, out: Path, repeat: int) -> tuple[float, float]:
    """Seconds of the first partial page in this process (imports included) and the median of
    the next ones: what one refresh takes from the driver."""
    seconds = []
    for _ in range(repeat + 1):
        start = time.perf_counter()
        build_report(str(run_dir), str(out), partial=Partial(running=2))
        seconds.append(time.perf_counter() - start)
    return seconds[0], median(seconds[1:])


def run(tmp: Path, quick: bool, repeat: int) -> Section:
    sweep = sweep_file(tmp, quick, pack=1)
    times: dict[str, list[tuple[float, float, int]]] = {name: [] for name in VARIANTS}
    for i in range(repeat):
        for name, every_s in VARIANTS.items():
            times[name].append(_launch(sweep, tmp / f"{i}-{every_s}", every_s))
            sweep_s, wall, pages = times[name][-1]
            log(f"{name}, repeat {i + 1}: sweep {sweep_s:.1f} s, command {wall:.1f} s, {pages} partial pages")
    section = Section("Live report overhead (`mlsweep launch`, quickstart as `pack: 1`)",
                      ["variant", "sweep (s)", "all runs s", "command (s)", "partial pages"])
    for name, runs in times.items():
        section.rows.append([name, f"{median([r[0] for r in runs]):.1f}",
                             ", ".join(f"{r[0]:.1f}" for r in runs),
                             f"{median([r[1] for r in runs]):.1f}", ", ".join(str(r[2]) for r in runs)])
    ratio = median([on[0] / off[0] for on, off in zip(times["live report every 5 s"],
                                                      times["live report off"], strict=True)])
    section.targets.append(Target("sweep time, report every 5 s / off (median of the repeats' ratios)",
                                  ratio, TARGET))
    finished = tmp / f"0-{VARIANTS['live report off']}" / "quickstart"
    first, warm = refresh_cost(finished, tmp / "p.html", repeat)
    section.rows.append(["one partial refresh of the finished run folder: first / next (s)",
                         f"{first:.1f} / {warm:.2f}", "", "", ""])
    section.targets.append(Target("one refresh / the default 30 s between refreshes", warm / 30, 0.05))
    section.notes.append("the command's time with the report on also holds the final full report "
                         "(analyze, the page) written after the sweep")
    return section
