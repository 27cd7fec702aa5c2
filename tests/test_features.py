"""The frozen-backbone feature cache: a cached trial has the uncached trial's numbers, the
cache is built once, shared, rebuilt when it cannot be read, and never used with augmentation."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
from datafiles import write_mnist

from mlsweep.catalog import SETTINGS, TrialConfig, resolve, trial_id, uses_feature_cache
from mlsweep.trainer.features import FOLDER, FORMAT, cached
from mlsweep.trainer.loop import TrialResult, run_trial

TIMING = ["epoch_s", "samples_per_s", "eval_s"]


def _frozen(tmp_path: Path, **settings: Any) -> dict[str, Any]:
    """A frozen backbone on 80 train / 40 test random 28x28 images (MNIST's IDX files)."""
    if not (tmp_path / "MNIST").exists():
        write_mnist(tmp_path, "MNIST", compress=False)
    return {"dataset": "mnist", "data_dir": str(tmp_path), "split": "official",
            "freeze_backbone": True, "pretrained": "none", "epochs": 3, "eval_every": 1,
            "batch_size": 16, "train_subset": 50, "torch_device": "cpu", "seed": 5, **settings}


def _assert_same_numbers(a: TrialResult, b: TrialResult) -> None:
    """Every epoch metric and step value equal to 1e-6 relative (timings aside)."""
    for x, y in ((a.epochs.drop(columns=TIMING), b.epochs.drop(columns=TIMING)), (a.steps, b.steps)):
        assert list(x.columns) == list(y.columns) and len(x) == len(y)
        pd.testing.assert_frame_equal(x, y, check_exact=False, rtol=1e-6, atol=0)
    assert a.epochs["map_at_r"].notna().all()


def _cache_files(tmp_path: Path) -> list[Path]:
    return sorted((tmp_path / FOLDER).glob("*.pt"))


@pytest.mark.parametrize(("model", "loss", "sampler"), [("convnet", "triplet", "random"),
                                                        ("resnet18", "contrastive", "m_per_class")])
def test_cached_trial_equals_uncached(tmp_path: Path, model: str, loss: str, sampler: str) -> None:
    config = _frozen(tmp_path, model=model, loss=loss, sampler=sampler, miner="random")
    uncached = run_trial({**config, "feature_cache": False})
    assert not (tmp_path / FOLDER).exists()
    building = run_trial(config)
    [cache] = _cache_files(tmp_path)
    written = cache.stat().st_mtime_ns
    reading = run_trial(config)
    assert cache.stat().st_mtime_ns == written and _cache_files(tmp_path) == [cache]
    _assert_same_numbers(uncached, building)
    _assert_same_numbers(uncached, reading)
    assert not list((tmp_path / FOLDER).glob("*.tmp"))


def test_a_truncated_cache_file_is_rebuilt(tmp_path: Path) -> None:
    config = _frozen(tmp_path, model="convnet", epochs=2)
    first = run_trial(config)
    [cache] = _cache_files(tmp_path)
    size = cache.stat().st_size
    cache.write_bytes(cache.read_bytes()[: size // 2])
    again = run_trial(config)
    _assert_same_numbers(first, again)
    assert cache.stat().st_size == size


def test_seed_and_weights_key_the_cache(tmp_path: Path) -> None:
    """A random-init backbone differs per seed, so each seed has its own features; losses of
    one seed share them."""
    for seed, loss in ((0, "triplet"), (0, "contrastive"), (1, "triplet")):
        run_trial(_frozen(tmp_path, model="convnet", epochs=1, seed=seed, loss=loss))
    assert len(_cache_files(tmp_path)) == 2


def test_no_cache_with_augmentation_or_a_trained_backbone(tmp_path: Path) -> None:
    run_trial(_frozen(tmp_path, model="convnet", epochs=1, augment=True))
    run_trial(_frozen(tmp_path, model="convnet", epochs=1, freeze_backbone=False))
    assert not (tmp_path / FOLDER).exists()
    base = resolve({"freeze_backbone": True})
    assert uses_feature_cache(base)
    assert not uses_feature_cache({**base, "augment": True})
    assert not uses_feature_cache({**base, "feature_cache": False})
    assert not uses_feature_cache(resolve({"freeze_backbone": True, "dataset": "cifar10"}))
    assert uses_feature_cache(TrialConfig.from_mapping({"freeze_backbone": True}))
    assert not uses_feature_cache(TrialConfig.from_mapping({"freeze_backbone": True, "augment": True}))


def test_feature_cache_never_changes_a_trial_id() -> None:
    setting = SETTINGS["feature_cache"]
    assert setting.default is True and not setting.sets_numbers and setting.since == "0.2"
    config = resolve({"loss": "triplet", "dataset": "fashion_mnist", "freeze_backbone": True,
                      "model": "resnet18"})
    assert trial_id(config) == "23a1e6bd78d3"  # its id before feature_cache existed
    assert trial_id({**config, "feature_cache": False}) == "23a1e6bd78d3"


# -- the store ----------------------------------------------------------------------------


def _features(rows: int = 4) -> dict[str, torch.Tensor]:
    return {"train": torch.arange(rows * 3, dtype=torch.float32).view(rows, 3),
            "test": torch.ones(2, 3)}


class Counting:
    """A compute function that counts its calls."""

    def __init__(self, delay_s: float = 0.0) -> None:
        self.calls, self.delay_s = 0, delay_s

    def __call__(self) -> dict[str, torch.Tensor]:
        self.calls += 1
        time.sleep(self.delay_s)
        return _features()


ROWS = {"train": 4, "test": 2}


def test_store_builds_once_then_reads(tmp_path: Path) -> None:
    compute = Counting()
    path = tmp_path / "f.pt"
    first = cached(path, "k", ROWS, compute)
    second = cached(path, "k", ROWS, compute)
    assert compute.calls == 1
    assert all(torch.equal(first[s], second[s]) for s in ROWS)
    cached(path, "other key", ROWS, compute)
    cached(path, "other key", {"train": 5, "test": 2}, compute)  # other row count
    assert compute.calls == 3


@pytest.mark.parametrize("payload", [
    {"format": FORMAT - 1, "key": "k", **_features()},  # an older version's file
    {"format": FORMAT, "key": "k", "train": np.zeros((4, 3))},  # not the tensors expected
    {"format": FORMAT, "key": "k", "train": torch.zeros(4, 3, dtype=torch.float64),
     "test": torch.zeros(2, 3)},
])
def test_store_rebuilds_what_it_does_not_trust(tmp_path: Path, payload: dict[str, Any]) -> None:
    path = tmp_path / "f.pt"
    torch.save(payload, path)
    compute = Counting()
    out = cached(path, "k", ROWS, compute)
    assert compute.calls == 1 and torch.equal(out["train"], _features()["train"])
    assert torch.load(path, weights_only=True)["format"] == FORMAT


def test_store_is_built_once_when_trials_ask_at_once(tmp_path: Path) -> None:
    compute = Counting(delay_s=0.3)
    path = tmp_path / "f.pt"
    results: list[dict[str, torch.Tensor]] = []
    threads = [threading.Thread(target=lambda: results.append(cached(path, "k", ROWS, compute)))
               for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert compute.calls == 1 and len(results) == 4
    assert all(torch.equal(r["train"], results[0]["train"]) for r in results)
    assert not list(tmp_path.glob("*.tmp"))
