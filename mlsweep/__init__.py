"""mlsweep: Ray Tune sweeps for deep metric learning studies.

`run_trial`, `run_trials` and `read_results` are imported lazily: `mlsweep plan` and the CLI's help stay
fast, without loading torch.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"
__all__ = ["read_results", "run_trial", "run_trials"]


def __getattr__(name: str) -> Any:
    if name in ("run_trial", "run_trials"):
        from mlsweep.trainer import loop

        return getattr(loop, name)
    if name == "read_results":
        from mlsweep.results import read_results

        return read_results
    raise AttributeError(f"module 'mlsweep' has no attribute {name!r}")
