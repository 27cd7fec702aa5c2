"""Samples/s of the trainer's device-resident batching vs a torch DataLoader loop.

Both train the same model, loss module and optimizer (built by the trainer from the same
config and seed) over the same training samples. The DataLoader loop is the usual one: a
TensorDataset for vectors, a Dataset with per-sample torchvision transforms (random crop and
flip when the trainer augments, then scaling and normalisation) for images, shuffled, one
process, each batch moved to the trainer's device. One warm-up epoch each, then the two take
turns epoch by epoch; the figure is the median over the measured epochs.
"""

from __future__ import annotations

import pickle
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, TensorDataset
from torchvision.transforms import v2

from bench.common import Section, Target, log, median
from mlsweep.catalog import TrialConfig
from mlsweep.trainer.data import DataSplit, load_dataset
from mlsweep.trainer.loop import _Trainer

CIFAR_TEST = 1000  # test_batch size; it is not trained on
Rates = tuple[float, float]  # samples per wall second, per CPU second


def write_cifar(data_dir: Path, n_train: int, seed: int = 0) -> None:
    """Random uint8 images in the official `cifar-10-batches-py` layout: 5 train pickles of
    n_train / 5 images each and a test batch."""
    folder = data_dir / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    sizes = {f"data_batch_{i}": n_train // 5 for i in range(1, 6)} | {"test_batch": CIFAR_TEST}
    for name, size in sizes.items():
        batch = {b"data": rng.integers(0, 256, (size, 3 * 32 * 32), dtype=np.uint8),
                 b"labels": rng.integers(0, 10, size).tolist()}
        with open(folder / name, "wb") as f:
            pickle.dump(batch, f)


class ImageDataset(Dataset):
    """uint8 images [N, C, H, W] with a per-sample transform, as torchvision data sets do."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, transform: Callable[[torch.Tensor], torch.Tensor]):
        self.x, self.y, self.transform = x, y, transform

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.transform(self.x[i]), self.y[i]


def dataloader_dataset(data: DataSplit, augment: bool) -> Dataset:
    if not data.image:
        return TensorDataset(data.x_train, data.y_train)
    crop_flip = [v2.RandomCrop(data.x_train.shape[-1], padding=4), v2.RandomHorizontalFlip()]
    scale = [v2.ToDtype(torch.float32, scale=True), v2.Normalize(data.mean, data.std)]
    return ImageDataset(data.x_train, data.y_train, v2.Compose((crop_flip if augment else []) + scale))


def trainer_epoch(trainer: _Trainer) -> Callable[[int], int]:
    def epoch(i: int) -> int:
        ((record, _),) = trainer.train_epoch(i)
        return round(record["samples_per_s"] * record["epoch_s"])

    return epoch


def dataloader_epoch(config: TrialConfig) -> Callable[[int], int]:
    """A DataLoader training loop with the trainer's model, loss, optimizer and precision."""
    trainer = _Trainer([config])  # same seed: same initial weights (a pack of one)
    model, loss_fn, optimizer, device = trainer.model, trainer.loss_fn, trainer.optimizer, trainer.device
    loader = DataLoader(dataloader_dataset(load_dataset(config), config.augment),
                        batch_size=config.batch_size, shuffle=True,
                        generator=torch.Generator().manual_seed(config.seed))

    def epoch(i: int) -> int:
        model.train()
        samples, losses = 0, []
        for x, y in loader:
            if len(y) < 2:
                continue
            x, y = x.to(device), y.to(device)
            with trainer.autocast():  # bf16 on CUDA, as the trainer
                emb = model(x.unsqueeze(0))
            out = loss_fn(emb.float(), y.unsqueeze(0), trainer.generators)
            optimizer.zero_grad(set_to_none=True)
            out.loss.sum().backward()
            optimizer.step()
            losses.append(out.loss.detach())
            samples += len(y)
        torch.stack(losses).mean().item()
        return samples

    return epoch


def timed_epoch(epoch: Callable[[int], int], i: int) -> Rates:
    """Samples per wall second and per CPU second of this process, of one epoch."""
    wall, cpu = time.perf_counter(), time.process_time()
    samples = epoch(i)
    return samples / (time.perf_counter() - wall), samples / (time.process_time() - cpu)


def measure(config: TrialConfig, epochs: int) -> tuple[list[Rates], list[Rates]]:
    """(wall, CPU) samples/s per epoch of both loops, taking turns after a warm-up epoch each."""
    ours, theirs = trainer_epoch(_Trainer([config])), dataloader_epoch(config)
    ours(1)
    theirs(1)
    fast, slow = [], []
    for i in range(2, epochs + 2):
        fast.append(timed_epoch(ours, i))
        slow.append(timed_epoch(theirs, i))
    return fast, slow


def run(tmp: Path, quick: bool, repeat: int) -> Section:
    torch.set_num_threads(1)  # as a Tune worker with cpu: 1 runs
    n_cifar = 2000 if quick else 10000
    write_cifar(tmp, n_cifar)
    base = {"loss": "triplet", "margin": 0.5, "batch_size": 128, "diagnostics": [], "seed": 0}
    cases = {
        "digits (mlp)": TrialConfig.from_mapping({**base, "dataset": "digits"}),
        "synthetic (mlp)": TrialConfig.from_mapping({**base, "dataset": "synthetic"}),
        f"cifar10-shaped random, {n_cifar} train (convnet, augment)":
            TrialConfig.from_mapping({**base, "dataset": "cifar10", "split": "official",
                                      "data_dir": str(tmp)}),
    }
    section = Section(f"Trainer throughput: samples/s, median of {repeat} epochs after a warm-up",
                      ["data set", "trainer samples/s", "DataLoader samples/s", "speed-up",
                       "speed-up in CPU time"])
    for name, config in cases.items():
        fast, slow = measure(config, repeat)
        log(f"throughput, {name}: trainer {fast}, DataLoader {slow} samples/s (wall, CPU)")
        speedup, cpu_speedup = (median([f[k] / s[k] for f, s in zip(fast, slow, strict=True)])
                                for k in (0, 1))
        section.rows.append([name, f"{median([f[0] for f in fast]):,.0f}",
                             f"{median([s[0] for s in slow]):,.0f}", f"{speedup:.2f}x",
                             f"{cpu_speedup:.2f}x"])
        section.targets.append(Target(f"speed-up on {name.split(' ')[0]}", speedup, 2.0, at_most=False))
    section.notes.append(f"torch threads: {torch.get_num_threads()}, device: "
                         f"{_Trainer([cases['digits (mlp)']]).device}, batch size 128, triplet loss")
    return section
