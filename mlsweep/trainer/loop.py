"""Trials from resolved configs: seed, build, train, hand each epoch to the reporters.

Every sweep trial runs this same code, in-process (`mlsweep train`, `mlsweep.run_trial`) or in
a Ray Tune worker, alone or packed with others (`run_trials`, issue 16): a pack of trials that
differ only in per-member scalars trains as one stacked model, and a trial alone is a pack of
one. Same config, same numbers, in any pack: all randomness flows from the member's `seed`
(init, batch order, augmentation, mining) through its own generator, and the split from
`split_seed`. With a checkpoint folder (`checkpoints`), a pack saves its state every
`checkpoint_every` epochs and `checkpoint_minutes` (mlsweep.trainer.checkpoint) and a later run
of the same pack resumes from the latest: the same epochs and numbers as without the break.
"""

from __future__ import annotations

import math
import random
import socket
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from mlsweep.catalog import TrialConfig, pack_key, trial_id, uses_feature_cache
from mlsweep.diagnostics.base import EvalContext, Reporter, StepContext, build_reporters
from mlsweep.diagnostics.summary import TrialClock, summarize
from mlsweep.trainer.checkpoint import Checkpoints, global_rng_state, set_global_rng_state
from mlsweep.trainer.data import DataSplit, load_dataset
from mlsweep.trainer.features import frozen_features
from mlsweep.trainer.losses import build_loss
from mlsweep.trainer.models import HeadOnly, build_model
from mlsweep.trainer.optimizers import make_optimizer
from mlsweep.trainer.packed_losses import build_packed_loss
from mlsweep.trainer.packed_models import SoloNet, pack_models
from mlsweep.trainer.sampling import epoch_batches, prepare_batch

EVAL_BATCH = 1024
EpochCallback = Callable[[dict[str, Any], list[dict[str, Any]]], None]
PackCallback = Callable[[int, dict[str, Any], list[dict[str, Any]]], None]
ResumeCallback = Callable[[int, int], None]  # (index of the config, epoch resumed after)


class InjectedFailure(RuntimeError):
    """Raised on purpose by `fail_at_epoch`, to exercise retries and failure records; not by
    a run resumed from a checkpoint, so that a retry can resume past the failure."""


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


def train_subset(n: int, size: int, split_seed: int) -> torch.Tensor:
    """A fixed subset of train indices (≤ size) chosen by split_seed: the same for every trial."""
    if n <= size:
        return torch.arange(n)
    return torch.randperm(n, generator=torch.Generator().manual_seed(split_seed))[:size].sort().values


@torch.no_grad()
def embed(model: nn.Module, x: torch.Tensor, data: DataSplit, autocast: Any) -> torch.Tensor:
    """Embeddings of a whole split in eval mode, batched to bound memory: [N, D] from a solo
    network, [P, N, D] from a pack (every member embeds the same samples, in one forward)."""
    model.eval()
    out = []
    for start in range(0, len(x), EVAL_BATCH):
        batch = prepare_batch(x[start:start + EVAL_BATCH], data, False, False, None)
        with autocast():
            out.append((model.embed_shared(batch) if hasattr(model, "embed_shared")
                        else model(batch)).float())
    return torch.cat(out, dim=-2)


