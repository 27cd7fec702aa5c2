"""Which trials may be trained together as one pack (issue 16); torch-free, for the driver.

A pack is trained as one stacked model with a leading member dimension. Its members may differ
only in per-member scalars; everything else (loss, miner, data, model shape, batch size,
epochs, optimizer with its lr and weight decay, sampler, evaluation, device) is shared.
lr and weight_decay are shared because the fused optimisers take one scalar lr per group.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import Any

from mlsweep.catalog.trial_config import TrialConfig

# Settings a member may hold on its own. loss_params are the loss's scalar parameters
# (temperature, scale, ...): each member builds its own loss with its own values.
PER_MEMBER = ("seed", "margin", "loss_params")
# Networks built as stacked weights; the others (torchvision backbones) run as packs of one.
PACKABLE_MODELS = ("mlp", "convnet")


def _mapping(config: Mapping[str, Any] | TrialConfig) -> Mapping[str, Any]:
    """The driver holds resolved dicts, the trainer TrialConfigs: both are asked the same."""
    return config.as_dict() if isinstance(config, TrialConfig) else config


def uses_feature_cache(config: Mapping[str, Any] | TrialConfig) -> bool:
    """Whether a resolved trial config trains its head on cached backbone features."""
    config = _mapping(config)
    return bool(config["freeze_backbone"] and config.get("feature_cache", True) and not config["augment"])


def pack_key(config: Mapping[str, Any] | TrialConfig) -> tuple[str, ...] | None:
    """Equal keys: the two resolved configs can share a pack. None: the config runs alone
    (torchvision backbones, and heads trained on cached features, which do not pack yet)."""
    config = _mapping(config)
    if config.get("model") not in PACKABLE_MODELS or uses_feature_cache(config):
        return None
    shared = {name: value for name, value in config.items() if name not in PER_MEMBER}
    return ("pack", json.dumps(shared, sort_keys=True, separators=(",", ":")))


def pack_id(trial_ids: Sequence[str]) -> str:
    """A pack's name (trials table `pack_id`, checkpoint folder): a pack of one is named by its
    trial id, a larger one by a hash of its members' ids (in any order)."""
    if len(trial_ids) == 1:
        return trial_ids[0]
    return "pack-" + hashlib.sha256(",".join(sorted(trial_ids)).encode()).hexdigest()[:12]
