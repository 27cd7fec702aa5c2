"""Packed trials (issue 16): a member of a pack gives exactly what it gives alone.

`run_trial(config)` is `run_trials([config])[0]`; a member's epochs and steps must equal that
in any pack and at any position (compared to 1e-6 relative, timing columns aside; in fact
bitwise on the CPU). The batched contrastive and triplet losses are checked member by member
against pytorch-metric-learning's loss and miner and against the definition by hand.
"""

from __future__ import annotations

import pickle
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from pytorch_metric_learning import losses as pml_losses
from pytorch_metric_learning import miners as pml_miners
from pytorch_metric_learning.reducers import MeanReducer
from pytorch_metric_learning.utils import loss_and_miner_utils as lmu

from mlsweep import run_trial, run_trials
from mlsweep.catalog import TrialConfig, pack_key, resolve
from mlsweep.trainer.loop import InjectedFailure, TrialResult
from mlsweep.trainer.losses import random_triplets
from mlsweep.trainer.margin_losses import MarginLoss

TINY: dict[str, Any] = {"dataset": "synthetic", "dataset_params": {"per_class": 20, "dim": 12},
                        "batch_size": 48, "epochs": 2, "torch_device": "cpu", "hidden_sizes": [16],
                        "embedding_dim": 8}
TIMING = ["epoch_s", "samples_per_s", "eval_s"]


def same_numbers(member: TrialResult, alone: TrialResult) -> None:
    """Every epoch column (timing aside) and every step row equal, to 1e-6 relative."""
    pd.testing.assert_frame_equal(member.epochs.drop(columns=TIMING, errors="ignore"),
                                  alone.epochs.drop(columns=TIMING, errors="ignore"),
                                  check_exact=False, rtol=1e-6, atol=0)
    pd.testing.assert_frame_equal(member.steps, alone.steps, check_exact=False, rtol=1e-6, atol=0)
    assert member.summary["status"] == alone.summary["status"]


def members(n: int, **settings: Any) -> list[dict[str, Any]]:
    """n configs of one pack: seeds and margins differ within it."""
    margins = [0.2, 1.0, 0.5, 0.8, 0.3]
    return [{**TINY, **settings, "seed": 10 + i, "margin": margins[i % len(margins)]} for i in range(n)]


@pytest.mark.parametrize("miner", ["random", "all", "semihard", "hard"])
@pytest.mark.parametrize("loss", ["contrastive", "triplet"])
def test_member_equals_its_solo_trial(loss: str, miner: str) -> None:
    configs = members(3, loss=loss, miner=miner)
    packed = run_trials(configs)
    for config, result in zip(configs, packed, strict=True):
        same_numbers(result, run_trial(config))
    assert packed[0].steps["batch_loss"].tolist() != packed[1].steps["batch_loss"].tolist()


@pytest.mark.parametrize(("loss", "params"), [
    ("supcon", [{"temperature": 0.1}, {"temperature": 0.3}]),
    ("arcface", [{"scale": 64.0}, {"scale": 16.0, "margin_deg": 10.0}]),  # class weights per member
    ("ccl", [{"temperature": 0.1}, {"temperature": 0.5}]),  # class centres per member
])
def test_member_by_member_losses_equal_their_solo_trials(loss: str, params: list[dict[str, Any]]) -> None:
    configs = [{**TINY, "loss": loss, "seed": i, "loss_params": p} for i, p in enumerate(params)]
    for config, result in zip(configs, run_trials(configs), strict=True):
        same_numbers(result, run_trial(config))


def test_a_member_is_unchanged_when_its_pack_mates_change() -> None:
    """The same config at position 0 of a pack of 2, at position 3 of a pack of 5 and alone."""
    target = {**TINY, "loss": "triplet", "seed": 7, "margin": 0.4}
    alone = run_trial(target)
    first = run_trials([target, *members(1, loss="triplet")])[0]
    fourth = run_trials([*members(3, loss="triplet"), target, {**TINY, "loss": "triplet", "seed": 99}])[3]
    same_numbers(first, alone)
    same_numbers(fourth, alone)


def test_results_come_back_in_order_across_packs() -> None:
    """Configs of two packs (lr is shared within a pack) interleaved, and a lone one."""
    configs = [{**TINY, "seed": 1}, {**TINY, "seed": 2, "lr": 3e-3}, {**TINY, "seed": 3},
               {**TINY, "seed": 4, "lr": 3e-3}]
    seen: list[tuple[int, int]] = []
    results = run_trials(configs, on_epoch=lambda i, record, steps: seen.append((i, record["epoch"])))
    for config, result in zip(configs, results, strict=True):
        same_numbers(result, run_trial(config))
    assert sorted(seen) == [(i, e) for i in range(4) for e in (1, 2)]


def test_a_diverging_member_leaves_and_the_others_go_on() -> None:
    """A margin too large for float32: (m − d)² overflows on the first step of that member."""
    configs = [{**TINY, "loss": "contrastive", "epochs": 3, "seed": s, "margin": m}
               for s, m in [(0, 1.0), (1, 1e30), (2, 0.5)]]
    results = run_trials(configs)
    assert [r.summary["status"] for r in results] == ["completed", "diverged", "completed"]
    assert results[1].epochs["epoch"].tolist() == [1] and results[0].summary["epochs_run"] == 3
    for config, result in zip(configs, results, strict=True):
        same_numbers(result, run_trial(config))


def test_a_raised_exception_fails_the_whole_pack() -> None:
    seen: list[tuple[int, int]] = []
    with pytest.raises(InjectedFailure, match="fail_at_epoch=2"):
        run_trials([{**TINY, "epochs": 3, "fail_at_epoch": 2, "seed": s} for s in (0, 1)],
                   on_epoch=lambda i, record, steps: seen.append((i, record["epoch"])))
    assert seen == [(0, 1), (1, 1)]


