"""The data sets: one entry each, with its defaults and a pointer to its loader.

A loader is `load(request) -> Raw` (mlsweep.trainer.data): every sample with its original
label and, where the data set has one, its official train/test assignment. A new data set is
one loader plus one entry.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class DatasetInfo:
    """A data set: the model and split used when the sweep names none, and what it holds."""

    name: str
    doc: str
    loader: str  # "module:function", see catalog.lazy
    default_model: str
    default_split: str = "stratified"
    image: bool = False
    colour: bool = False  # RGB images: random crop + flip augmentation is on by default
    params: dict[str, Any] = field(default_factory=dict)  # `dataset_params.<name>` defaults


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

_L = "mlsweep.trainer.data:"
_F = "mlsweep.trainer.image_folders:"

DATASETS: dict[str, DatasetInfo] = {
    info.name: info
    for info in [
        DatasetInfo("synthetic", "the seed paper's Gaussian classes with label noise and outliers",
                    _L + "load_synthetic", "mlp", params=_SYNTHETIC_PARAMS),
        DatasetInfo("digits", "scikit-learn's bundled 8x8 digits (no download)", _L + "load_digits",
                    "mlp"),
        DatasetInfo("mnist", "MNIST from the data folder (IDX files)", _L + "load_mnist", "convnet",
                    image=True),
        DatasetInfo("fashion_mnist", "Fashion-MNIST from the data folder (IDX files)",
                    _L + "load_fashion_mnist", "convnet", image=True),
        DatasetInfo("cifar10", "CIFAR-10 python batches from the data folder", _L + "load_cifar10",
                    "convnet", image=True, colour=True),
        DatasetInfo("cub200", "CUB-200-2011 folder layout", _F + "load_cub200", "resnet50",
                    "class_disjoint", image=True, colour=True, params={"image_size": 224}),
        DatasetInfo("cars196", "Stanford Cars (torchvision layout)", _F + "load_cars196", "resnet50",
                    "class_disjoint", image=True, colour=True, params={"image_size": 224}),
        DatasetInfo("tiny_imagenet", "Tiny-ImageNet-200 (tiny-imagenet-200/ layout), 200 classes "
                    "at 64x64", _F + "load_tiny_imagenet", "resnet18", "official", image=True,
                    colour=True, params={"image_size": 64}),
    ]
}
