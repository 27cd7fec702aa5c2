"""The columns of the three results tables and their types, read off the settings and metrics.

Every file of a table is written with these columns and types (absent values as typed nulls),
so a results folder reads as one table with any Parquet reader. Types are named here as
strings; mlsweep.results turns them into Arrow types.
"""

from __future__ import annotations

from mlsweep.catalog.metrics import EPOCH_METRICS, STEP_COLUMNS, TRIAL_METRICS
from mlsweep.catalog.settings import NESTED, SETTINGS

TABLES = ("trials", "epochs", "steps")
STATUSES = ("completed", "failed", "diverged")

IDENTITY = {"trial_id": "string", "sweep": "string",
            **{name: s.column for name, s in SETTINGS.items()}, **dict.fromkeys(NESTED, "json")}

OWN: dict[str, dict[str, str]] = {
    "trials": {"status": "string", "error": "string", "epochs_run": "int64", "attempts": "int64",
               "started_at": "timestamp", "finished_at": "timestamp", "wall_s": "float64",
               "device": "string", "node": "string", "resumed_from_epoch": "int64",
               "pack_id": "string", "pack_size": "int64",
               **{f"final_{m}": "float64" for m in EPOCH_METRICS}, **TRIAL_METRICS},
    "epochs": {"epoch": "int64", **dict.fromkeys(EPOCH_METRICS, "float64")},
    "steps": {"epoch": "int64", "step": "int64", **dict.fromkeys(STEP_COLUMNS, "float64")},
}

COLUMNS: dict[str, dict[str, str]] = {table: {**IDENTITY, **OWN[table]} for table in TABLES}
