"""Every trainer setting a sweep may set: its type, default and meaning.

One table serves the sweep validator (each value is checked against its setting's type), the
grid expansion (defaults filled in, loss-dependent settings dropped) and `mlsweep train --help`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import AfterValidator, Field, StrictBool, TypeAdapter

from mlsweep.trainer import registry


def _one_of(known: Mapping[str, Any] | tuple[str, ...], what: str) -> Callable[[str], str]:
    def check(value: str) -> str:
        if value not in known:
            raise ValueError(f"{value!r} is not {what}; known: {', '.join(known)}")
        return value

    return check


def _diagnostics_known(values: list[str]) -> list[str]:
    for value in values:
        _one_of(registry.DIAGNOSTICS, "a diagnostic")(value)
    return values


PosInt = Annotated[int, Field(strict=True, gt=0)]
NonNegInt = Annotated[int, Field(strict=True, ge=0)]


@dataclass(frozen=True)
class Setting:
    """One trainer setting; `default=None` with `dataset_default` means: the data set decides."""

    name: str
    type: Any
    default: Any
    doc: str

    @property
    def adapter(self) -> TypeAdapter:
        return _adapter(self.name)


SETTINGS: dict[str, Setting] = {
    s.name: s
    for s in [
        Setting("loss", Annotated[str, AfterValidator(_one_of(registry.LOSSES, "a loss"))],
                "triplet", "metric-learning loss"),
        Setting("dataset", Annotated[str, AfterValidator(_one_of(registry.DATASETS, "a dataset"))],
                "synthetic", "data set"),
        Setting("margin", Annotated[float, Field(ge=0)], 1.0,
                "margin m of margin losses (contrastive, triplet)"),
        Setting("miner", Annotated[str, AfterValidator(_one_of(registry.MINERS, "a miner"))],
                "random", "which pairs/triplets a batch forms (pair/triplet losses)"),
        Setting("seed", NonNegInt, 0, "fixes initialisation, batch order and augmentation"),
        Setting("split_seed", NonNegInt, 0, "fixes the train/test split (same for every seed)"),
        Setting("split", Annotated[str | None,
                                   AfterValidator(lambda v: v and _one_of(registry.SPLITS,
                                                                          "a split")(v))],
                None, "stratified | class_disjoint | official (default: the data set's)"),
        Setting("test_size", Annotated[float, Field(gt=0, lt=1)], 0.25,
                "share of samples (stratified) or classes (class_disjoint) held out"),
        Setting("epochs", PosInt, 20, "training epochs"),
        Setting("batch_size", Annotated[int, Field(strict=True, ge=2)], 128, "samples per batch"),
        Setting("lr", Annotated[float, Field(gt=0)], 1.0e-3, "learning rate"),
        Setting("weight_decay", Annotated[float, Field(ge=0)], 0.0, "weight decay"),
        Setting("optimizer",
                Annotated[str, AfterValidator(_one_of(registry.OPTIMIZERS, "an optimizer"))],
                "adam", "adam | adamw | sgd"),
        Setting("model", Annotated[str | None,
                                   AfterValidator(lambda v: v and _one_of(registry.MODELS,
                                                                          "a model")(v))],
                None, "network (default: the data set's)"),
        Setting("hidden_sizes", list[PosInt], [64], "hidden layer widths of the mlp"),
        Setting("embedding_dim", PosInt, 32, "embedding size"),
        Setting("pretrained", str, "none", "none | imagenet | path to a state dict"),
        Setting("freeze_backbone", StrictBool, False, "train only the embedding head"),
        Setting("sampler",
                Annotated[str, AfterValidator(_one_of(registry.SAMPLERS, "a sampler"))],
                "random", "random | m_per_class"),
        Setting("m_per_class", Annotated[int, Field(strict=True, ge=2)], 4,
                "samples per class in a batch (m_per_class sampler)"),
        Setting("eval_every", PosInt, 10, "evaluate every N epochs (the last always)"),
        Setting("diagnostics", Annotated[list[str], AfterValidator(_diagnostics_known)],
                list(registry.DIAGNOSTICS), "reporters to run"),
        Setting("train_subset", PosInt, 5000, "train samples used for train_ metrics and kNN"),
        Setting("augment", StrictBool | None, None,
                "random crop + flip on the device (default: on for colour image sets)"),
        Setting("torch_device", str, "auto", "where to train: auto | cpu | cuda | cuda:N"),
        Setting("data_dir", str | None, None,
                "data folder (default: $MLSWEEP_DATA or ~/.cache/mlsweep/data)"),
        Setting("download", StrictBool, False, "try to download a missing data set"),
        Setting("fail_at_epoch", NonNegInt, 0,
                "testing aid: raise at this epoch (0: never), to exercise retries"),
    ]
}

# Per-name dictionaries that are merged over the registry's defaults for the trial's loss/dataset.
NESTED = {"loss_params": registry.LOSSES, "dataset_params": registry.DATASETS}

_ADAPTERS: dict[str, TypeAdapter] = {}


def _adapter(name: str) -> TypeAdapter:
    if name not in _ADAPTERS:
        _ADAPTERS[name] = TypeAdapter(SETTINGS[name].type)
    return _ADAPTERS[name]


def resolve(partial: Mapping[str, Any], overrides: Mapping[str, Mapping[str, Any]] | None = None,
            ) -> dict[str, Any]:
    """Fill defaults, apply data-set defaults, and drop what the trial's loss does not read.

    `overrides` holds `loss_params` / `dataset_params` keyed by loss / data set name.
    Values are assumed valid (the sweep validator checked them).
    """
    config = {name: partial.get(name, setting.default) for name, setting in SETTINGS.items()}
    config = json.loads(json.dumps(config))  # deep copy; also normalises tuples to lists
    # `resolve` is idempotent: a resolved config (or a partial one from `mlsweep train`) comes
    # back the same, so `run_trial` accepts either.
    dataset = registry.DATASETS[config["dataset"]]
    loss = registry.LOSSES[config["loss"]]
    config["model"] = config["model"] or dataset.default_model
    config["split"] = config["split"] or dataset.default_split
    if config["augment"] is None:
        config["augment"] = dataset.image and dataset.name not in ("mnist", "fashion_mnist")
    if config["model"] != "mlp":
        del config["hidden_sizes"]
    for name in registry.LOSS_DEPENDENT_SETTINGS:
        if name not in loss.uses:
            del config[name]
    if config["sampler"] != "m_per_class":
        del config["m_per_class"]
    overrides = overrides or {}
    for key, info in (("loss_params", loss), ("dataset_params", dataset)):
        # Registry defaults, then what a resolved config already holds, then the sweep's section.
        config[key] = {**info.params, **partial.get(key, {}),
                       **overrides.get(key, {}).get(info.name, {})}
    return config


def trial_id(config: Mapping[str, Any]) -> str:
    """Short hash of the canonical JSON of a resolved config: same config, same id, anywhere."""
    canonical = json.dumps(config, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(canonical.encode()).hexdigest()[:12]
