"""What the live report costs a sweep: `mlsweep launch` of the quickstart with the report
refreshed every 10 s (three times the default rate of 30 s, so the quickstart's half minute
sees several refreshes) against the same launch with it never refreshed.

Each launch is a fresh subprocess with its own embedded Ray; the two take turns within each
repeat. The figure compared is the sweep's own time (`launch` prints it: Tune's run, where the
report's thread competes with the trials), and the whole command's wall time beside it (which
also holds the full report written at the end when a partial one was).
"""

from __future__ import annotations

import re
import subprocess
import time
from pathlib import Path

from bench.common import MLSWEEP, ROOT, Section, Target, bench_env, log, median
from bench.orchestration import sweep_file
from mlsweep.report import Partial, build_report

VARIANTS = {"live report off": "1e9", "live report every 10 s": "10"}
TARGET = 1.05  # "a few percent"


def _launch(sweep: Path, storage: Path, every_s: str) -> tuple[float, float]:
    """The sweep's seconds (as launch prints them) and the command's seconds."""
    env = {**bench_env(), "MLSWEEP_LIVE_REPORT_S": every_s}
    start = time.perf_counter()
    done = subprocess.run([MLSWEEP, "launch", str(sweep), "--storage", str(storage)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=1800, check=False)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"launch exited {done.returncode}:\n{(done.stdout + done.stderr)[-3000:]}")
    return float(re.search(r"already recorded, (\d+)s", done.stdout).group(1)), wall


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
    sweep = sweep_file(tmp, quick)
    times: dict[str, list[tuple[float, float]]] = {name: [] for name in VARIANTS}
    for i in range(repeat):
        for name, every_s in VARIANTS.items():
            sweep_s, wall = _launch(sweep, tmp / f"{i}-{every_s}", every_s)
            times[name].append((sweep_s, wall))
            log(f"{name}, repeat {i + 1}: sweep {sweep_s:.0f} s, command {wall:.1f} s")
    section = Section("Live report overhead (`mlsweep launch`, quickstart)",
                      ["variant", "sweep (s)", "command (s)"])
    medians = {}
    for name, pairs in times.items():
        medians[name] = (median([p[0] for p in pairs]), median([p[1] for p in pairs]))
        section.rows.append([name, f"{medians[name][0]:.0f}", f"{medians[name][1]:.1f}"])
    off, on = medians["live report off"], medians["live report every 10 s"]
    section.targets.append(Target("sweep time, report every 10 s / off", on[0] / off[0], TARGET))
    finished = tmp / f"0-{VARIANTS['live report off']}" / "quickstart"
    first, warm = refresh_cost(finished, tmp / "p.html", repeat)
    section.rows.append(["one partial refresh of the finished run folder: first / next (s)",
                         f"{first:.1f} / {warm:.2f}", ""])
    section.targets.append(Target("one refresh / the default 30 s between refreshes", warm / 30, 0.05))
    section.notes.append("the command's time with the report on also holds the final full report "
                         "(analyze, the page) written after the sweep; the sweep's time is whole seconds")
    return section
