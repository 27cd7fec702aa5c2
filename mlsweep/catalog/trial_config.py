"""TrialConfig: one trial's resolved settings as typed, read-only attributes, what the trainer reads.

The driver and the files keep plain mappings (`resolve`'s dicts: manifest.json, Parquet columns,
trial ids); the trainer receives a TrialConfig made from one (`TrialConfig.from_mapping`, which
checks and resolves it as `validate_config` does), so each module reads `config.batch_size`
where a misspelt string key would only have failed inside the trial.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from typing import Any

from mlsweep.catalog.settings import CONDITIONAL, validate_config

# A loss's or data set's own parameters, each of its default's type.
Params = dict[str, int | float | bool]


@dataclass(frozen=True)
class TrialConfig:
    """Every setting of the catalog (`SETTINGS`, in its order), then `loss_params` and
    `dataset_params` merged over the trial's loss's and data set's defaults.

    The fields are written out, not generated from SETTINGS: so that they read as one list of
    what a trial is, and so that type checkers and editors see them (a generated class has no
    attributes until it runs). They carry no defaults: defaults live once, in SETTINGS, and
    `from_mapping` gives every field. tests/test_catalog.py asserts that the fields are
    SETTINGS' names, in order, with the types of their result columns.

    A setting its trial does not read (`CONDITIONAL`: `hidden_sizes` beside a non-mlp model,
    `margin` and `miner` beside a loss that takes none, `m_per_class` beside the random sampler)
    is None. Lists are tuples; the parameter dicts are the instance's own copies.
    """

    loss: str
    dataset: str
    margin: float | None
    miner: str | None
    seed: int
    split_seed: int
    split: str
    test_size: float
    epochs: int
    batch_size: int
    lr: float
    weight_decay: float
    optimizer: str
    model: str
    hidden_sizes: tuple[int, ...] | None
    embedding_dim: int
    pretrained: str
    freeze_backbone: bool
    feature_cache: bool
    sampler: str
    m_per_class: int | None
    eval_every: int
    diagnostics: tuple[str, ...]
    train_subset: int
    augment: bool
    torch_device: str
    data_dir: str | None
    download: bool
    checkpoint_every: int
    checkpoint_minutes: float
    fail_at_epoch: int
    loss_params: Params
    dataset_params: Params

    @classmethod
    def from_mapping(cls, settings: Mapping[str, Any],
                     where: Callable[[str], str] = lambda key: key) -> TrialConfig:
        """A trial's settings, partial or resolved, checked and resolved (`validate_config`:
        UserError with one line per problem, each key named as `where(key)` gives it)."""
        resolved = validate_config(settings, where)
        # Unread settings are absent from `resolved`; a key without a field raises TypeError.
        return cls(**{**dict.fromkeys(CONDITIONAL), **{
            name: tuple(value) if isinstance(value, list) else value for name, value in resolved.items()}})

    def as_dict(self) -> dict[str, Any]:
        """The resolved mapping this config was made from (what `resolve` gives, in its order):
        for Parquet, JSON and `trial_id`."""
        out: dict[str, Any] = {}
        for field in fields(self):
            value = getattr(self, field.name)
            if value is None and field.name in CONDITIONAL:
                continue
            out[field.name] = (list(value) if isinstance(value, tuple)
                               else dict(value) if isinstance(value, dict) else value)
        return out
