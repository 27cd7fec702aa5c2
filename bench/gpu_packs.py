"""Trials/hour and peak memory of packed trials (`run_trials`) on the quickstart's configs.

    python -m bench.gpu_packs [--device cuda] [--sizes 1 8 32 64] [--epochs 20]

The quickstart grid with more seeds, so that each of its four (loss, data set) groups holds
64 members (3 margins x 22 seeds). For each pack size N, every group trains packs of N in turn
in this one process: N >= 4 one pack per group, N < 4 as many packs as make 4 trials per group.
Before the orchestrator packs sweeps, this is the trainer's side of the GPU figure; gpu.sh's
sweeps give one trial per process beside it.
"""

from __future__ import annotations

import argparse
import time

import torch

from bench.common import ROOT
from mlsweep import run_trials
from mlsweep.catalog import pack_key
from mlsweep.spec import expand, load_sweep

SEEDS = 22


def groups(epochs: int, device: str) -> list[list[dict]]:
    sweep = expand(load_sweep(ROOT / "sweeps" / "quickstart.yaml"))
    base = [t.config for t in sweep if t.config["seed"] == 0]
    by_key: dict = {}
    for config in base:
        for seed in range(SEEDS):
            member = {**config, "seed": seed, "epochs": epochs, "torch_device": device}
            by_key.setdefault(pack_key(member), []).append(member)
    return list(by_key.values())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 8, 32, 64])
    parser.add_argument("--epochs", type=int, default=20)
    args = parser.parse_args()
    cuda = args.device.startswith("cuda")
    all_groups = groups(args.epochs, args.device)
    run_trials([{**all_groups[0][0], "epochs": 1}])  # warm-up: imports, CUDA context, kernels
    print("pack size\ttrials\twall s\ttrials/hour\tpeak memory MiB")
    for size in args.sizes:
        if cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        trials = 0
        start = time.perf_counter()
        for group in all_groups:
            chosen = group[:max(size, 4)]
            for first in range(0, len(chosen), size):
                results = run_trials(chosen[first:first + size])
                trials += len(results)
                assert all(r.summary["status"] == "completed" for r in results)
        wall = time.perf_counter() - start
        peak = torch.cuda.max_memory_allocated() / 2**20 if cuda else float("nan")
        print(f"{size}\t{trials}\t{wall:.1f}\t{trials * 3600 / wall:.0f}\t{peak:.0f}", flush=True)


if __name__ == "__main__":
    main()
