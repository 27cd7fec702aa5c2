"""One trial from a resolved config: seed, build, train, hand each epoch to the reporters.

Every sweep trial runs this same code, in-process (`mlsweep train`, `mlsweep.run_trial`) or in
a Ray Tune worker. Same config, same numbers: all randomness flows from `seed` (init, batch
order, augmentation, mining) and the split from `split_seed`.
"""

from __future__ import annotations

import math
import random
import socket
import time
from collections.abc import Callable, Mapping
from contextlib import nullcontext
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from mlsweep.catalog import validate_config
from mlsweep.diagnostics.base import EvalContext, Reporter, StepContext, build_reporters
from mlsweep.diagnostics.summary import summarize
from mlsweep.trainer.data import DataSplit, load_dataset
from mlsweep.trainer.features import frozen_features, uses_feature_cache
from mlsweep.trainer.losses import build_loss
from mlsweep.trainer.models import HeadOnly, build_model
from mlsweep.trainer.sampling import epoch_batches, prepare_batch

EVAL_BATCH = 1024
EpochCallback = Callable[[dict[str, Any], list[dict[str, Any]]], None]


class InjectedFailure(RuntimeError):
    """Raised on purpose by `fail_at_epoch`, to exercise retries and failure records."""


@dataclass
class TrialResult:
    """What a trial produced: per-epoch records, per-step rows, and per-trial values."""

    epochs: pd.DataFrame
    steps: pd.DataFrame
    summary: dict[str, Any] = field(default_factory=dict)


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def seed_everything(seed: int) -> torch.Generator:
    """Seed torch, numpy and random; return the CPU generator that drives batches, augmentation
    and mining (on the CPU, so a trial draws the same batches on any device)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def make_optimizer(name: str, params: list[nn.Parameter], lr: float,
                   weight_decay: float) -> torch.optim.Optimizer:
    """The fused kernels (one call over all parameters) where torch has them: on small models
    the per-tensor update loop was a fifth of a step."""
    fused = all(p.device.type in ("cpu", "cuda") for p in params) or None
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=0.9, weight_decay=weight_decay, fused=fused)
    optimizer = torch.optim.AdamW if name == "adamw" else torch.optim.Adam
    return optimizer(params, lr=lr, weight_decay=weight_decay, fused=fused)


def train_subset(n: int, size: int, split_seed: int) -> torch.Tensor:
    """A fixed subset of train indices (≤ size) chosen by split_seed: the same for every trial."""
    if n <= size:
        return torch.arange(n)
    return torch.randperm(n, generator=torch.Generator().manual_seed(split_seed))[:size].sort().values


@torch.no_grad()
def embed(model: nn.Module, x: torch.Tensor, data: DataSplit, autocast: Any) -> torch.Tensor:
    """Embeddings of a whole split in eval mode, batched to bound memory."""
    model.eval()
    out = []
    for start in range(0, len(x), EVAL_BATCH):
        with autocast():
            out.append(model(prepare_batch(x[start:start + EVAL_BATCH], data, False, False, None)).float())
    return torch.cat(out)


class _Trainer:
    """State of one running trial; `run` drives the epochs."""

    def __init__(self, config: dict[str, Any]) -> None:
        self.config = config
        self.device = pick_device(config["torch_device"])
        self.generator = seed_everything(config["seed"])
        cuda = self.device.type == "cuda"
        self.autocast = ((lambda: torch.autocast("cuda", dtype=torch.bfloat16)) if cuda else nullcontext)
        data = load_dataset(config)
        # The whole net is built either way: its random init draws the same numbers, so the
        # head and the loss start from the same state with and without the feature cache.
        self.model = build_model(config, data.input_shape)
        self.loss_fn = build_loss(config, data.num_classes, config["embedding_dim"]).to(self.device)
        self.net: nn.Module = self.model  # what maps a batch of self.data to embeddings
        if uses_feature_cache(config):
            data = frozen_features(config, data, self.model.backbone, self.device, self.autocast,
                                   EVAL_BATCH)
            self.net = HeadOnly(self.model)
        self.net.to(self.device)
        self.data = data.to(self.device)
        params = [p for p in (*self.net.parameters(), *self.loss_fn.parameters()) if p.requires_grad]
        self.optimizer = make_optimizer(config["optimizer"], params, config["lr"], config["weight_decay"])
        self.reporters: list[Reporter] = build_reporters(config["diagnostics"])
        self.subset = train_subset(len(self.data.y_train), config["train_subset"],
                                   config["split_seed"]).to(self.device)
        self.step = 0

    def train_epoch(self, epoch: int) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """One pass over the train split; returns the epoch record and its step rows."""
        cfg, data = self.config, self.data
        if cfg["fail_at_epoch"] == epoch:
            raise InjectedFailure(f"fail_at_epoch={epoch}: failing on purpose")
        self.net.train()
        start = time.perf_counter()
        batches = epoch_batches(data.y_train, cfg["batch_size"], cfg["sampler"],
                                cfg.get("m_per_class", 0), self.generator)
        losses: list[torch.Tensor] = []
        for idx in batches:
            x = prepare_batch(data.x_train[idx], data, True, cfg["augment"], self.generator)
            labels = data.y_train[idx]
            with self.autocast():
                emb = self.net(x)
            emb = emb.float()
            emb.retain_grad()
            out = self.loss_fn(emb, labels, self.generator)
            self.optimizer.zero_grad(set_to_none=True)
            out.loss.backward()
            ctx = StepContext(out.loss, out.terms, emb, self.net, self.loss_fn)
            for reporter in self.reporters:
                reporter.on_step(ctx)
            self.optimizer.step()
            losses.append(out.loss.detach())
        # One device read per column and epoch, not one per step.
        columns = {"batch_loss": torch.stack(losses).double().tolist()}
        for reporter in self.reporters:
            columns.update(reporter.end_epoch())
        epoch_s = time.perf_counter() - start
        steps = [{"epoch": epoch, "step": self.step + i + 1, **{k: col[i] for k, col in columns.items()}}
                 for i in range(len(batches))]
        self.step += len(batches)
        record = {"epoch": epoch, "train_loss": float(np.mean(columns["batch_loss"])), "epoch_s": epoch_s,
                  "samples_per_s": sum(len(b) for b in batches) / epoch_s}
        record.update({k: _nanmean(col) for k, col in columns.items() if k != "batch_loss"})
        return record, steps

    def evaluate(self) -> dict[str, float]:
        """Every reporter's evaluation columns, from embeddings computed once."""
        data = self.data
        start = time.perf_counter()
        ctx = EvalContext(embed(self.net, data.x_test, data, self.autocast), data.y_test,
                          embed(self.net, data.x_train[self.subset], data, self.autocast),
                          data.y_train[self.subset])
        out: dict[str, float] = {}
        for reporter in self.reporters:
            out.update(reporter.on_eval(ctx))
        return {**out, "eval_s": time.perf_counter() - start}


