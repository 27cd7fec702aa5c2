"""Tiny copies of data sets in their own file formats, written by the tests (no network)."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
from PIL import Image


def write_idx(path: Path, array: np.ndarray, compress: bool) -> None:
    header = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I",
                                                                   *array.shape)
    data = header + array.astype(np.uint8).tobytes()
    if compress:
        path.with_name(path.name + ".gz").write_bytes(gzip.compress(data))
    else:
        path.write_bytes(data)


def write_mnist(root: Path, folder: str, compress: bool) -> None:
    raw = root / folder / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for prefix, per_class in (("train", 8), ("t10k", 4)):
        labels = np.repeat(np.arange(10), per_class)
        images = rng.integers(0, 256, size=(len(labels), 28, 28))
        write_idx(raw / f"{prefix}-images-idx3-ubyte", images, compress)
        write_idx(raw / f"{prefix}-labels-idx1-ubyte", labels, compress)


def write_jpeg(path: Path, seed: int, level: int | None = None, grey: bool = False) -> None:
    """Random pixels of a seed-dependent size, or one flat `level` (that JPEG keeps exactly)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 256, size=(20 + seed % 5, 30, 3))
    if level is not None:
        pixels[:] = level
    image = Image.fromarray(pixels.astype(np.uint8))
    (image.convert("L") if grey else image).save(path)


def write_tiny_imagenet(root: Path, wnids: list[str], train_per_class: int, val_per_class: int,
                        ) -> Path:
    """tiny-imagenet-200/ in the official layout. Class c's images are flat at level 10 + 40c,
    so an image shows its label; the first one is greyscale (the real set has some); the val
    images are listed in val_annotations.txt in an order that is not the classes'."""
    folder = root / "tiny-imagenet-200"
    folder.mkdir(parents=True)
    (folder / "wnids.txt").write_text("".join(f"{w}\n" for w in wnids))
    (folder / "words.txt").write_text("".join(f"{w}\tclass {w}\n" for w in wnids))
    lines = []
    for c, wnid in enumerate(wnids):
        for i in range(train_per_class):
            write_jpeg(folder / "train" / wnid / "images" / f"{wnid}_{i}.JPEG", 10 * c + i,
                       level=10 + 40 * c, grey=c == 0 and i == 0)
        (folder / "train" / wnid / f"{wnid}_boxes.txt").write_text("")
        for i in range(val_per_class):
            name = f"val_{c * val_per_class + i}.JPEG"
            write_jpeg(folder / "val" / "images" / name, 100 + 10 * c + i, level=10 + 40 * c)
            lines.append(f"{name}\t{wnid}\t0\t0\t63\t63")
    (folder / "val" / "val_annotations.txt").write_text("\n".join(lines[::-1]) + "\n")
    write_jpeg(folder / "test" / "images" / "test_0.JPEG", 999)  # unlabelled: never read
    return folder
