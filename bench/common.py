"""What every benchmark shares: timing, medians, the machine's description, markdown output."""

from __future__ import annotations

import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
MLSWEEP = str(Path(PYTHON).with_name("mlsweep"))


@dataclass(frozen=True)
class Target:
    """A goal of the issue: `value` must be <= (or >=) `limit`."""

    name: str
    value: float
    limit: float
    at_most: bool = True

    @property
    def met(self) -> bool:
        return self.value <= self.limit if self.at_most else self.value >= self.limit

    def line(self) -> str:
        sign = "<=" if self.at_most else ">="
        verdict = "met" if self.met else "MISSED"
        return f"{self.name}: {self.value:.2f} (target {sign} {self.limit:g}) — {verdict}"


@dataclass
class Section:
    """One benchmark's outcome: a table of medians, the targets and free-form notes."""

    title: str
    columns: list[str]
    rows: list[list[str]] = field(default_factory=list)
    targets: list[Target] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def markdown(self) -> str:
        lines = [f"## {self.title}", "", "| " + " | ".join(self.columns) + " |",
                 "|" + "---|" * len(self.columns)]
        lines += ["| " + " | ".join(row) + " |" for row in self.rows]
        lines += [""] + [f"- {t.line()}" for t in self.targets] + [f"- {n}" for n in self.notes]
        return "\n".join(lines) + "\n"


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def log(message: str) -> None:
    """Progress on stderr, so that a long run shows (and keeps) what it has measured so far."""
    print(f"[{datetime.now(timezone.utc):%H:%M:%S}] {message}", file=sys.stderr, flush=True)


def bench_env() -> dict[str, str]:
    """The environment of benchmark subprocesses: no Ray auth token, and always a fresh local
    Ray (RAY_ADDRESS=local), never one that another `ray start` on this machine left running."""
    return {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_ADDRESS": "local",
            "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}


# The niceness Ray 2.60 gives its worker processes (`ps -o ni` on a trial shows it). On a
# machine shared with other work, a no-Ray baseline at niceness 0 would get a larger share of
# the cores than the trials it is compared with; at this niceness, both get the same.
RAY_WORKER_NICENESS = 15


def timed_command(args: Sequence[str], timeout_s: float = 1800, nice: int | None = None) -> float:
    """Wall seconds of a whole command, as a user waits for it (at niceness `nice` when given);
    raises with its output's tail if it fails."""
    def lower_priority() -> None:
        os.setpriority(os.PRIO_PROCESS, 0, nice)

    start = time.perf_counter()
    done = subprocess.run(args, cwd=ROOT, env=bench_env(), capture_output=True, text=True,
                          timeout=timeout_s, check=False, preexec_fn=None if nice is None else lower_priority)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        tail = (done.stdout + done.stderr)[-3000:]
        raise RuntimeError(f"{' '.join(args)} exited {done.returncode}:\n{tail}")
    return elapsed


def machine() -> str:
    """One line: date, cores, CPU model, RAM and load, for RESULTS.md."""
    cpu = next((line.split(":", 1)[1].strip() for line in _lines("/proc/cpuinfo")
                if line.startswith("model name")), platform.processor() or "unknown CPU")
    ram_kb = next((int(line.split()[1]) for line in _lines("/proc/meminfo")
                   if line.startswith("MemTotal")), 0)
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    return (f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M UTC}; {os.cpu_count()} cores ({cpu}), "
            f"{ram_kb / 2**20:.0f} GiB RAM; load average {load}; Python {platform.python_version()}")


def _lines(path: str) -> list[str]:
    try:
        return Path(path).read_text().splitlines()
    except OSError:
        return []
