"""Data sets of the trainer, loaded whole into tensors and split by `split_seed` alone.

Every loader returns all samples of a data set with their original labels (plus the official
train/test assignment where the data set has one); one function then splits and relabels, so
the split rules are the same for every data set. The split depends only on `split_seed`, never
on `seed`: every loss and seed of a sweep sees the same test set, and comparisons pair by seed.

Files are read from the data folder in the layouts torchvision and the data sets' own archives
use; nothing is downloaded unless `download: true` asks for it and the data set allows it.
"""

from __future__ import annotations

import dataclasses
import gzip
import importlib.util
import os
import pickle
import struct
import zlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mlsweep.catalog import DATASETS, TrialConfig, load
from mlsweep.errors import UserError
from mlsweep.trainer.stratified_split import stratified_split


class DataError(UserError):
    """A data set that is missing, broken or cannot be split as asked; the message is one line."""


@dataclasses.dataclass
class DataSplit:
    """Train and test tensors of one data set.

    Vectors are float32 [N, D]; images uint8 [N, C, H, W] (normalised per batch on the device,
    see sampling.prepare_batch). Labels are int64, contiguous: train classes are
    0..num_classes-1, classes seen only in the test set (class-disjoint splits) follow.
    """

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    num_classes: int
    image: bool
    mean: tuple[float, ...] = ()  # per channel, images only
    std: tuple[float, ...] = ()

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Shape of one sample, what the model is built for."""
        return tuple(self.x_train.shape[1:])

    def to(self, device: torch.device | str) -> DataSplit:
        """A copy with every tensor on `device`: small data sets live there for the whole trial."""
        return dataclasses.replace(
            self, x_train=self.x_train.to(device), y_train=self.y_train.to(device),
            x_test=self.x_test.to(device), y_test=self.y_test.to(device))


@dataclasses.dataclass(frozen=True)
class _Request:
    """What a loader needs from the trial's config."""

    name: str
    root: Path
    params: dict[str, Any]
    download: bool
    split_seed: int


@dataclasses.dataclass
class _Raw:
    """All samples of a data set, before splitting."""

    x: np.ndarray
    y: np.ndarray
    official_test: np.ndarray | None = None  # bool per sample, where the data set has a split
    fixed_class_split: bool = False  # class_disjoint: first half of the classes train (CUB, Cars)
    mean_std: tuple[tuple[float, ...], tuple[float, ...]] | None = None  # else: from train


def load_dataset(config: TrialConfig) -> DataSplit:
    """Load and split the data set a trial config names (its dataset, split, test_size,
    split_seed, data_dir, download and dataset_params, the data set's defaults already filled
    in by `resolve`)."""
    info = DATASETS[config.dataset]
    request = _Request(name=config.dataset, root=data_root(config.data_dir), params=config.dataset_params,
                       download=config.download, split_seed=config.split_seed)
    raw = load(info.loader)(request)
    train, test = _split_indices(raw, config.dataset, config.split, config.test_size, config.split_seed)
    return _build(raw, train, test, info.image)


def data_root(data_dir: str | None) -> Path:
    """The data folder: `data_dir`, else $MLSWEEP_DATA, else ~/.cache/mlsweep/data."""
    return Path(data_dir or os.environ.get("MLSWEEP_DATA") or "~/.cache/mlsweep/data").expanduser()


