"""The catalog: every loss, data set, model, miner, reporter, metric and setting mlsweep knows.

It sits below everything that reads it (spec, trainer, diagnostics, results, analysis, report,
help screens) and imports none of them; it is free of torch, so validating a sweep or printing
help stays fast. Each kind of component is one table of entries with a lazy "module:function"
pointer to its implementation.
"""

from mlsweep.catalog.datasets import DATASETS, DatasetInfo
from mlsweep.catalog.lazy import load
from mlsweep.catalog.losses import LOSS_DEPENDENT_SETTINGS, LOSSES, LossInfo
from mlsweep.catalog.metrics import (
    BASE_METRICS,
    COMPARABLE,
    EPOCH_METRICS,
    METRICS,
    STEP_COLUMNS,
    TRIAL_METRICS,
    MetricInfo,
)
from mlsweep.catalog.miners import MINERS
from mlsweep.catalog.models import MODELS, ModelInfo
from mlsweep.catalog.packing import PER_MEMBER, pack_id, pack_key, uses_feature_cache
from mlsweep.catalog.reporters import REPORTERS, ReporterInfo
from mlsweep.catalog.settings import (
    CONDITIONAL,
    NESTED,
    OPTIMIZERS,
    SAMPLERS,
    SETTINGS,
    SPLITS,
    Setting,
    config_problems,
    identity,
    not_one_of,
    param_problems,
    parse_number,
    parse_setting,
    resolve,
    trial_id,
    validate_config,
)
from mlsweep.catalog.tables import COLUMNS, STATUSES, TABLES
from mlsweep.catalog.trial_config import TrialConfig

__all__ = [
    "BASE_METRICS",
    "COLUMNS",
    "COMPARABLE",
    "CONDITIONAL",
    "DATASETS",
    "EPOCH_METRICS",
    "LOSSES",
    "LOSS_DEPENDENT_SETTINGS",
    "METRICS",
    "MINERS",
    "MODELS",
    "NESTED",
    "OPTIMIZERS",
    "PER_MEMBER",
    "REPORTERS",
    "SAMPLERS",
    "SETTINGS",
    "SPLITS",
    "STATUSES",
    "STEP_COLUMNS",
    "TABLES",
    "TRIAL_METRICS",
    "DatasetInfo",
    "LossInfo",
    "MetricInfo",
    "ModelInfo",
    "ReporterInfo",
    "Setting",
    "TrialConfig",
    "config_problems",
    "identity",
    "load",
    "not_one_of",
    "pack_id",
    "pack_key",
    "param_problems",
    "parse_number",
    "parse_setting",
    "resolve",
    "trial_id",
    "uses_feature_cache",
    "validate_config",
]
