"""A plain hand-written Ray Tune script around the same trainer: the baseline of `mlsweep launch`.

    python -m bench.plain_tune CONFIGS.json --storage DIR

CONFIGS.json is a list of resolved trial configs (`mlsweep plan --format json`). Ray is started
as `mlsweep launch` starts it (embedded, no dashboard, quiet) and Tune's own file loggers are
off, as there, so the difference between the two is mlsweep's own work per trial.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")

import ray
from ray import tune

from mlsweep import run_trial


def trainable(params: dict[str, Any]) -> None:
    run_trial(params["config"], on_epoch=lambda record, steps: tune.report(record))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("configs", type=Path)
    parser.add_argument("--storage", type=Path, required=True)
    args = parser.parse_args()
    configs = json.loads(args.configs.read_text())
    ray.init(include_dashboard=False, log_to_driver=False)
    tuner = tune.Tuner(
        tune.with_resources(trainable, {"cpu": 1}),
        param_space={"config": tune.grid_search(configs)},
        tune_config=tune.TuneConfig(max_concurrent_trials=2, reuse_actors=True),
        run_config=tune.RunConfig(storage_path=str(args.storage.resolve()), verbose=0))
    results = tuner.fit()
    if results.errors:
        raise SystemExit(f"{len(results.errors)} trials failed: {results.errors[0]}")


if __name__ == "__main__":
    main()
