"""Run mlsweep's benchmarks and print a markdown summary of medians and ratios vs the targets.

    python -m bench [--quick] [--repeat N]
        [--only orchestration|fixed_cost|throughput|diagnostics|analysis|features|estimate|packing
                |live_report]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from bench import (
    analysis_scale,
    diagnostics_cost,
    estimate,
    feature_cache,
    fixed_cost,
    live_report,
    orchestration,
    packing,
    throughput,
)
from bench.common import machine

BENCHMARKS = {"orchestration": orchestration.run, "fixed_cost": fixed_cost.run, "throughput": throughput.run,
              "diagnostics": diagnostics_cost.run, "analysis": analysis_scale.run,
              "features": feature_cache.run, "estimate": estimate.run,
              "packing": packing.run, "live_report": live_report.run}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="24 of the 72 quickstart trials, a smaller CIFAR-10-shaped set, 3 repeats")
    parser.add_argument("--only", choices=BENCHMARKS, action="append",
                        help="run only this benchmark (repeatable)")
    parser.add_argument("--repeat", type=int, default=None, help="repeats per figure (default 3; 5 "
                        "epochs for throughput unless --quick)")
    args = parser.parse_args()
    print(f"# mlsweep benchmarks\n\n`{' '.join(['python -m bench', *sys.argv[1:]])}` — {machine()}\n",
          flush=True)
    for name in args.only or BENCHMARKS:
        repeat = args.repeat or (5 if name == "throughput" and not args.quick else 3)
        start = time.perf_counter()
        with tempfile.TemporaryDirectory(prefix=f"mlsweep-bench-{name}-") as tmp:
            section = BENCHMARKS[name](Path(tmp), args.quick, repeat)
        section.notes.append(f"benchmark took {time.perf_counter() - start:.0f} s; finished {machine()}")
        print(section.markdown(), flush=True)


if __name__ == "__main__":
    main()