def _split_indices(raw: _Raw, name: str, split: str, test_size: float, split_seed: int,
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Sorted train and test indices into `raw`.

    class_disjoint takes the first classes in sorted order: a fixed split, as the retrieval
    protocol has it (CUB 1-100 / 101-200, Cars 1-98 / 99-196, i.e. the first half; also with a
    reduced copy of fewer classes), and the first round((1 - test_size) * K) classes elsewhere.
    """
    if split == "official":
        if raw.official_test is None:
            raise DataError(f"{name}: has no official train/test split; "
                            "use split: stratified or class_disjoint")
        return np.flatnonzero(~raw.official_test), np.flatnonzero(raw.official_test)
    if split == "stratified":
        try:
            return stratified_split(raw.y, test_size, split_seed)
        except ValueError as err:
            raise DataError(f"{name}: {err}; use split: class_disjoint") from None
    classes = np.unique(raw.y)
    n_train = len(classes) // 2 if raw.fixed_class_split else round((1 - test_size) * len(classes))
    n_train = min(max(n_train, 1), len(classes) - 1)
    is_train = np.isin(raw.y, classes[:n_train])
    return np.flatnonzero(is_train), np.flatnonzero(~is_train)


def _build(raw: _Raw, train: np.ndarray, test: np.ndarray, image: bool) -> DataSplit:
    """Index, relabel (train classes first) and wrap in tensors."""
    train_classes = np.unique(raw.y[train])
    order = np.concatenate([train_classes, np.setdiff1d(np.unique(raw.y[test]), train_classes)])
    sorter = np.argsort(order)
    labels = sorter[np.searchsorted(order, raw.y, sorter=sorter)].astype(np.int64)
    x_train, x_test = raw.x[train], raw.x[test]  # fancy indexing copies (also out of a memmap)
    mean, std = (raw.mean_std or _channel_stats(x_train)) if image else ((), ())
    return DataSplit(
        x_train=torch.from_numpy(x_train), y_train=torch.from_numpy(labels[train]),
        x_test=torch.from_numpy(x_test), y_test=torch.from_numpy(labels[test]),
        num_classes=len(train_classes), image=image, mean=mean, std=std)


def _channel_stats(x: np.ndarray) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std of uint8 images in [0, 1], in chunks to bound memory."""
    total = np.zeros(x.shape[1])
    squares = np.zeros(x.shape[1])
    step = max(1, 2**22 // x[0].size)
    for start in range(0, len(x), step):
        chunk = x[start:start + step].astype(np.float64) / 255
        total += chunk.sum(axis=(0, 2, 3))
        squares += np.square(chunk).sum(axis=(0, 2, 3))
    count = len(x) * x.shape[2] * x.shape[3]
    mean = total / count
    std = np.sqrt(np.maximum(squares / count - mean**2, 1e-12))
    return tuple(mean.tolist()), tuple(std.tolist())


def _missing(request: _Request, folders: Sequence[Path], expected: Sequence[str],
             can_download: bool) -> DataError:
    hint = "set data_dir or download: true" if can_download else (
        f"set data_dir (no download exists for {request.name})")
    where = " or ".join(str(folder) for folder in folders)
    return DataError(f"{request.name}: not found in {where}; expected {', '.join(expected)}; "
                     f"{hint}")


def _download(request: _Request, dataset_class: str, folder: Path) -> None:
    """Fetch a torchvision data set into the data folder; offline, a one-line DataError."""
    import torchvision.datasets

    request.root.mkdir(parents=True, exist_ok=True)
    try:
        getattr(torchvision.datasets, dataset_class)(str(request.root), download=True)
    except (RuntimeError, OSError) as error:
        reason = " ".join(str(error).split())
        raise DataError(f"{request.name}: download into {folder} failed ({reason}); "
                        "place the files there or set data_dir") from error


# -- vectors ---------------------------------------------------------------------------------


def make_synthetic(n_classes: int = 10, per_class: int = 200, dim: int = 128,
                   centre_scale: float = 5.0, spread: float = 1.4, label_noise: float = 0.10,
                   outlier_share: float = 0.05, outlier_scale: float = 15.0,
                   drop_outliers: bool = False, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The seed paper's synthetic data: Gaussian classes with label noise and outliers.

    Class centres ~ N(0, centre_scale² I); class c's samples are centre_c + spread * A_c z with
    A_c ~ N(0, 1) of shape dim x dim and z ~ N(0, I), i.e. a full covariance spread² A_c A_cᵀ.
    Then round(label_noise * n) labels move to a uniformly drawn *other* class, and
    round(outlier_share * n) points ~ N(0, outlier_scale² I) are appended with label -1 (a
    class of their own for the losses), unless drop_outliers. The numbers stay raw, not
    standardised, as in the paper.

    The trainer seeds this with `split_seed`: the data are part of the split, the same for
    every loss and seed, as in the paper's protocol of comparing losses on one data set. Each
    stage draws from its own stream, so changing e.g. label_noise leaves the points unchanged.

    Returns X float32 [n (+ outliers), dim] and y int64.
    """
    points_rng, noise_rng, outlier_rng = (
        np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(3))
    centres = points_rng.normal(0.0, centre_scale, size=(n_classes, dim))
    x = np.empty((n_classes, per_class, dim))
    for c in range(n_classes):
        mixing = points_rng.normal(size=(dim, dim))
        x[c] = centres[c] + spread * points_rng.normal(size=(per_class, dim)) @ mixing.T
    x = x.reshape(n_classes * per_class, dim)
    y = np.repeat(np.arange(n_classes, dtype=np.int64), per_class)
    n = len(y)
    flipped = noise_rng.choice(n, size=round(label_noise * n), replace=False)
    y[flipped] = (y[flipped] + noise_rng.integers(1, n_classes, size=len(flipped))) % n_classes
    if not drop_outliers:
        outliers = outlier_rng.normal(0.0, outlier_scale, size=(round(outlier_share * n), dim))
        x = np.concatenate([x, outliers])
        y = np.concatenate([y, np.full(len(outliers), -1, dtype=np.int64)])
    return x.astype(np.float32), y


def load_synthetic(request: _Request) -> _Raw:
    x, y = make_synthetic(**request.params, seed=request.split_seed)
    return _Raw(x, y)


def load_digits(request: _Request) -> _Raw:
    """scikit-learn's digits, read from the file it ships as its `load_digits` reads it, without
    importing scikit-learn (1.5 s of a trial's start)."""
    package = importlib.util.find_spec("sklearn")
    if package is None or not package.submodule_search_locations:
        raise DataError("digits: the data ships with scikit-learn, which is not installed "
                        "(pip install scikit-learn)")
    path = Path(package.submodule_search_locations[0], "datasets", "data", "digits.csv.gz")
    with gzip.open(path, mode="rt", encoding="utf-8") as text:
        data = np.loadtxt(text, delimiter=",")
    return _Raw((data[:, :-1] / 16.0).astype(np.float32), data[:, -1].astype(np.int64))


# -- MNIST-style IDX files -------------------------------------------------------------------

_IDX_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
              "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


def _read_idx(path: Path) -> np.ndarray:
    """An IDX file of unsigned bytes (gzip or plain)."""
    data = path.read_bytes()
    if path.suffix == ".gz":
        data = gzip.decompress(data)
    zero, dtype_code, ndim = struct.unpack_from(">HBB", data)
    if zero != 0 or dtype_code != 0x08:
        raise ValueError("not an IDX file of unsigned bytes")
    shape = struct.unpack_from(f">{ndim}I", data, 4)
    return np.frombuffer(data, np.uint8, count=int(np.prod(shape)), offset=4 + 4 * ndim
                         ).reshape(shape)


def _find_idx(folders: Sequence[Path]) -> list[Path] | None:
    """The four IDX files (plain or .gz) of the first folder that holds all four."""
    for folder in folders:
        paths = [next((p for p in (folder / stem, folder / f"{stem}.gz") if p.is_file()), None)
                 for stem in _IDX_FILES]
        if all(paths):
            return paths  # type: ignore[return-value]
    return None


def _idx_loader(folder_name: str, dataset_class: str) -> Callable[[_Request], _Raw]:
    """A loader of the four IDX files, from torchvision's `<data_dir>/<folder_name>/raw` or
    from `data_dir` itself: the folder Debian's `dataset-fashion-mnist` installs
    (/usr/share/datasets/fashion-mnist) holds them directly."""

    def load(request: _Request) -> _Raw:
        folders = (request.root / folder_name / "raw", request.root)
        paths = _find_idx(folders)
        if paths is None and request.download:
            _download(request, dataset_class, folders[0])
            paths = _find_idx(folders)
        if paths is None:
            raise _missing(request, folders, [f"{stem}(.gz)" for stem in _IDX_FILES], True)
        arrays = []
        for path in paths:
            try:
                arrays.append(_read_idx(path))
            except (OSError, ValueError, EOFError, struct.error, zlib.error) as error:
                raise DataError(f"{request.name}: unreadable IDX file {path} ({error}); "
                                "replace it") from error
        for images, labels, images_path, labels_path in ((*arrays[:2], *paths[:2]),
                                                         (*arrays[2:], *paths[2:])):
            if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
                raise DataError(f"{request.name}: {images_path} holds {len(images)} images of "
                                f"shape {images.shape[1:]}, {labels_path} {len(labels)} labels; "
                                "replace the files")
        x_train, y_train, x_test, y_test = arrays
        return _Raw(np.concatenate([x_train, x_test])[:, None],
                    np.concatenate([y_train, y_test]).astype(np.int64),
                    official_test=np.arange(len(y_train) + len(y_test)) >= len(y_train))

    return load


# -- CIFAR-10 python batches -----------------------------------------------------------------

_CIFAR_FILES = (*(f"data_batch_{i}" for i in range(1, 6)), "test_batch")


def load_cifar10(request: _Request) -> _Raw:
    folder = request.root / "cifar-10-batches-py"
    if request.download and not all((folder / f).is_file() for f in _CIFAR_FILES):
        _download(request, "CIFAR10", folder)
    if not all((folder / f).is_file() for f in _CIFAR_FILES):
        raise _missing(request, [folder], _CIFAR_FILES, True)
    xs, ys = [], []
    for file in _CIFAR_FILES:
        try:
            with open(folder / file, "rb") as f:
                batch = pickle.load(f, encoding="bytes")
            xs.append(np.asarray(batch[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
            ys.append(np.asarray(batch[b"labels"], dtype=np.int64))
        except (OSError, pickle.UnpicklingError, EOFError, KeyError, ValueError) as error:
            raise DataError(f"{request.name}: unreadable batch {folder / file} ({error!r}); "
                            "replace the files") from error
    y = np.concatenate(ys)
    return _Raw(np.concatenate(xs), y, official_test=np.arange(len(y)) >= len(y) - len(ys[-1]))


load_mnist = _idx_loader("MNIST", "MNIST")
load_fashion_mnist = _idx_loader("FashionMNIST", "FashionMNIST")
