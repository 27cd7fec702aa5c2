"""Frozen-backbone features, computed once and cached in the data folder.

With `freeze_backbone` on and augmentation off, a backbone maps every sample to the same
features in every epoch of every trial that shares the data, the split and the backbone's
weights, so the trial trains only its head on features computed once. The cache file is keyed
by a digest of what fixes the features: the split's input tensors (data set, split, image
size), the backbone's name and every tensor of its state (architecture and weights, also a
seed-dependent random init), the normalisation and the device kind. The train subset of the
train_ metrics is an index into the cached train features. With augmentation on every epoch
sees other inputs: there is no cache.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import hashlib
import json
import os
import tempfile
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from mlsweep.catalog import TrialConfig
from mlsweep.trainer.data import DataSplit, data_root
from mlsweep.trainer.sampling import prepare_batch

# Bumped whenever the features a digest names would change (preprocessing, file layout): a
# file of another format is rebuilt, never trusted.
FORMAT = 1
FOLDER = ".mlsweep-features"


def frozen_features(config: TrialConfig, data: DataSplit, backbone: nn.Module,
                    device: torch.device, autocast: Callable[[], Any], batch: int) -> DataSplit:
    """`data` with each split replaced by its (cached) backbone features, float32 [N, F].

    `data` and `backbone` are on the CPU (the digest reads them there); the features are
    computed on `device` in chunks of `batch`, in eval mode and under `autocast`, as the
    trial's own forward pass computes them, and come back on the CPU.
    """
    key = feature_key(config.model, data, backbone, device)
    name = f"{config.dataset}-{config.model}-{key}.pt"
    rows = {"train": len(data.x_train), "test": len(data.x_test)}

    def compute() -> dict[str, Tensor]:
        backbone.to(device).eval()
        try:
            return {split: _forward(backbone, x, data, device, autocast, batch)
                    for split, x in (("train", data.x_train), ("test", data.x_test))}
        finally:
            backbone.to("cpu")

    features = cached(data_root(config.data_dir) / FOLDER / name, key, rows, compute)
    return dataclasses.replace(data, x_train=features["train"], x_test=features["test"],
                               image=False, mean=(), std=())


def feature_key(model: str, data: DataSplit, backbone: nn.Module, device: torch.device) -> str:
    """Digest of everything that fixes the features: inputs, backbone state, preprocessing."""
    digest = hashlib.blake2b(digest_size=10)
    meta = {"format": FORMAT, "model": model, "image": data.image, "mean": data.mean,
            "std": data.std, "device": device.type,
            "shapes": [list(data.x_train.shape), list(data.x_test.shape)]}
    digest.update(json.dumps(meta, sort_keys=True).encode())
    for x in (data.x_train, data.x_test):
        digest.update(_bytes(x))
    for name, tensor in backbone.state_dict().items():
        digest.update(name.encode())
        digest.update(_bytes(tensor))
    return digest.hexdigest()


def _bytes(tensor: Tensor) -> memoryview:
    return memoryview(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy())


@torch.no_grad()
def _forward(backbone: nn.Module, x: Tensor, data: DataSplit, device: torch.device,
             autocast: Callable[[], Any], batch: int) -> Tensor:
    out = []
    for start in range(0, len(x), batch):
        inputs = prepare_batch(x[start:start + batch].to(device), data, False, False, None)
        with autocast():
            out.append(backbone(inputs).float().cpu())
    return torch.cat(out)


def cached(path: Path, key: str, rows: Mapping[str, int],
           compute: Callable[[], dict[str, Tensor]]) -> dict[str, Tensor]:
    """The tensors stored at `path`, or `compute()`'s, stored there first.

    One process at a time holds the lock beside the file, so trials on one node that ask at
    once compute the features once and the others read them. The file is written under a
    temporary name and renamed. A file that fails to read, or holds another format, key or
    row count, is rebuilt. Where the folder cannot be written (a read-only data folder) the
    trial computes its features for itself alone.
    """
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        lock_file = open(path.with_name(path.name + ".lock"), "a")  # noqa: SIM115 (held below)
    except OSError:
        return compute()
    with lock_file, _locked(lock_file.fileno()):
        found = _read(path, key, rows)
        if found is not None:
            return found
        features = compute()
        with contextlib.suppress(OSError):  # a full disk leaves this trial's features right
            _write(path, {"format": FORMAT, "key": key, **features})
        return features


@contextlib.contextmanager
def _locked(fd: int) -> Iterator[None]:
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)


def _read(path: Path, key: str, rows: Mapping[str, int]) -> dict[str, Tensor] | None:
    """The features in `path` if it holds exactly what `key` names, else None."""
    if not path.is_file():
        return None
    try:
        stored = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # truncated, garbled or foreign: any failure to read means rebuild
        return None
    if not isinstance(stored, dict) or stored.get("format") != FORMAT or stored.get("key") != key:
        return None
    features = {split: stored.get(split) for split in rows}
    for split, n in rows.items():
        tensor = features[split]
        if not (isinstance(tensor, Tensor) and tensor.dtype == torch.float32
                and tensor.dim() == 2 and len(tensor) == n):
            return None
    return features


def _write(path: Path, payload: dict[str, Any]) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    os.close(fd)
    try:
        torch.save(payload, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
