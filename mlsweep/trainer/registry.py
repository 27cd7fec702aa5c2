"""Names and metadata of every loss, data set, model and miner the trainer knows.

Kept free of torch so that validating a sweep file (`mlsweep plan`) stays fast; the builders in
data.py, models.py and losses.py are keyed by these same names (a test checks they agree).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class LossInfo:
    """A loss: which per-trial settings it reads, and its own parameters with defaults."""

    name: str
    doc: str
    uses: frozenset[str] = frozenset()  # subset of LOSS_DEPENDENT_SETTINGS
    params: dict[str, Any] = field(default_factory=dict)  # `loss_params.<name>` defaults
    has_parameters: bool = False  # proxies / class centres optimised with the model


@dataclass(frozen=True)
class DatasetInfo:
    """A data set: the model and split used when the sweep names none."""

    name: str
    doc: str
    default_model: str
    default_split: str = "stratified"
    image: bool = False
    params: dict[str, Any] = field(default_factory=dict)  # `dataset_params.<name>` defaults


# Settings that only some losses read; expansion drops them for the others.
LOSS_DEPENDENT_SETTINGS = ("margin", "miner")

LOSSES: dict[str, LossInfo] = {
    info.name: info
    for info in [
        LossInfo("contrastive", "Hadsell et al.: y*d^2 + (1-y)*max(0, m-d)^2 per pair",
                 frozenset({"margin", "miner"})),
        LossInfo("triplet", "max(0, d_ap - d_an + m) per triplet", frozenset({"margin", "miner"})),
        LossInfo("npair", "N-pair loss (Sohn 2016)"),
        LossInfo("infonce", "InfoNCE / NT-Xent over in-batch positives", params={"temperature": 0.1}),
        LossInfo("supcon", "supervised contrastive loss", params={"temperature": 0.1}),
        LossInfo("arcface", "additive angular margin classifier",
                 params={"margin_deg": 28.6, "scale": 64.0}, has_parameters=True),
        LossInfo("ccl", "center contrastive loss: samples against a learnt class-centre bank",
                 params={"temperature": 0.1}, has_parameters=True),
        LossInfo("multi_similarity", "multi-similarity loss", frozenset({"miner"}),
                 params={"alpha": 2.0, "beta": 50.0, "base": 0.5}),
        LossInfo("proxy_anchor", "proxy-anchor loss",
                 params={"margin": 0.1, "alpha": 32.0}, has_parameters=True),
    ]
}

_SYNTHETIC_PARAMS: dict[str, Any] = {
    "n_classes": 10,
    "per_class": 200,
    "dim": 128,
    "centre_scale": 5.0,
    "spread": 1.4,
    "label_noise": 0.10,
    "outlier_share": 0.05,
    "outlier_scale": 15.0,
    "drop_outliers": False,
}

DATASETS: dict[str, DatasetInfo] = {
    info.name: info
    for info in [
        DatasetInfo("synthetic", "the seed paper's Gaussian classes with label noise and outliers",
                    "mlp", params=_SYNTHETIC_PARAMS),
        DatasetInfo("digits", "scikit-learn's bundled 8x8 digits (no download)", "mlp"),
        DatasetInfo("mnist", "MNIST from the data folder (IDX files)", "convnet", image=True),
        DatasetInfo("fashion_mnist", "Fashion-MNIST from the data folder (IDX files)", "convnet",
                    image=True),
        DatasetInfo("cifar10", "CIFAR-10 python batches from the data folder", "convnet",
                    image=True),
        DatasetInfo("cub200", "CUB-200-2011 folder layout", "resnet50", "class_disjoint",
                    image=True, params={"image_size": 224}),
        DatasetInfo("cars196", "Stanford Cars (torchvision layout)", "resnet50", "class_disjoint",
                    image=True, params={"image_size": 224}),
    ]
}

MODELS: dict[str, str] = {
    "mlp": "fully connected layers (`hidden_sizes`) then the embedding head",
    "convnet": "the paper's conv32-pool-conv64-pool-fc128 then the embedding head",
    "resnet18": "torchvision ResNet-18, stem adapted to small inputs",
    "resnet50": "torchvision ResNet-50, stem adapted to small inputs",
    "vit_b_32": "torchvision ViT-B/32 (inputs resized to 224)",
}

MINERS: dict[str, str] = {
    "all": "every in-batch pair / triplet",
    "random": "one random positive and one random negative per anchor (the seed paper's protocol)",
    "semihard": "semi-hard triplets (d_ap < d_an < d_ap + m)",
    "hard": "hard triplets (d_an < d_ap + m, violating the margin)",
}

SPLITS = ("stratified", "class_disjoint", "official")
OPTIMIZERS = ("adam", "adamw", "sgd")
SAMPLERS = ("random", "m_per_class")

_SPREAD = ("intra_var_mean", "intra_var_std", "centroid_dist_mean", "centroid_dist_std",
           "between_var", "var_ratio")

# The epoch columns each reporter contributes (DESIGN.md section 5), and those every trial has.
DIAGNOSTICS: dict[str, tuple[str, ...]] = {
    "variance": _SPREAD + tuple(f"train_{name}" for name in _SPREAD),
    "greediness": ("active_ratio", "grad_norm", "emb_grad_norm", "n_terms"),
    "retrieval": ("recall_at_1", "recall_at_5", "recall_at_10", "precision_at_1", "r_precision",
                  "map_at_r", "knn_acc"),
}
BASE_METRICS = ("train_loss", "epoch_s", "samples_per_s")
EPOCH_METRICS = BASE_METRICS + tuple(c for cols in DIAGNOSTICS.values() for c in cols)
