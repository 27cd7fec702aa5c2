"""`mlsweep launch` vs a plain Ray Tune script vs the same trials in one process (and in two
bare processes, half each: what the machine gives two trial streams without any orchestration).

Each variant is a fresh subprocess (its own Python and, for the two Ray variants, its own
embedded local Ray), timed from outside: the wall clock a user waits. The variants take turns
within each repeat, so a busy machine slows all of them alike.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import yaml

from bench.common import MLSWEEP, PYTHON, ROOT, Section, Target, bench_env, log, median, timed_command

QUICKSTART = ROOT / "sweeps" / "quickstart.yaml"
QUICK_SEEDS = [0, 1]  # --quick: 2 of the 6 seeds, 24 of the 72 trials


def sweep_file(tmp: Path, quick: bool) -> Path:
    """The quickstart grid (or its --quick subset), with results kept out of the repository."""
    spec = yaml.safe_load(QUICKSTART.read_text())
    if quick:
        spec["parameters"]["seed"] = {"values": QUICK_SEEDS}
    path = tmp / "sweep.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def planned_configs(sweep: Path) -> list[dict]:
    """The resolved trial configs, as `mlsweep plan --format json` prints them."""
    out = subprocess.run([MLSWEEP, "plan", str(sweep), "--format", "json"], cwd=ROOT, env=bench_env(),
                         capture_output=True, text=True, check=True).stdout
    return [trial["config"] for trial in json.loads(out)["trials"]]


TWO_PROCESSES = "two processes, half each (no Ray)"


def variants(sweep: Path, configs_file: Path, storage: Path) -> dict[str, list[str]]:
    half = [f"{PYTHON} -m bench.sequential {configs_file.with_suffix(f'.{i}.json')}" for i in (0, 1)]
    both = f"{half[0]} & first=$!; {half[1]} & second=$!; wait $first && wait $second"
    return {
        "mlsweep launch": [MLSWEEP, "launch", str(sweep), "--storage", str(storage / "launch")],
        "plain Ray Tune": [PYTHON, "-m", "bench.plain_tune", str(configs_file),
                           "--storage", str(storage / "plain")],
        "sequential run_trial": [PYTHON, "-m", "bench.sequential", str(configs_file)],
        # What two cores give two one-thread trial streams with no orchestration at all.
        TWO_PROCESSES: ["bash", "-c", both],
    }


def run(tmp: Path, quick: bool, repeat: int) -> Section:
    sweep = sweep_file(tmp, quick)
    configs = planned_configs(sweep)
    n = len(configs)
    configs_file = tmp / "configs.json"
    configs_file.write_text(json.dumps(configs))
    for i in (0, 1):
        configs_file.with_suffix(f".{i}.json").write_text(json.dumps(configs[i::2]))
    times: dict[str, list[float]] = {}
    for r in range(repeat):
        storage = tmp / f"repeat-{r}"
        for name, command in variants(sweep, configs_file, storage).items():
            times.setdefault(name, []).append(timed_command(command))
            log(f"orchestration, repeat {r + 1}/{repeat}: {name} {times[name][-1]:.1f} s")
        written = len(list((storage / "launch").glob("*/results/trials/*.parquet")))
        if written != n:
            raise RuntimeError(f"mlsweep launch recorded {written} of {n} trials")
    launch_runs = times["mlsweep launch"]
    section = Section(
        f"Orchestration: {n} quickstart trials x {configs[0]['epochs']} epochs, median of {repeat}",
        ["variant", "wall s (median)", "all runs s", "per trial s", "launch / this (median of runs)"])
    ratios = {}
    for name, values in times.items():
        ratios[name] = median([a / b for a, b in zip(launch_runs, values, strict=True)])
        section.rows.append([name, f"{median(values):.1f}", ", ".join(f"{v:.1f}" for v in values),
                             f"{median(values) / n:.2f}", f"{ratios[name]:.2f}"])
    section.targets += [Target("launch / sequential", ratios["sequential run_trial"], 0.6),
                        Target("launch / plain Tune", ratios["plain Ray Tune"], 1.1)]
    launch, plain, sequential, two = (median(times[name]) for name in times)
    section.notes += [
        f"per-trial overhead of launch over plain Tune: (launch - plain) / n = {(launch - plain) / n:+.2f} s",
        f"per-trial overhead over ideal 2-way parallel: (launch - sequential / 2) / n = "
        f"{(launch - sequential / 2) / n:+.2f} s",
        f"per-trial overhead over two bare processes: (launch - two processes) / n = "
        f"{(launch - two) / n:+.2f} s",
        f"the machine's own 2-way bound: two processes / sequential = {two / sequential:.2f}"]
    return section
