"""`mlsweep plan`'s time estimate against the wall time of the launch it predicts.

Two sources, each against a real `mlsweep launch` timed from outside, on the quickstart and
paper-synthetic sweeps: calibration (a short trial per group, in the planning process) for the
whole sweep, and history (the storage's earlier run) for the sweep's second half of seeds
after its first half ran. Target: every estimate within 0.5x-2x of the actual wall time.
"""

from __future__ import annotations

import os
from pathlib import Path

import yaml

from bench.common import MLSWEEP, ROOT, Section, Target, log, timed_command
from mlsweep.estimate import estimate
from mlsweep.spec import expand, validate

SWEEPS = ("quickstart", "paper-synthetic")


def _sweep(tmp: Path, name: str, quick: bool, seeds: list[int] | None = None) -> tuple[Path, dict]:
    spec = yaml.safe_load((ROOT / "sweeps" / f"{name}.yaml").read_text())
    if seeds is not None:
        spec["parameters"]["seed"] = {"values": seeds}
    elif quick:
        spec["parameters"]["seed"] = {"values": [0, 1]}
    path = tmp / f"{name}-{'-'.join(map(str, seeds or []))}.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path, spec


def _measure(path: Path, spec: dict, storage: Path, calibrate: bool) -> tuple[float, float, str, str]:
    """Estimate, actual seconds, the source, and the load average (1 min) before the estimate
    and after the launch: a shared machine's load moves the actual time, not the estimate."""
    sweep = validate(spec)
    before = os.getloadavg()[0]
    planned = estimate(sweep, expand(sweep), str(storage), run_calibration=calibrate)
    log(f"{path.name}: estimate {planned.wall_s:.0f} s ({planned.source}); launching")
    actual = timed_command([MLSWEEP, "launch", str(path), "--storage", str(storage)])
    return planned.wall_s, actual, planned.source, f"{before:.1f} / {os.getloadavg()[0]:.1f}"


def run(tmp: Path, quick: bool, repeat: int) -> Section:
    section = Section("Time estimates (`mlsweep plan`) vs the actual launch",
                      ["sweep", "source", "estimate (s)", "actual (s)", "estimate / actual",
                       "load before / after"])
    cases = []
    for name in SWEEPS[:1] if quick else SWEEPS:
        path, spec = _sweep(tmp, name, quick)
        cases.append((f"{name} ({len(expand(validate(spec)))} trials)",
                      *_measure(path, spec, tmp / f"cal-{name}", calibrate=True)))
        seeds = yaml.safe_load((ROOT / "sweeps" / f"{name}.yaml").read_text())["parameters"]["seed"]["values"]
        earlier, later = seeds[:len(seeds) // 2], seeds[len(seeds) // 2:]
        storage = tmp / f"history-{name}"
        first, _ = _sweep(tmp, name, quick, earlier)
        timed_command([MLSWEEP, "launch", str(first), "--storage", str(storage)])
        second, second_spec = _sweep(tmp, name, quick, later)  # same run folder: new trials
        cases.append((f"{name} seeds {later[0]}-{later[-1]} after {earlier[0]}-{earlier[-1]}",
                      *_measure(second, second_spec, storage, False)))
    for label, planned, actual, source, load in cases:
        ratio = planned / actual
        section.rows.append([label, source, f"{planned:.0f}", f"{actual:.0f}", f"{ratio:.2f}", load])
        section.targets.append(Target(f"{label}: estimate / actual >= 0.5", ratio, 0.5, at_most=False))
        section.targets.append(Target(f"{label}: estimate / actual <= 2", ratio, 2.0))
    section.notes.append("calibration runs in the planning process before the launch; each launch "
                         "starts its own embedded Ray (its fixed cost is part of both figures)")
    return section
