"""Time `mlsweep analyze` on a large synthetic run: 10,000 trials x 50 epochs by default.

    .venv/bin/python bench/bench_analysis.py [--dir DIR] [--repeat 3]

Writes the run once (results/trials and results/epochs, one Parquet file per trial, the layout
the orchestrator writes), then prints the median wall time of reading the results alone and of
the whole analysis (which includes the reading and writing analysis/*.parquet).
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from mlsweep.analysis import analyze
from mlsweep.catalog import EPOCH_METRICS
from mlsweep.results import read_results

DATASETS = ("synthetic", "digits", "mnist", "fashion_mnist", "cifar10")
LRS = (1e-4, 3e-4, 1e-3, 3e-3)
BATCH_SIZES = (32, 64, 128, 256, 512)
SEEDS = range(10)
MARGINS = (0.1, 0.2, 0.5, 1.0)
# 10 trials per (dataset, lr, batch size, seed): 2 margin losses x 4 margins + 2 margin-free.
LOSSES = (*itertools.product(("contrastive", "triplet"), MARGINS), ("infonce", None),
          ("supcon", None))
EPOCHS = 50


def configs() -> list[dict]:
    """The grid: 5 data sets x 4 lr x 5 batch sizes x 10 seeds x 10 loss settings = 10,000."""
    grid = itertools.product(DATASETS, LRS, BATCH_SIZES, SEEDS, LOSSES)
    return [{"trial_id": f"t{i:05d}", "sweep": "bench", "loss": loss, "dataset": dataset,
             "margin": margin, "seed": seed, "split_seed": 0, "epochs": EPOCHS,
             "batch_size": batch, "lr": lr, "model": "mlp", "optimizer": "adam",
             "embedding_dim": 64}
            for i, (dataset, lr, batch, seed, (loss, margin)) in enumerate(grid)]


def write_run(run_dir: Path, rng: np.random.Generator) -> None:
    """One trials file and one epochs file per trial; 1% of trials failed, 0.5% diverged."""
    schema = {"margin": pa.float64()}
    for config in configs():
        status = rng.choice(["completed", "failed", "diverged"], p=[0.985, 0.01, 0.005])
        n = EPOCHS if status == "completed" else int(rng.integers(1, EPOCHS))
        epochs = {key: [value] * n for key, value in config.items()}
        epochs["epoch"] = list(range(1, n + 1))
        shift = 0.05 * (config["loss"] == "triplet") + 0.01 * config["seed"]
        for metric in EPOCH_METRICS:
            epochs[metric] = rng.normal(1.0 + shift, 0.1, n) + np.linspace(0, 0.5, n)
        trial = {key: [value] for key, value in config.items()}
        trial.update(status=[str(status)], wall_s=[float(n)],
                     **{f"final_{m}": [float(epochs[m][-1])] for m in EPOCH_METRICS})
        for table, columns in (("trials", trial), ("epochs", epochs)):
            folder = run_dir / "results" / table
            folder.mkdir(parents=True, exist_ok=True)
            arrow = pa.table({k: pa.array(v, type=schema.get(k)) for k, v in columns.items()})
            pq.write_table(arrow, folder / f"{config['trial_id']}.parquet")


def timed(fn: Callable[[], Any], repeat: int) -> tuple[float, Any]:
    """Median wall time of `repeat` calls, and the last call's value."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        value = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", help="run folder to write or reuse (default: a temporary one)")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = Path(args.dir or tmp)
        if not (run_dir / "results" / "epochs").is_dir():
            start = time.perf_counter()
            write_run(run_dir, np.random.default_rng(0))
            print(f"wrote {len(configs())} trials x {EPOCHS} epochs in "
                  f"{time.perf_counter() - start:.1f} s")
        def read_both() -> None:
            read_results(str(run_dir), "trials")
            read_results(str(run_dir), "epochs")

        # The first read of a run builds its merged-table cache; later ones (and analyze) use it.
        first, _ = timed(read_both, 1)
        read, _ = timed(read_both, args.repeat)
        whole, result = timed(lambda: analyze(str(run_dir)), args.repeat)
        print(f"first read (trials + epochs, builds the cache): {first:6.2f} s")
        print(f"read results (trials + epochs): {read:6.2f} s (median of {args.repeat})")
        print(f"analyze, reading included:      {whole:6.2f} s (median of {args.repeat})")
        print(f"  of which statistics + writing: ~{whole - read:5.2f} s")
        print(f"{result.n_completed} completed trials, {len(result.summary)} summary rows, "
              f"{len(result.tests)} tests, {len(result.claims)} claim rows")


if __name__ == "__main__":
    main()
