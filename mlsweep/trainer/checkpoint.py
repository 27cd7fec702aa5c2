"""A pack's checkpoints in the run's storage, so that a retry or a relaunch resumes it exactly.

`<run>/checkpoints/<pack_id>/epoch-000012.pt` (catalog.pack_id: the trial id of a pack of one, a
hash of the members' ids for a larger pack), with `members.json` beside them: the member ids,
which a relaunch's driver reads (without torch) to train the same pack again. A file holds what
the pack's future depends on (the trainer's `state_dict`: networks, loss parameters, optimiser,
every generator, counters) and every epoch record and step row so far, which a resumed pack
hands to its callback again: the driver keeps only the latest attempt's epochs, so none is lost
or counted twice. Reporters keep nothing across epochs (their `end_epoch` empties them), so a
checkpoint taken at an epoch's end needs none of their state.

Files are written atomically through the pyarrow file systems (local folders and s3:// alike)
and the latest two are kept: a file cut short falls back to the one before, or to scratch,
with a warning naming it, never an error.
"""

from __future__ import annotations

import contextlib
import io
import json
import random
import time
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import pyarrow.fs as pafs
import torch

from mlsweep import results
from mlsweep.catalog import pack_id
from mlsweep.runfolder import MEMBERS

KEEP = 2  # newest files kept: the one before the latest is the fallback for a bad latest
FORMAT = 1  # bumped when the layout of a checkpoint changes; other formats are skipped


class BadCheckpointWarning(UserWarning):
    """A checkpoint was skipped: unreadable, or written for other trials or another format."""


def global_rng_state() -> dict[str, Any]:
    """The process-wide generators (torch CPU and CUDA, numpy, random) as tensors and plain
    values, which `torch.load(weights_only=True)` reads back."""
    kind, key, pos, has_gauss, gauss = np.random.get_state()
    return {"torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            "numpy": [kind, torch.from_numpy(key.astype(np.int64)), pos, has_gauss, gauss],
            "random": random.getstate()}


def set_global_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if state["cuda"] and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])
    kind, key, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((kind, key.numpy().astype(np.uint32), pos, has_gauss, gauss))
    version, internal, gauss_next = state["random"]
    random.setstate((version, tuple(internal), gauss_next))


class Checkpoints:
    """One pack's checkpoint folder and when to write the next one: every `every` epochs
    (0: never by epochs) and whenever `minutes` of wall time passed since the last (0: never
    by time), so a trial of seconds writes none by default."""

    def __init__(self, root: str, trial_ids: Sequence[str], every: int, minutes: float) -> None:
        self.fs, base = results.filesystem(root)
        self.folder = results.join(base, pack_id(trial_ids))
        self.trial_ids = list(trial_ids)
        self.every, self.period_s = every, minutes * 60.0
        self.saved_at = time.monotonic()

    def due(self, epoch: int) -> bool:
        by_epochs = self.every > 0 and epoch % self.every == 0
        return by_epochs or (self.period_s > 0 and time.monotonic() - self.saved_at >= self.period_s)

    def save(self, epoch: int, state: dict[str, Any]) -> None:
        """Write the checkpoint of `epoch` atomically, then drop all but the newest KEEP."""
        buffer = io.BytesIO()
        torch.save({"format": FORMAT, "trial_ids": self.trial_ids, "epoch": epoch, **state}, buffer)
        if not self._files():  # the pack's members, for a relaunch's driver to keep them together
            text = json.dumps({"trial_ids": self.trial_ids}).encode()
            results.write_atomic(self.fs, f"{self.folder}/{MEMBERS}", lambda stream: stream.write(text))
        results.write_atomic(self.fs, f"{self.folder}/epoch-{epoch:06d}.pt",
                             lambda stream: stream.write(buffer.getbuffer()))
        self.saved_at = time.monotonic()
        for old in self._files()[KEEP:]:
            with contextlib.suppress(OSError, FileNotFoundError):
                self.fs.delete_file(old)

    def latest(self) -> dict[str, Any] | None:
        """The newest checkpoint that reads back whole and belongs to these trials; None
        when there is none (train from scratch)."""
        for path in self._files():
            try:
                with self.fs.open_input_file(path) as stream:
                    state = torch.load(io.BytesIO(stream.read()), map_location="cpu", weights_only=True)
            except Exception as error:  # any damage to a file means: try the one before
                reason = str(error).splitlines()[0] if str(error) else type(error).__name__
            else:
                if state.get("format") == FORMAT and state.get("trial_ids") == self.trial_ids:
                    return state
                reason = "written for other trials or in another format"
            warnings.warn(BadCheckpointWarning(f"{path}: checkpoint skipped ({reason})"), stacklevel=2)
        return None

    def clear(self) -> None:
        """Delete the pack's checkpoints (its trials are done)."""
        with contextlib.suppress(OSError, FileNotFoundError):
            self.fs.delete_dir(self.folder)

    def _files(self) -> list[str]:
        """The pack's checkpoint files, newest first."""
        if self.fs.get_file_info(self.folder).type != pafs.FileType.Directory:
            return []
        names = [f.path for f in self.fs.get_file_info(pafs.FileSelector(self.folder))
                 if f.is_file and f.base_name.startswith("epoch-") and f.base_name.endswith(".pt")]
        return sorted(names, reverse=True)
