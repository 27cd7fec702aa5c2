"""What the diagnostic reporters cost: `run_trial` with all of them vs with none.

The quickstart's trials at seed 0 and margin 0.5 (digits and synthetic, triplet and
contrastive, 20 epochs, evaluated as the quickstart evaluates), and the same with
`diagnostics: []`; also all reporters evaluated every 5th epoch and every epoch. Within each
repeat every trial runs once each way, in turns. The ratio is that of the summed times; the
figure is its median over the repeats. CPU time (this process, one torch thread) is the
cross-check on a busy machine.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, NamedTuple

import torch

from bench.common import ROOT, Section, Target, log, median
from mlsweep import run_trial
from mlsweep.spec import expand, load_sweep

ALL, NONE = "all (as the quickstart)", "none (`diagnostics: []`)"
VARIANTS: dict[str, dict[str, Any]] = {ALL: {}, NONE: {"diagnostics": []},
                                       "all, `eval_every: 5`": {"eval_every": 5},
                                       "all, `eval_every: 1`": {"eval_every": 1}}


class Times(NamedTuple):
    wall: float
    cpu: float  # of this process
    evaluation: float  # the trial's own eval_s, summed over epochs


def quickstart_trials() -> list[dict[str, Any]]:
    trials = expand(load_sweep(ROOT / "sweeps" / "quickstart.yaml"))
    return [t.config for t in trials if t.config["seed"] == 0 and t.config.get("margin") == 0.5]


def timed(config: dict[str, Any]) -> Times:
    wall, cpu = time.perf_counter(), time.process_time()
    result = run_trial(config)
    return Times(time.perf_counter() - wall, time.process_time() - cpu, float(result.epochs["eval_s"].sum()))


def run(tmp: Path, quick: bool, repeat: int) -> Section:
    torch.set_num_threads(1)  # as a Tune worker with cpu: 1 runs
    trials = quickstart_trials()
    run_trial({**trials[0], "epochs": 1})  # warm-up: imports, allocator
    totals: dict[str, list[Times]] = {name: [] for name in VARIANTS}  # per repeat, over the trials
    for _ in range(repeat):
        for config in trials:
            for name, change in VARIANTS.items():
                totals[name].append(timed({**config, **change}))
                log(f"diagnostics, {config['loss']} on {config['dataset']}, {name}: {totals[name][-1]}")
    n = len(trials)
    sums = {name: [Times(*map(sum, zip(*runs[i:i + n], strict=True))) for i in range(0, len(runs), n)]
            for name, runs in totals.items()}
    section = Section(f"Diagnostics cost: {n} quickstart trials x {trials[0]['epochs']} epochs, "
                      f"median of {repeat}", ["reporters", "wall s", "all runs s", "evaluation s",
                                              "CPU s", "wall vs none", "CPU vs none"])
    for name, values in sums.items():
        ratios = [Times(*(a / b for a, b in zip(v, none, strict=True))) for v, none in
                  zip(values, sums[NONE], strict=True)]
        wall_ratio = median([r.wall for r in ratios])
        section.rows.append([
            name, f"{median([v.wall for v in values]):.2f}", ", ".join(f"{v.wall:.2f}" for v in values),
            f"{median([v.evaluation for v in values]):.2f}", f"{median([v.cpu for v in values]):.2f}",
            f"{wall_ratio:.2f}", f"{median([r.cpu for r in ratios]):.2f}"])
        if name == ALL:
            section.targets.append(Target("all / none (wall)", wall_ratio, 1.10))
    names = ", ".join(f"{c['loss']} on {c['dataset']}" for c in trials)
    section.notes.append(f"trials: {names}; the quickstart's eval_every: {trials[0]['eval_every']}")
    return section
