"""Diagnostic reporters (docs/metrics.md) and the per-trial summary of a trial's epochs.

Imported lazily: the sweep's driver reads `mlsweep.diagnostics.summary` without loading torch.
Adding a reporter is one new module and one entry in mlsweep.catalog.reporters.
"""

from __future__ import annotations

from typing import Any

_EXPORTS = {
    "EvalContext": "mlsweep.diagnostics.base",
    "Reporter": "mlsweep.diagnostics.base",
    "StepContext": "mlsweep.diagnostics.base",
    "build_reporters": "mlsweep.diagnostics.base",
    "retrieval_metrics": "mlsweep.diagnostics.retrieval",
    "variance_metrics": "mlsweep.diagnostics.variance",
    "loss_decay": "mlsweep.diagnostics.summary",
    "summarize": "mlsweep.diagnostics.summary",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'mlsweep.diagnostics' has no attribute {name!r}")