class _Trainer:
    """State of one running pack (one trial is a pack of one); `train_epoch` and `evaluate`
    give one record per member. The members share the data, the split and every setting but
    their per-member scalars (catalog.packing): each has its own generator, seeded by its own
    seed, and its own slice of the stacked network, loss parameters and optimiser state."""

    def __init__(self, configs: list[TrialConfig]) -> None:
        self.configs = configs
        config = self.config = configs[0]
        self.device = pick_device(config.torch_device)
        cuda = self.device.type == "cuda"
        self.autocast = ((lambda: torch.autocast("cuda", dtype=torch.bfloat16)) if cuda else nullcontext)
        data = load_dataset(config)
        nets, losses, self.generators = [], [], []
        for member in configs:  # each member's init and generator as it has them alone
            self.generators.append(seed_everything(member.seed))
            nets.append(build_model(member, data.input_shape))
            losses.append(build_loss(member, data.num_classes, member.embedding_dim))
        self.members = len(configs)
        if uses_feature_cache(config):  # such trials run alone (catalog.pack_key)
            # The whole net was built all the same: its random init drew the same numbers, so
            # the head and the loss start from the same state with and without the cache.
            data = frozen_features(config, data, nets[0].backbone, self.device, self.autocast, EVAL_BATCH)
            self.model: nn.Module = SoloNet(HeadOnly(nets[0]))
        else:
            self.model = pack_models(nets)
        self.model.to(self.device)
        self.data = data.to(self.device)
        self.loss_fn = build_packed_loss(configs, losses).to(self.device)
        self.params = [p for p in (*self.model.parameters(), *self.loss_fn.parameters()) if p.requires_grad]
        self.optimizer = make_optimizer(config.optimizer, self.params, config.lr, config.weight_decay)
        self.reporters: list[Reporter] = build_reporters(config.diagnostics)
        self.subset = train_subset(len(self.data.y_train), config.train_subset,
                                   config.split_seed).to(self.device)
        self.alive = torch.ones(self.members, dtype=torch.bool, device=self.device)
        self.frozen: list[torch.Tensor] = []  # parameters at the epoch their member left
        self.step = 0
        self.resumed_from: int | None = None  # the epoch of the checkpoint this run resumed from

    def state_dict(self) -> dict[str, Any]:
        """Everything the pack's next epochs depend on (the data and split are rebuilt the same)."""
        return {"model": self.model.state_dict(), "loss": self.loss_fn.state_dict(),
                "optimizer": self.optimizer.state_dict(), "step": self.step,
                "generators": [g.get_state() for g in self.generators], "rng": global_rng_state(),
                "alive": self.alive.cpu(), "frozen": [t.cpu() for t in self.frozen]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.loss_fn.load_state_dict(state["loss"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.step = state["step"]
        for generator, saved in zip(self.generators, state["generators"], strict=True):
            generator.set_state(saved)
        set_global_rng_state(state["rng"])
        self.alive = state["alive"].to(self.device)
        self.frozen = [t.to(self.device) for t in state["frozen"]]

    def _epoch_batches(self) -> list[torch.Tensor]:
        """[P, batch] index tensors: each member's own batch order, batch by batch."""
        cfg = self.config
        per_member = [epoch_batches(self.data.y_train, cfg.batch_size, cfg.sampler, cfg.m_per_class, g)
                      for g in self.generators]
        return [torch.stack(batch) for batch in zip(*per_member, strict=True)]

    def _prepare(self, idx: torch.Tensor) -> torch.Tensor:
        """[P, batch, ...] model inputs; each member augments with its own generator."""
        data, augment = self.data, self.config.augment
        if not (data.image and augment):
            return prepare_batch(data.x_train[idx], data, True, False, None)
        return torch.stack([prepare_batch(data.x_train[i], data, True, True, g)
                            for i, g in zip(idx, self.generators, strict=True)])

    def leave(self, members: list[int]) -> None:
        """Members (diverged) leave the pack: out of the summed loss, their parameters fixed."""
        self.alive[members] = False
        dead = ~self.alive
        with torch.no_grad():
            self.frozen = [p[dead].clone() for p in self.params]

    def _hold_the_departed(self) -> None:
        if self.frozen:
            dead = ~self.alive
            with torch.no_grad():
                for p, kept in zip(self.params, self.frozen, strict=True):
                    p[dead] = kept

    def train_epoch(self, epoch: int) -> list[tuple[dict[str, Any], list[dict[str, Any]]]]:
        """One pass over the train split; per member, its epoch record and its step rows."""
        if self.config.fail_at_epoch == epoch and self.resumed_from is None:
            raise InjectedFailure(f"fail_at_epoch={epoch}: failing on purpose")
        self.model.train()
        start = time.perf_counter()
        batches = self._epoch_batches()
        losses: list[torch.Tensor] = []
        for idx in batches:
            x = self._prepare(idx)
            labels = self.data.y_train[idx]
            with self.autocast():
                emb = self.model(x)
            emb = emb.float()
            emb.retain_grad()
            out = self.loss_fn(emb, labels, self.generators)
            self.optimizer.zero_grad(set_to_none=True)
            torch.where(self.alive, out.loss, 0.0).sum().backward()
            if self.frozen:
                for p in self.params:
                    if p.grad is not None:
                        p.grad[~self.alive] = 0
            ctx = StepContext(out.loss, out.terms, emb, self.model, self.loss_fn, out.counts)
            for reporter in self.reporters:
                reporter.on_step(ctx)
            self.optimizer.step()
            self._hold_the_departed()
            losses.append(out.loss.detach())
        # One device read per column and epoch, not one per step.
        columns = {"batch_loss": torch.stack(losses).T.double().tolist()}
        for reporter in self.reporters:
            columns.update(reporter.end_epoch())
        epoch_s = time.perf_counter() - start
        samples = sum(b.shape[1] for b in batches)  # per member
        out_rows = []
        for member in range(self.members):
            cols = {k: col[member] for k, col in columns.items()}
            steps = [{"epoch": epoch, "step": self.step + i + 1, **{k: col[i] for k, col in cols.items()}}
                     for i in range(len(batches))]
            record = {"epoch": epoch, "train_loss": float(np.mean(cols["batch_loss"])), "epoch_s": epoch_s,
                      "samples_per_s": samples / epoch_s}
            record.update({k: _nanmean(col) for k, col in cols.items() if k != "batch_loss"})
            out_rows.append((record, steps))
        self.step += len(batches)
        return out_rows

    def evaluate(self, members: list[int]) -> dict[int, dict[str, float]]:
        """Every reporter's evaluation columns per member, from embeddings computed once for
        the whole pack."""
        data = self.data
        start = time.perf_counter()
        test = embed(self.model, data.x_test, data, self.autocast)
        train = embed(self.model, data.x_train[self.subset], data, self.autocast)
        shared_s = time.perf_counter() - start
        results = {}
        for member in members:
            start = time.perf_counter()
            ctx = EvalContext(test[member], data.y_test, train[member], data.y_train[self.subset])
            out: dict[str, float] = {}
            for reporter in self.reporters:
                out.update(reporter.on_eval(ctx))
            results[member] = {**out, "eval_s": shared_s + time.perf_counter() - start}
        return results


def _nanmean(values: list[float]) -> float:
    """Mean of the finite-or-infinite values, ignoring NaN (steps that formed no term)."""
    kept = [v for v in values if not math.isnan(v)]
    return float(np.mean(kept)) if kept else math.nan


def _trial_config(config: Mapping[str, Any] | TrialConfig, where: Callable[[str], str]) -> TrialConfig:
    """What the trainer reads: a mapping checked and resolved (its bad keys named by `where`)."""
    return config if isinstance(config, TrialConfig) else TrialConfig.from_mapping(config, where)


def run_trials(configs: Sequence[Mapping[str, Any] | TrialConfig], on_epoch: PackCallback | None = None,
               checkpoints: str | None = None, on_resume: ResumeCallback | None = None,
               ) -> list[TrialResult]:
    """Train several trials, those that can share a pack (catalog.pack_key) as one stacked
    model; one TrialResult per config, in order, each equal to what the config gives alone.
    `on_epoch(index, record, step_rows)` sees each member's epochs as they end. A member whose
    loss turns non-finite ends as `diverged` and leaves its pack; other errors propagate (and
    fail the whole pack).

    `checkpoints`: a folder or URI (`<run>/checkpoints`) where each pack keeps its checkpoints
    while it trains (deleted when it ends). A pack that finds one there resumes after its
    epoch: `on_resume(index, epoch)` hears it first, then `on_epoch` sees every epoch recorded
    up to the checkpoint again, in order, so a callback that starts afresh misses none.

    Each config is a TrialConfig or a mapping (resolved, as `mlsweep plan --format json` prints
    it, or partial), which is checked and resolved into one (`TrialConfig.from_mapping`)."""
    cfgs = [_trial_config(c, lambda key, i=i: f"run_trials[{i}]: {key}") for i, c in enumerate(configs)]
    groups: dict[Any, list[int]] = {}
    for i, cfg in enumerate(cfgs):
        groups.setdefault(pack_key(cfg) or ("alone", i), []).append(i)
    results: dict[int, TrialResult] = {}
    for indices in groups.values():
        pack_on_epoch = None if on_epoch is None else (
            lambda member, record, steps, indices=indices: on_epoch(indices[member], record, steps))
        pack_on_resume = None if on_resume is None else (
            lambda member, epoch, indices=indices: on_resume(indices[member], epoch))
        pack = [cfgs[i] for i in indices]
        store = None if checkpoints is None else Checkpoints(
            checkpoints, [trial_id(c.as_dict()) for c in pack], pack[0].checkpoint_every,
            pack[0].checkpoint_minutes)
        for i, result in zip(indices, _run_pack(pack, pack_on_epoch, store, pack_on_resume), strict=True):
            results[i] = result
    return [results[i] for i in range(len(cfgs))]


def _run_pack(cfgs: list[TrialConfig], on_epoch: PackCallback | None, store: Checkpoints | None,
              on_resume: ResumeCallback | None) -> list[TrialResult]:
    clock = TrialClock()
    trainer = _Trainer(cfgs)
    cfg = trainer.config
    records: list[list[dict[str, Any]]] = [[] for _ in cfgs]
    all_steps: list[list[dict[str, Any]]] = [[] for _ in cfgs]
    active = list(range(len(cfgs)))
    saved = None if store is None else store.latest()
    if saved is not None:
        trainer.load_state_dict(saved["trainer"])
        trainer.resumed_from = saved["epoch"]
        records, all_steps, active = saved["records"], saved["steps"], saved["active"]
        _replay(records, all_steps, saved["epoch"], on_epoch, on_resume)
    for epoch in range((trainer.resumed_from or 0) + 1, cfg.epochs + 1):
        rows = trainer.train_epoch(epoch)
        diverged = [m for m in active if not math.isfinite(rows[m][0]["train_loss"])]
        going_on = [m for m in active if m not in diverged]
        if going_on and (epoch % cfg.eval_every == 0 or epoch == cfg.epochs):
            for member, values in trainer.evaluate(going_on).items():
                rows[member][0].update(values)
        for member in active:
            record, steps = rows[member]
            records[member].append(record)
            all_steps[member] += steps
            if on_epoch is not None:
                on_epoch(member, record, steps)
        if diverged:
            trainer.leave(diverged)
        active = going_on
        if not active:
            break
        if store is not None and epoch < cfg.epochs and store.due(epoch):
            store.save(epoch, {"trainer": trainer.state_dict(), "records": records, "steps": all_steps,
                               "active": active})
    if store is not None:
        store.clear()
    resumed = {} if trainer.resumed_from is None else {"resumed_from_epoch": trainer.resumed_from}
    meta = clock.meta(str(trainer.device), socket.gethostname(), **resumed)
    return [TrialResult(pd.DataFrame(r), pd.DataFrame(s), summarize(r, meta))
            for r, s in zip(records, all_steps, strict=True)]


def _replay(records: list[list[dict[str, Any]]], steps: list[list[dict[str, Any]]], epoch: int,
            on_epoch: PackCallback | None, on_resume: ResumeCallback | None) -> None:
    """Hand a resumed pack's recorded epochs to the callbacks again, as they first ended."""
    for member in range(len(records)):
        if on_resume is not None:
            on_resume(member, epoch)
        if on_epoch is not None:
            by_epoch: dict[int, list[dict[str, Any]]] = {}
            for row in steps[member]:
                by_epoch.setdefault(row["epoch"], []).append(row)
            for record in records[member]:
                on_epoch(member, record, by_epoch.get(record["epoch"], []))


def run_trial(config: Mapping[str, Any] | TrialConfig, on_epoch: EpochCallback | None = None,
              ) -> TrialResult:
    """Train one trial: a pack of one (`run_trials`). `config` is a TrialConfig or a mapping: a
    resolved config (as `mlsweep plan --format json` prints) or a partial one, completed with
    defaults. `on_epoch(record, step_rows)` sees each epoch as it ends. A non-finite loss ends
    the trial as `diverged`; other errors propagate."""
    cfg = _trial_config(config, lambda key: f"run_trial: {key}")
    callback = None if on_epoch is None else (lambda _, record, steps: on_epoch(record, steps))
    return run_trials([cfg], callback)[0]
