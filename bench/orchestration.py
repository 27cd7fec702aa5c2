"""`mlsweep launch` (packed, and with `pack: 1`) vs a plain Ray Tune script vs the same trials
one after another in one process, and in two bare processes, half each (what the machine gives
two trial streams without any orchestration).

Each variant is a fresh subprocess (its own Python and, for the two Ray variants, its own
embedded local Ray), timed from outside: the wall clock a user waits. The variants take turns
within each repeat, so a busy machine slows all of them alike.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import yaml

from bench.common import (
    MLSWEEP,
    PYTHON,
    RAY_WORKER_NICENESS,
    ROOT,
    Section,
    Target,
    bench_env,
    log,
    median,
    timed_command,
)

QUICKSTART = ROOT / "sweeps" / "quickstart.yaml"
QUICK_SEEDS = [0, 1]  # --quick: 2 of the 6 seeds, 24 of the 72 trials


def sweep_file(tmp: Path, quick: bool, pack: int | None = None) -> Path:
    """The quickstart grid (or its --quick subset), with results kept out of the repository;
    `pack` sets the sweep's `pack` (default: the sweep's own, `auto`)."""
    spec = yaml.safe_load(QUICKSTART.read_text())
    if quick:
        spec["parameters"]["seed"] = {"values": QUICK_SEEDS}
    if pack is not None:
        spec["pack"] = pack
    path = tmp / ("sweep.yaml" if pack is None else f"sweep-pack-{pack}.yaml")
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def planned(sweep: Path) -> dict:
    """`mlsweep plan --format json`: the resolved trial configs and the packs a launch trains."""
    out = subprocess.run([MLSWEEP, "plan", str(sweep), "--format", "json"], cwd=ROOT, env=bench_env(),
                         capture_output=True, text=True, check=True).stdout
    return json.loads(out)


LAUNCH = "mlsweep launch (pack: auto)"
SOLO = "mlsweep launch, pack: 1"
PLAIN = "plain Ray Tune"
SEQUENTIAL = "sequential run_trial"
TWO_PROCESSES = "two processes, half each (no Ray)"
SEQUENTIAL_NICE_0 = "sequential run_trial, niceness 0"


def variants(tmp: Path, quick: bool, configs_file: Path,
             storage: Path) -> dict[str, tuple[list[str], int | None]]:
    """Each variant's command and the niceness it runs at (None: this process's). The no-Ray
    baselines run at the niceness Ray gives its trial workers, so that other work on a shared
    machine slows them as it slows the trials; the niceness-0 loop is there for reference."""
    half = [f"{PYTHON} -m bench.sequential {configs_file.with_suffix(f'.{i}.json')}" for i in (0, 1)]
    both = f"{half[0]} & first=$!; {half[1]} & second=$!; wait $first && wait $second"
    sequential = [PYTHON, "-m", "bench.sequential", str(configs_file)]

    def launch(pack: int | None, folder: str) -> list[str]:
        return [MLSWEEP, "launch", str(sweep_file(tmp, quick, pack)), "--storage", str(storage / folder)]

    return {
        LAUNCH: (launch(None, "launch"), None),
        SOLO: (launch(1, "solo"), None),
        PLAIN: ([PYTHON, "-m", "bench.plain_tune", str(configs_file), "--storage", str(storage / "plain")],
                None),
        SEQUENTIAL: (sequential, RAY_WORKER_NICENESS),
        # What two cores give two one-thread trial streams with no orchestration at all.
        TWO_PROCESSES: (["bash", "-c", both], RAY_WORKER_NICENESS),
        SEQUENTIAL_NICE_0: (sequential, 0),
    }


def run(tmp: Path, quick: bool, repeat: int) -> Section:
    plan = planned(sweep_file(tmp, quick))
    configs = [trial["config"] for trial in plan["trials"]]
    n = len(configs)
    configs_file = tmp / "configs.json"
    configs_file.write_text(json.dumps(configs))
    for i in (0, 1):
        configs_file.with_suffix(f".{i}.json").write_text(json.dumps(configs[i::2]))
    times: dict[str, list[float]] = {}
    loads = [os.getloadavg()[0]]
    for r in range(repeat):
        storage = tmp / f"repeat-{r}"
        for name, (command, nice) in variants(tmp, quick, configs_file, storage).items():
            times.setdefault(name, []).append(timed_command(command, nice=nice))
            loads.append(os.getloadavg()[0])
            log(f"orchestration, repeat {r + 1}/{repeat}: {name} {times[name][-1]:.1f} s "
                f"(load {loads[-1]:.1f})")
        for folder in ("launch", "solo"):
            written = len(list((storage / folder).glob("*/results/trials/*.parquet")))
            if written != n:
                raise RuntimeError(f"mlsweep launch ({folder}) recorded {written} of {n} trials")
    launch_runs = times[LAUNCH]
    section = Section(
        f"Orchestration: {n} quickstart trials x {configs[0]['epochs']} epochs, median of {repeat}",
        ["variant", "wall s (median)", "all runs s", "per trial s", "launch / this (median of runs)"])
    ratios = {}
    for name, values in times.items():
        ratios[name] = median([a / b for a, b in zip(launch_runs, values, strict=True)])
        section.rows.append([name, f"{median(values):.1f}", ", ".join(f"{v:.1f}" for v in values),
                             f"{median(values) / n:.2f}", f"{ratios[name]:.2f}"])
    section.targets += [Target("launch / sequential", ratios[SEQUENTIAL], 0.3),
                        Target("launch / two processes", ratios[TWO_PROCESSES], 0.5),
                        Target("launch / plain Tune", ratios[PLAIN], 1.1)]
    launch, sequential, two = (median(times[name]) for name in (LAUNCH, SEQUENTIAL, TWO_PROCESSES))
    sizes = [len(p["trials"]) for p in plan["packs"]]
    section.notes += [
        f"launch trains {len(sizes)} packs ({', '.join(map(str, sizes))} members), two at a time "
        "(max_concurrent_trials: 2); `pack: 1` trains every trial alone",
        f"the no-Ray baselines run at niceness {RAY_WORKER_NICENESS}, as Ray runs its trial workers; "
        f"launch / the niceness-0 loop: {ratios[SEQUENTIAL_NICE_0]:.2f}",
        f"packing: launch (pack: auto) / launch (pack: 1) = {ratios[SOLO]:.2f}",
        f"per-trial time of launch over two bare processes: (launch - two processes) / n = "
        f"{(launch - two) / n:+.2f} s",
        f"the machine's own 2-way bound: two processes / sequential = {two / sequential:.2f}",
        f"load average (1 min) over the run: {min(loads):.1f} to {max(loads):.1f}, "
        f"median {median(loads):.1f}"]
    return section
