"""Per-trial values from a trial's epoch records: status, `final_<metric>`, loss decay.

Torch-free: the sweep's driver summarises the records its workers stream to it without
importing torch (seconds of start-up on a small machine).
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class TrialClock:
    """When a trial (or its first attempt) began, for the `started_at`, `finished_at` and
    `wall_s` of its row: the trainer times a pack, the driver every attempt of a Tune trial."""

    started_at: datetime = field(default_factory=lambda: datetime.now(timezone.utc))
    t0: float = field(default_factory=time.perf_counter)

    def meta(self, device: str | None, node: str | None, **more: Any) -> dict[str, Any]:
        """The row's when-and-where values, as of now."""
        return {"started_at": self.started_at, "finished_at": datetime.now(timezone.utc),
                "wall_s": time.perf_counter() - self.t0, "device": device, "node": node, **more}


def summarize(records: list[dict[str, Any]], meta: Mapping[str, Any], error: str | None = None,
              ) -> dict[str, Any]:
    """Per-trial values from the epoch records: status, final_<metric>, loss decay, and `meta`
    (when and where it ran). Shared by run_trial and the sweep's driver, which sees only the
    streamed records. `error` marks a failed trial."""
    epochs = pd.DataFrame(records)
    last_loss = records[-1]["train_loss"] if records else math.nan
    if error is not None:
        status = "failed"
    elif records and not math.isfinite(last_loss):
        status, error = "diverged", f"non-finite train loss at epoch {records[-1]['epoch']}"
    else:
        status = "completed"
    return {
        "status": status,
        "error": error,
        "epochs_run": len(records),
        **meta,
        **final_values(epochs),
        **loss_decay(epochs["train_loss"].tolist() if len(epochs) else []),
    }


def final_values(epochs: pd.DataFrame) -> dict[str, float]:
    """`final_<metric>`: each epoch metric's last recorded value (eval metrics may skip epochs)."""
    return {f"final_{col}": (float(vals.iloc[-1]) if len(vals := epochs[col].dropna()) else math.nan)
            for col in epochs.columns if col != "epoch"}


def loss_decay(train_loss: Sequence[float]) -> dict[str, float | None]:
    """First epochs (1-based) whose loss is ≤ 50% / 10% of epoch 1's (None if never), and the
    slope of log(train_loss) over epochs (least squares; NaN when undefined)."""
    losses = np.asarray(train_loss, dtype=float)

    def first_below(share: float) -> int | None:
        if not len(losses):
            return None
        hits = np.nonzero(losses <= share * losses[0])[0]
        return int(hits[0]) + 1 if len(hits) else None

    positive = np.isfinite(losses) & (losses > 0)
    slope = (float(np.polyfit(np.nonzero(positive)[0] + 1.0, np.log(losses[positive]), 1)[0])
             if positive.sum() >= 2 else math.nan)
    return {"loss_half_epoch": first_below(0.5), "loss_tenth_epoch": first_below(0.1),
            "loss_decay_rate": slope}
