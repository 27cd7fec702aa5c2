"""`mlsweep analyze` at scale: runs bench/bench_analysis.py (10,000 trials x 50 epochs) as is."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from bench.common import PYTHON, ROOT, Section, bench_env

FIGURES = {"write the run": r"wrote .* in ([\d.]+) s",
           "first read of the files (builds the cache)": r"first read .*?: *([\d.]+) s",
           "read results (trials + epochs), cached": r"read results .*?([\d.]+) s",
           "analyze, reading included": r"analyze, reading included: *([\d.]+) s",
           "of which statistics + writing": r"statistics \+ writing: ~ *([\d.]+) s"}


def run(tmp: Path, quick: bool, repeat: int) -> Section:
    out = subprocess.run([PYTHON, "bench/bench_analysis.py", "--dir", str(tmp / "run"),
                          "--repeat", str(repeat)], cwd=ROOT, env=bench_env(), capture_output=True,
                         text=True, check=True).stdout
    section = Section(f"Analysis at scale: bench/bench_analysis.py, median of {repeat}",
                      ["step", "seconds"])
    for name, pattern in FIGURES.items():
        found = re.search(pattern, out)
        section.rows.append([name, found.group(1) if found else "?"])
    section.notes += [line.strip() for line in out.splitlines() if "completed trials" in line]
    return section