def test_pack_key_groups_per_member_scalars_only() -> None:
    base = resolve({**TINY, "loss": "supcon"})
    key = pack_key(base)
    assert key is not None
    assert pack_key({**base, "seed": 5, "loss_params": {"temperature": 0.5}}) == key
    for change in ({"lr": 0.01}, {"batch_size": 32}, {"hidden_sizes": [8]}, {"epochs": 3}):
        assert pack_key({**base, **change}) != key, change
    triplet = resolve({**TINY, "loss": "triplet"})
    assert pack_key({**triplet, "margin": 0.1}) == pack_key(triplet)
    assert pack_key(resolve({**TINY, "loss": "triplet", "miner": "hard"})) != pack_key(triplet)
    assert pack_key(resolve({"dataset": "cifar10", "model": "resnet18"})) is None
    for partial in ({**TINY, "loss": "supcon"}, {"dataset": "cifar10", "model": "resnet18"}):
        assert pack_key(TrialConfig.from_mapping(partial)) == pack_key(resolve(partial))


def test_pack_key_is_torch_free() -> None:
    code = ("import sys; from mlsweep.catalog import pack_key, resolve; "
            "pack_key(resolve({})); print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_convnet_members_with_augmentation_equal_their_solo_trials(tmp_path: Path) -> None:
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for name in [*(f"data_batch_{i}" for i in range(1, 6)), "test_batch"]:
        batch = {b"data": rng.integers(0, 256, size=(16, 3072), dtype=np.uint8),
                 b"labels": [i % 4 for i in range(16)]}
        (folder / name).write_bytes(pickle.dumps(batch))
    config = {"dataset": "cifar10", "data_dir": str(tmp_path), "split": "official", "epochs": 1,
              "batch_size": 40, "torch_device": "cpu", "loss": "triplet", "embedding_dim": 8}
    assert resolve(config)["model"] == "convnet" and resolve(config)["augment"]
    configs = [{**config, "seed": s, "margin": m} for s, m in [(0, 0.2), (1, 0.6)]]
    for member, result in zip(configs, run_trials(configs), strict=True):
        same_numbers(result, run_trial(member))


# -- the batched losses, member by member, against pytorch-metric-learning ---------------------


def pack_batch(members: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 4, (members, 14), generator=g)
    emb = F.normalize(torch.randn(members, 14, 5, generator=g), dim=2)
    return emb, labels


def reference_triplets(miner: str, emb: torch.Tensor, labels: torch.Tensor, margin: float,
                       seed: int) -> tuple[torch.Tensor, ...]:
    if miner == "all":
        return lmu.get_all_triplets_indices(labels)
    if miner == "random":
        return random_triplets(labels, torch.Generator().manual_seed(seed))
    return pml_miners.TripletMarginMiner(margin=margin, type_of_triplets=miner)(emb, labels)


@pytest.mark.parametrize("miner", ["random", "all", "semihard", "hard"])
def test_batched_triplet_is_pml_member_by_member(miner: str) -> None:
    emb, labels = pack_batch(3)
    margins = [0.1, 0.5, 1.5]
    generators = [torch.Generator().manual_seed(s) for s in range(3)]
    out = MarginLoss("triplet", miner, margins)(emb, labels, generators)
    terms = out.terms.split(out.counts.tolist())
    for i, margin in enumerate(margins):
        triplets = reference_triplets(miner, emb[i], labels[i], margin, i)
        pml = pml_losses.TripletMarginLoss(margin=margin, reducer=MeanReducer())
        expected = pml(emb[i], labels[i], triplets) if len(triplets[0]) else torch.tensor(0.0)
        assert out.counts[i] == len(triplets[0])
        assert out.loss[i].item() == pytest.approx(expected.item(), rel=1e-6, abs=1e-7)
        d = torch.cdist(emb[i], emb[i])
        by_hand = F.relu(d[triplets[0], triplets[1]] - d[triplets[0], triplets[2]] + margin)
        assert sorted(terms[i].tolist()) == pytest.approx(sorted(by_hand.tolist()), abs=1e-6)


@pytest.mark.parametrize("miner", ["random", "all", "semihard", "hard"])
def test_batched_contrastive_is_its_definition_member_by_member(miner: str) -> None:
    """Pairs: every ordered pair (all), else the mined triplets' (a, p) and (a, n), deduplicated."""
    emb, labels = pack_batch(3, seed=1)
    margins = [0.3, 0.9, 1.4]
    out = MarginLoss("contrastive", miner, margins)(emb, labels,
                                                    [torch.Generator().manual_seed(s) for s in range(3)])
    for i, margin in enumerate(margins):
        y = labels[i].tolist()
        if miner == "all":
            pos = [(a, b) for a in range(14) for b in range(14) if a != b and y[a] == y[b]]
            neg = [(a, b) for a in range(14) for b in range(14) if y[a] != y[b]]
        else:
            mined = reference_triplets(miner, emb[i], labels[i], margin, i)
            triplets = list(zip(*(t.tolist() for t in mined), strict=True))
            pos = sorted({(a, p) for a, p, _ in triplets})
            neg = sorted({(a, n) for a, _, n in triplets})
        z = emb[i].double().numpy()
        d = np.linalg.norm(z[:, None] - z[None], axis=-1)
        expected = [d[a, b] ** 2 for a, b in pos] + [max(0.0, margin - d[a, b]) ** 2 for a, b in neg]
        assert out.counts[i] == len(expected) > 0
        assert out.loss[i].item() == pytest.approx(np.mean(expected), rel=1e-5)
