"""The sweep's trials one after another in this process, no Ray: the baseline of `mlsweep launch`.

    python -m bench.sequential CONFIGS.json

One torch thread, as each trial has under `mlsweep launch` (cpu: 1): torch's default of one
thread per core only adds OpenMP spin-waiting on these small models, which on a busy machine
made this baseline several times slower.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from mlsweep import run_trial


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("configs", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(1)
    for config in json.loads(args.configs.read_text()):
        run_trial(config)


if __name__ == "__main__":
    main()
