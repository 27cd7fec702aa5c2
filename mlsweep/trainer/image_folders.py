"""Image data sets kept as folders of image files: CUB-200-2011, Stanford Cars, Tiny-ImageNet.

Each is decoded once per image size into one uint8 array in its own folder (`_image_cache`);
every later trial memory-maps that array. Annotation files are read in the data sets' own
formats; a missing or malformed one is a one-line DataError naming it.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from mlsweep.trainer.data import DataError, _missing, _Raw, _Request

# Normalisation of the ImageNet-like sets, whose backbones are pretrained on ImageNet.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _decode(request: _Request, path: Path, size: int) -> np.ndarray:
    """RGB, shorter side resized to `size`, centre-cropped to a square; uint8 [3, size, size]."""
    try:
        with Image.open(path) as image:
            image.draft("RGB", (size, size))  # JPEG: decode at a reduced scale >= size: faster
            square = ImageOps.fit(image.convert("RGB"), (size, size), Image.Resampling.BILINEAR)
    except OSError as error:
        raise DataError(f"{request.name}: cannot decode {path} ({error}); "
                        "replace the file") from error
    return np.asarray(square).transpose(2, 0, 1)


def _image_cache(request: _Request, folder: Path, paths: Sequence[Path]) -> np.ndarray:
    """Decoded images of `paths`, cached in `folder` as one uint8 .npy and memory-mapped.

    Decoding runs once per data set and image size; every later trial reads the cache. The
    name carries a digest of the file list, so a changed list never reuses a stale cache, and
    the file is written under a temporary name then renamed, so concurrent trials never read
    half a cache.
    """
    size = int(request.params["image_size"])
    digest = hashlib.sha256("\n".join(str(p.relative_to(folder)) for p in paths).encode())
    cache = folder / f".mlsweep-cache-{size}-{digest.hexdigest()[:12]}.npy"
    if not cache.is_file():
        missing = next((p for p in paths if not p.is_file()), None)
        if missing is not None:
            raise DataError(f"{request.name}: image {missing} not found; "
                            f"expected the data set's full image folder under {folder}")
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=cache.name, suffix=".tmp")
        os.close(fd)
        try:
            images = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8,
                                               shape=(len(paths), 3, size, size))
            with ThreadPoolExecutor(os.cpu_count()) as pool:  # PIL decodes without the GIL
                for i, decoded in enumerate(pool.map(lambda p: _decode(request, p, size), paths)):
                    images[i] = decoded
            images.flush()
            del images
            os.replace(tmp, cache)
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)
    return np.load(cache, mmap_mode="r")


def _read_table(path: Path) -> list[list[str]]:
    return [line.split(maxsplit=1) for line in path.read_text().splitlines() if line.strip()]


def load_cub200(request: _Request) -> _Raw:
    folder = request.root / "CUB_200_2011"
    expected = ("images.txt", "image_class_labels.txt", "train_test_split.txt", "images/")
    if not all((folder / f).is_file() for f in expected[:3]):
        raise _missing(request, [folder], expected, False)
    try:
        images = dict(_read_table(folder / "images.txt"))
        labels = dict(_read_table(folder / "image_class_labels.txt"))
        is_train = dict(_read_table(folder / "train_test_split.txt"))
        ids = sorted(images, key=int)
        y = np.array([int(labels[i]) for i in ids], dtype=np.int64)
        official_test = np.array([is_train[i] == "0" for i in ids])
    except (ValueError, KeyError) as error:
        raise DataError(f"{request.name}: malformed annotation files in {folder} "
                        f"({error!r})") from error
    x = _image_cache(request, folder, [folder / "images" / images[i] for i in ids])
    return _Raw(x, y, official_test, fixed_class_split=True,
                mean_std=(IMAGENET_MEAN, IMAGENET_STD))


def load_cars196(request: _Request) -> _Raw:
    from scipy.io import loadmat

    folder = request.root / "stanford_cars"
    parts = (("devkit/cars_train_annos.mat", "cars_train"),
             ("cars_test_annos_withlabels.mat", "cars_test"))
    if not all((folder / annos).is_file() for annos, _ in parts):
        raise _missing(request, [folder], [f for part in parts for f in (part[0], part[1] + "/")],
                       False)
    paths, labels, counts = [], [], []
    for annos, images in parts:
        try:
            table = np.atleast_1d(loadmat(folder / annos, squeeze_me=True)["annotations"])
            paths += [folder / images / str(name) for name in table["fname"]]
            labels += [int(label) for label in table["class"]]
        except (OSError, ValueError, KeyError) as error:
            raise DataError(f"{request.name}: unreadable annotations {folder / annos} "
                            f"({error!r})") from error
        counts.append(len(table))
    x = _image_cache(request, folder, paths)
    return _Raw(x, np.array(labels, dtype=np.int64), np.arange(len(paths)) >= counts[0],
                fixed_class_split=True, mean_std=(IMAGENET_MEAN, IMAGENET_STD))


_TINY_LAYOUT = ("wnids.txt", "train/", "val/val_annotations.txt", "val/images/")


def load_tiny_imagenet(request: _Request) -> _Raw:
    """Tiny-ImageNet-200 in its own layout: train/<wnid>/images/*.JPEG (500 per class) and
    val/images/ labelled by val/val_annotations.txt (50 per class); the official split is
    train vs val (test/ has no labels). Classes are numbered in wnids.txt's order; words.txt
    (the class names) is not needed."""
    folder = request.root / "tiny-imagenet-200"
    if not folder.is_dir():
        raise _missing(request, [folder], _TINY_LAYOUT, False)
    for item in _TINY_LAYOUT:
        path = folder / item
        if not (path.is_dir() if item.endswith("/") else path.is_file()):
            raise DataError(f"{request.name}: {path} not found; expected "
                            f"{', '.join(_TINY_LAYOUT)} in {folder}")
    wnids = [line.strip() for line in (folder / "wnids.txt").read_text().splitlines() if line.strip()]
    if not wnids or len(set(wnids)) != len(wnids):
        raise DataError(f"{request.name}: malformed {folder / 'wnids.txt'} "
                        "(expected one distinct class id per line)")
    index = {wnid: i for i, wnid in enumerate(wnids)}
    paths: list[Path] = []
    labels: list[int] = []
    for wnid, label in index.items():
        images = sorted((folder / "train" / wnid / "images").glob("*.JPEG"))
        if not images:
            raise DataError(f"{request.name}: no *.JPEG in {folder / 'train' / wnid / 'images'}; "
                            "expected the full train folder of every class in wnids.txt")
        paths += images
        labels += [label] * len(images)
    n_train = len(paths)
    annotations = folder / "val" / "val_annotations.txt"
    for number, line in enumerate(annotations.read_text().splitlines(), 1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) < 2 or fields[1] not in index:
            raise DataError(f"{request.name}: malformed line {number} of {annotations}: "
                            f"{line.strip()!r} (expected FILE WNID [BOX], a class of wnids.txt)")
        paths.append(folder / "val" / "images" / fields[0])
        labels.append(index[fields[1]])
    if len(paths) == n_train:
        raise DataError(f"{request.name}: {annotations} lists no images")
    x = _image_cache(request, folder, paths)
    return _Raw(x, np.array(labels, dtype=np.int64), np.arange(len(paths)) >= n_train,
                mean_std=(IMAGENET_MEAN, IMAGENET_STD))
