"""Packed trials: member-step time of a pack of 32 vs a pack of 1 (issue 16).

The digits MLP with the triplet loss (random mining, batch 128, the default reporters), as the
quickstart trains it. A pack of 32 members (seeds 0-31, margins 0.2 / 0.5 / 1.0 in turn) and a
pack of one (seed 0) are built by the trainer and train epoch by epoch in turns, after a
warm-up epoch each; the figure is the ratio of the median member-step times (an epoch's wall
time over its steps and members).
"""

from __future__ import annotations

import time
from pathlib import Path

import torch

from bench.common import Section, Target, log, median
from mlsweep.catalog import TrialConfig
from mlsweep.trainer.loop import _Trainer

MEMBERS = 32


def member_step_ms(trainer: _Trainer, epoch: int) -> float:
    start = time.perf_counter()
    rows = trainer.train_epoch(epoch)
    steps = len(rows[0][1])
    return (time.perf_counter() - start) * 1e3 / steps / trainer.members


def run(tmp: Path, quick: bool, repeat: int) -> Section:
    torch.set_num_threads(1)  # as a Tune worker with cpu: 1 runs
    base = {"dataset": "digits", "loss": "triplet", "batch_size": 128, "torch_device": "cpu"}
    margins = (0.2, 0.5, 1.0)
    pack = _Trainer([TrialConfig.from_mapping({**base, "seed": s, "margin": margins[s % 3]})
                     for s in range(MEMBERS)])
    solo = _Trainer([TrialConfig.from_mapping({**base, "seed": 0, "margin": margins[0]})])
    member_step_ms(pack, 1)
    member_step_ms(solo, 1)
    packed, alone = [], []
    for epoch in range(2, 2 + max(repeat, 3)):
        packed.append(member_step_ms(pack, epoch))
        alone.append(member_step_ms(solo, epoch))
        log(f"packing: pack of {MEMBERS} {packed[-1]:.3f} ms, pack of 1 {alone[-1]:.3f} ms per member-step")
    ratio = median(alone) / median(packed)
    section = Section(f"Packed trials: digits MLP triplet, member-step time, median of "
                      f"{len(packed)} epochs", ["pack", "ms per member-step", "all epochs (ms)"])
    section.rows.append([f"{MEMBERS} members", f"{median(packed):.3f}",
                         ", ".join(f"{v:.3f}" for v in packed)])
    section.rows.append(["1 member", f"{median(alone):.3f}", ", ".join(f"{v:.3f}" for v in alone)])
    section.targets.append(Target(f"pack of {MEMBERS} vs pack of 1 (speed-up)", ratio, 6.0, at_most=False))
    section.notes.append(f"torch threads: {torch.get_num_threads()}; {len(pack.data.y_train)} train "
                         "samples, batch 128, default reporters (greediness per step), no evaluation timed")
    return section
