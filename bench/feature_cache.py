"""Wall time of a frozen-backbone study with and without the feature cache, side by side.

The study: losses x seeds trials of a frozen ResNet-18 whose weights come from a file (as
ImageNet weights do: the same for every seed, so one feature file serves the whole study) on
Tiny-ImageNet-shaped random 64x64 JPEGs, run one after another in this process with
`run_trial` on one thread (as a Tune worker with cpu: 1 runs). Each cached study starts from
an empty cache, so its time includes building it. The two variants take turns, `repeat`
times; the figure is the median.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from bench.common import Section, log, median
from mlsweep.catalog import resolve
from mlsweep.trainer.features import FOLDER
from mlsweep.trainer.loop import run_trial
from mlsweep.trainer.torchvision_models import resnet


def write_tiny_imagenet(root: Path, classes: int, train_per_class: int, val_per_class: int,
                        seed: int = 0) -> None:
    """Random 64x64 JPEGs in the official tiny-imagenet-200/ layout."""
    folder = root / "tiny-imagenet-200"
    rng = np.random.default_rng(seed)
    wnids = [f"n{i:08d}" for i in range(classes)]
    (folder / "val" / "images").mkdir(parents=True)
    (folder / "wnids.txt").write_text("".join(f"{w}\n" for w in wnids))
    annotations = []
    for wnid in wnids:
        (folder / "train" / wnid / "images").mkdir(parents=True)
        for i in range(train_per_class):
            _jpeg(rng, folder / "train" / wnid / "images" / f"{wnid}_{i}.JPEG")
        for _ in range(val_per_class):
            name = f"val_{len(annotations)}.JPEG"
            _jpeg(rng, folder / "val" / "images" / name)
            annotations.append(f"{name}\t{wnid}\t0\t0\t63\t63\n")
    (folder / "val" / "val_annotations.txt").write_text("".join(annotations))


def _jpeg(rng: np.random.Generator, path: Path) -> None:
    Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(path)


def study(configs: list[dict[str, Any]], cached: bool, data_dir: Path) -> tuple[float, list[float]]:
    """Wall seconds of the whole study, and each trial's final MAP@R."""
    shutil.rmtree(data_dir / FOLDER, ignore_errors=True)
    start = time.perf_counter()
    finals = [run_trial({**config, "feature_cache": cached}).epochs["map_at_r"].iloc[-1]
              for config in configs]
    return time.perf_counter() - start, finals


def run(tmp: Path, quick: bool, repeat: int) -> Section:
    torch.set_num_threads(1)
    classes, per_class = (10, 10) if quick else (10, 20)
    write_tiny_imagenet(tmp, classes, per_class, 5)
    weights = tmp / "resnet18.pth"
    backbone, _ = resnet("resnet18", (3, 64, 64), "none")
    torch.save(backbone.net.state_dict(), weights)
    losses, seeds = ["contrastive", "triplet"], [0] if quick else [0, 1]
    base = {"dataset": "tiny_imagenet", "data_dir": str(tmp), "model": "resnet18",
            "pretrained": str(weights), "freeze_backbone": True, "augment": False,
            "epochs": 3 if quick else 5, "batch_size": 64, "eval_every": 5, "torch_device": "cpu"}
    configs = [resolve({**base, "loss": loss, "seed": seed}) for loss in losses for seed in seeds]
    run_trial({**configs[0], "epochs": 1, "feature_cache": False})  # decode the JPEGs once, warm up
    times: dict[bool, list[float]] = {False: [], True: []}
    finals: dict[bool, list[float]] = {}
    for r in range(repeat):
        for cached in (False, True):
            wall, finals[cached] = study(configs, cached, tmp)
            times[cached].append(wall)
            log(f"feature cache, repeat {r + 1}: {'cached' if cached else 'uncached'} {wall:.1f} s")
    n = len(configs)
    section = Section(f"Feature cache: a frozen-backbone study of {n} trials, median of {repeat}",
                      ["variant", "wall s (median)", "all runs s", "per trial s", "uncached / this"])
    uncached = median(times[False])
    for cached, name in ((False, "feature_cache: false"), (True, "feature_cache: true (builds it)")):
        wall = median(times[cached])
        section.rows.append([name, f"{wall:.1f}", ", ".join(f"{t:.1f}" for t in times[cached]),
                             f"{wall / n:.2f}", f"{uncached / wall:.1f}x"])
    same = np.allclose(finals[True], finals[False], rtol=1e-6, atol=0)
    section.notes.append(
        f"{n} trials ({', '.join(losses)} x seeds {seeds}), {base['epochs']} epochs each, frozen "
        f"ResNet-18 (weights from a file) on {classes * per_class} train / {classes * 5} val random "
        f"64x64 images, batch 64, one thread; final MAP@R equal cached vs uncached: {same}")
    return section
