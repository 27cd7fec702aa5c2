"""Every metric the trainer records: where it lives, what it means, and how to compare it.

`comparable` says whether two losses can be compared on it (bookkeeping such as timings and
term counts cannot; nor can `train_loss`, a different quantity for each loss); `better` says
which direction is better, or None where a metric describes the embedding or the optimisation
without a better side (variance, greediness). Analysis, report and help all read this table.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Better = Literal["higher", "lower"] | None


@dataclass(frozen=True)
class MetricInfo:
    name: str
    doc: str
    reporter: str | None  # the diagnostic that records it; None: every trial has it
    when: Literal["step", "eval", "epoch"]  # per step (epoch mean), per evaluation, per epoch
    comparable: bool = True
    better: Better = None


_SPREAD = [
    ("intra_var_mean", "mean over classes of the mean squared distance to the class centroid", None),
    ("intra_var_std", "std over classes of that per-class intra-class variance", None),
    ("centroid_dist_mean", "mean Euclidean distance between class centroids (pairs a<b)", None),
    ("centroid_dist_std", "sample std of the distances between class centroids", None),
    ("between_var", "sum_c n_c |mu_c - mu|^2 / N", None),
    ("var_ratio", "mean squared distance to the own centroid over between_var", "lower"),
]

METRICS: dict[str, MetricInfo] = {
    m.name: m
    for m in [
        MetricInfo("train_loss", "epoch mean of the batch loss (a different quantity per loss)", None,
                   "epoch", comparable=False),
        MetricInfo("epoch_s", "wall time of the epoch's training part, seconds", None, "epoch",
                   comparable=False),
        MetricInfo("samples_per_s", "training samples per second of the epoch", None, "epoch",
                   comparable=False),
        MetricInfo("eval_s", "wall time of the evaluation, seconds", None, "eval", comparable=False),
        *(MetricInfo(name, f"test split: {doc}", "variance", "eval", better=better)
          for name, doc, better in _SPREAD),
        *(MetricInfo(f"train_{name}", f"fixed train subset: {doc}", "variance", "eval", better=better)
          for name, doc, better in _SPREAD),
        MetricInfo("active_ratio", "share of loss terms above 1e-6, mean over steps", "greediness",
                   "step"),
        MetricInfo("grad_norm", "global L2 norm of the parameter gradients, mean over steps",
                   "greediness", "step"),
        MetricInfo("emb_grad_norm", "batch mean of |dL/dz_i|, mean over steps", "greediness", "step"),
        MetricInfo("n_terms", "loss terms a step forms, mean over steps", "greediness", "step",
                   comparable=False),
        *(MetricInfo(f"recall_at_{k}", f"share of test queries with a same-class item in the top {k}",
                     "retrieval", "eval", better="higher") for k in (1, 5, 10)),
        MetricInfo("precision_at_1", "Musgrave et al. 2020 precision at 1", "retrieval", "eval",
                   better="higher"),
        MetricInfo("r_precision", "Musgrave et al. 2020 R-precision", "retrieval", "eval",
                   better="higher"),
        MetricInfo("map_at_r", "Musgrave et al. 2020 MAP@R", "retrieval", "eval", better="higher"),
        MetricInfo("knn_acc", "5-NN classifier fitted on train embeddings, scored on test",
                   "retrieval", "eval", better="higher"),
    ]
}

# Columns every epoch row has; the rest come from the trial's reporters.
BASE_METRICS = tuple(name for name, m in METRICS.items() if m.reporter is None and m.when == "epoch")
EPOCH_METRICS = tuple(METRICS)
COMPARABLE = tuple(name for name, m in METRICS.items() if m.comparable)
# The per-step values of the steps table, beside `epoch` and `step`.
STEP_COLUMNS = ("batch_loss", *(name for name, m in METRICS.items() if m.when == "step"))
# Per-trial values of the trials table beside the `final_<metric>` of every epoch metric.
TRIAL_METRICS = {"loss_half_epoch": "int64", "loss_tenth_epoch": "int64", "loss_decay_rate": "float64"}