def _nanmean(values: list[float]) -> float:
    """Mean of the finite-or-infinite values, ignoring NaN (steps that formed no term)."""
    kept = [v for v in values if not math.isnan(v)]
    return float(np.mean(kept)) if kept else math.nan


def run_trial(config: Mapping[str, Any], on_epoch: EpochCallback | None = None) -> TrialResult:
    """Train one trial. `config` is a resolved config (as `mlsweep plan --format json` prints) or
    a partial one, completed with defaults. `on_epoch(record, step_rows)` sees each epoch as it
    ends. A non-finite loss ends the trial as `diverged`; other errors propagate."""
    cfg = validate_config(config, lambda key: f"run_trial: {key}")
    started = datetime.now(timezone.utc)
    t0 = time.perf_counter()
    trainer = _Trainer(cfg)
    records: list[dict[str, Any]] = []
    all_steps: list[dict[str, Any]] = []
    for epoch in range(1, cfg["epochs"] + 1):
        record, steps = trainer.train_epoch(epoch)
        diverged = not math.isfinite(record["train_loss"])
        if not diverged and (epoch % cfg["eval_every"] == 0 or epoch == cfg["epochs"]):
            record.update(trainer.evaluate())
        records.append(record)
        all_steps += steps
        if on_epoch is not None:
            on_epoch(record, steps)
        if diverged:
            break
    meta = {"started_at": started, "finished_at": datetime.now(timezone.utc),
            "wall_s": time.perf_counter() - t0, "device": str(trainer.device),
            "node": socket.gethostname()}
    return TrialResult(pd.DataFrame(records), pd.DataFrame(all_steps), summarize(records, meta))
