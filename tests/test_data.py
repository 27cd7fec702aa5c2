"""Data sets, splits, samplers and augmentation of the trainer.

No network: every file-based loader reads a tiny copy of its data set that the test writes in
the data set's own format (IDX, CIFAR pickles, the CUB and Stanford Cars folder trees).
"""

from __future__ import annotations

import pickle
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import scipy.io
import torch
from datafiles import write_idx, write_jpeg, write_mnist, write_tiny_imagenet

from mlsweep.catalog import TrialConfig
from mlsweep.trainer import data as data_module
from mlsweep.trainer.data import DataError, DataSplit, load_dataset, make_synthetic
from mlsweep.trainer.loop import run_trial
from mlsweep.trainer.sampling import epoch_batches, prepare_batch
from mlsweep.trainer.stratified_split import stratified_split


def _load(settings: Mapping[str, Any]) -> DataSplit:
    """The split of a trial's data set, as the trainer loads it (from the trial's TrialConfig)."""
    return load_dataset(TrialConfig.from_mapping(settings))


# -- synthetic --------------------------------------------------------------------------------


def test_synthetic_has_the_papers_statistics() -> None:
    x, y = make_synthetic()
    assert x.dtype == np.float32 and y.dtype == np.int64
    assert x.shape == (2100, 128)  # 10 x 200 points + 5% outliers
    assert (y == -1).sum() == 100 and (y[2000:] == -1).all()
    assert set(y[:2000]) == set(range(10))
    _, clean = make_synthetic(label_noise=0.0)
    assert (clean[:2000] == np.repeat(np.arange(10), 200)).all()
    assert (y[:2000] != clean[:2000]).mean() == pytest.approx(0.10)  # to a uniform *other* class
    class_means = x[:2000].reshape(10, 200, 128).mean(axis=1)
    # Centres ~ N(0, 5²): the std of class means is 5, plus the sampling error of the means
    # (per coordinate spread * sqrt(dim) / sqrt(per_class) ~ 1.1).
    assert 4.5 < class_means.std() < 6.0
    assert 13.0 < x[2000:].std() < 17.0
    x_kept, y_kept = make_synthetic(drop_outliers=True, n_classes=3, per_class=5, dim=4)
    assert x_kept.shape == (15, 4) and (y_kept >= 0).all()


def test_synthetic_split_depends_on_split_seed_only() -> None:
    base = {"dataset": "synthetic", "dataset_params": {"per_class": 40, "dim": 8}}
    a = _load({**base, "seed": 0})
    b = _load({**base, "seed": 7})
    c = _load({**base, "split_seed": 1})
    assert torch.equal(a.x_test, b.x_test) and torch.equal(a.y_train, b.y_train)
    assert not torch.equal(a.x_test, c.x_test)
    assert a.x_train.shape == (315, 8) and a.x_test.shape == (105, 8)  # 400 + 20 outliers
    assert a.num_classes == 11  # the outliers (-1) are a class of their own: label 0
    assert not a.image and a.input_shape == (8,)


def test_synthetic_has_no_official_split() -> None:
    with pytest.raises(DataError, match="synthetic: has no official"):
        _load({"dataset": "synthetic", "split": "official"})


# -- digits, splits ---------------------------------------------------------------------------


def test_digits_are_scikit_learns_digits_read_without_importing_it() -> None:
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    loaded = data_module.load_digits(None)
    assert np.array_equal(loaded.x, (x / 16.0).astype(np.float32)) and loaded.x.dtype == np.float32
    assert np.array_equal(loaded.y, y) and loaded.y.dtype == np.int64


@pytest.mark.parametrize("test_size", [0.25, 0.1, 0.3, 0.5, 0.77])
def test_the_stratified_split_is_scikit_learns_index_for_index(test_size: float) -> None:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    rng = np.random.default_rng(7)
    labels = [load_digits(return_X_y=True)[1],
              make_synthetic(n_classes=5, per_class=40, dim=8, seed=3)[1],  # outliers: -1
              rng.integers(0, 6, size=97),  # unequal classes: ties in the remainders
              np.repeat([3, 1, 2], [2, 50, 7])]  # a class of two
    for y in labels:
        for seed in (0, 1, 42, 12345):
            train, test = stratified_split(y, test_size, seed)
            expected = train_test_split(np.arange(len(y)), test_size=test_size, random_state=seed,
                                        stratify=y)
            assert np.array_equal(train, np.sort(expected[0]))
            assert np.array_equal(test, np.sort(expected[1]))


def test_a_stratified_split_says_which_classes_are_too_small() -> None:
    with pytest.raises(ValueError, match=r"classes \[5\] have one"):
        stratified_split(np.array([0, 0, 1, 1, 5]), 0.4, 0)
    with pytest.raises(ValueError, match="fewer than the 3 classes"):
        stratified_split(np.repeat([0, 1, 2], 4), 0.1, 0)


def test_digits_vectors_in_unit_range() -> None:
    split = _load({"dataset": "digits"})
    assert split.x_train.dtype == torch.float32 and split.x_train.shape[1] == 64
    assert len(split.x_train) + len(split.x_test) == 1797
    assert split.x_train.min() == 0 and split.x_train.max() == 1
    assert split.num_classes == 10 and split.y_train.dtype == torch.int64


def test_stratified_keeps_class_proportions() -> None:
    split = _load({"dataset": "digits", "test_size": 0.25})
    train = torch.bincount(split.y_train, minlength=10)
    test = torch.bincount(split.y_test, minlength=10)
    share = test / (train + test)
    assert ((share - 0.25).abs() < 0.01).all()


def test_class_disjoint_has_no_class_overlap() -> None:
    split = _load({"dataset": "digits", "split": "class_disjoint", "test_size": 0.3})
    train, test = set(split.y_train.tolist()), set(split.y_test.tolist())
    assert train == set(range(7)) and test == {7, 8, 9}  # round(0.7 * 10) train classes
    assert split.num_classes == 7


def test_to_moves_a_copy() -> None:
    split = _load({"dataset": "digits"})
    moved = split.to("cpu")
    assert isinstance(moved, DataSplit) and moved is not split
    assert torch.equal(moved.x_test, split.x_test) and moved.num_classes == split.num_classes


# -- MNIST, Fashion-MNIST ---------------------------------------------------------------------


@pytest.mark.parametrize(("dataset", "folder", "compress"),
                         [("mnist", "MNIST", True), ("fashion_mnist", "FashionMNIST", False)])
def test_idx_data_sets(tmp_path: Path, dataset: str, folder: str, compress: bool) -> None:
    write_mnist(tmp_path, folder, compress)
    base = {"dataset": dataset, "data_dir": str(tmp_path)}
    official = _load({**base, "split": "official"})
    assert official.x_train.shape == (80, 1, 28, 28) and official.x_test.shape == (40, 1, 28, 28)
    assert official.x_train.dtype == torch.uint8 and official.image
    assert official.num_classes == 10 and len(official.mean) == len(official.std) == 1
    stratified = _load({**base, "split": "stratified", "test_size": 0.25})
    assert len(stratified.y_test) == 30
    assert (torch.bincount(stratified.y_test) == 3).all()
    disjoint = _load({**base, "split": "class_disjoint", "test_size": 0.25})
    assert set(disjoint.y_test.tolist()) == {8, 9} and disjoint.num_classes == 8


def test_missing_data_set_is_one_line_naming_the_folder(tmp_path: Path) -> None:
    with pytest.raises(DataError) as error:
        _load({"dataset": "mnist", "data_dir": str(tmp_path)})
    message = str(error.value)
    assert "\n" not in message
    assert str(tmp_path / "MNIST" / "raw") in message
    assert "train-images-idx3-ubyte(.gz)" in message and "t10k-labels-idx1-ubyte" in message


def test_broken_idx_file_is_a_data_error(tmp_path: Path) -> None:
    write_mnist(tmp_path, "MNIST", compress=False)
    images = tmp_path / "MNIST" / "raw" / "train-images-idx3-ubyte"
    images.write_bytes(images.read_bytes()[:1000])
    with pytest.raises(DataError, match="unreadable IDX"):
        _load({"dataset": "mnist", "data_dir": str(tmp_path)})


def test_failed_download_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import torchvision.datasets

    def offline(*args: object, **kwargs: object) -> None:
        raise RuntimeError("Error downloading train-images-idx3-ubyte.gz:\nTried mirrors")

    monkeypatch.setattr(torchvision.datasets, "MNIST", offline)
    with pytest.raises(DataError, match=r"mnist: download into .* failed") as error:
        _load({"dataset": "mnist", "data_dir": str(tmp_path), "download": True})
    assert "\n" not in str(error.value)


FASHION = Path("/usr/share/datasets/fashion-mnist")  # Debian's dataset-fashion-mnist
needs_fashion = pytest.mark.skipif(
    not (FASHION / "train-images-idx3-ubyte.gz").is_file(),
    reason=f"Debian package dataset-fashion-mnist not installed ({FASHION} missing); "
           "apt-get install dataset-fashion-mnist")


def test_idx_files_directly_in_data_dir(tmp_path: Path) -> None:
    """The Debian layout: the four files in data_dir itself, no FashionMNIST/raw."""
    write_mnist(tmp_path, "FashionMNIST", compress=True)
    flat = tmp_path / "flat"
    (tmp_path / "FashionMNIST" / "raw").rename(flat)
    split = _load({"dataset": "fashion_mnist", "data_dir": str(flat), "split": "official"})
    assert split.x_train.shape == (80, 1, 28, 28) and split.x_test.shape == (40, 1, 28, 28)


def test_truncated_gz_is_one_line_naming_the_file(tmp_path: Path) -> None:
    write_mnist(tmp_path, "FashionMNIST", compress=True)
    labels = tmp_path / "FashionMNIST" / "raw" / "t10k-labels-idx1-ubyte.gz"
    labels.write_bytes(labels.read_bytes()[:-12])  # the gzip trailer and a few bytes go
    with pytest.raises(DataError, match="unreadable IDX file") as error:
        _load({"dataset": "fashion_mnist", "data_dir": str(tmp_path)})
    assert str(labels) in str(error.value) and "\n" not in str(error.value)


def test_images_and_labels_of_different_lengths(tmp_path: Path) -> None:
    write_mnist(tmp_path, "MNIST", compress=False)
    write_idx(tmp_path / "MNIST" / "raw" / "train-labels-idx1-ubyte", np.zeros(79), False)
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte holds 80 images .* 79 labels"):
        _load({"dataset": "mnist", "data_dir": str(tmp_path)})


def test_missing_idx_files_name_both_places(tmp_path: Path) -> None:
    with pytest.raises(DataError) as error:
        _load({"dataset": "fashion_mnist", "data_dir": str(tmp_path)})
    assert f"not found in {tmp_path / 'FashionMNIST' / 'raw'} or {tmp_path};" in str(error.value)


@needs_fashion
def test_real_fashion_mnist_official_split() -> None:
    split = _load({"dataset": "fashion_mnist", "data_dir": str(FASHION), "split": "official"})
    assert split.x_train.shape == (60000, 1, 28, 28) and split.x_test.shape == (10000, 1, 28, 28)
    assert (torch.bincount(split.y_train) == 6000).all() and (torch.bincount(split.y_test) == 1000).all()
    # The first train labels of the official files: ankle boot, T-shirt, T-shirt, dress, ...
    assert split.y_train[:10].tolist() == [9, 0, 0, 3, 0, 2, 7, 2, 5, 5]
    assert split.mean[0] == pytest.approx(0.2860, abs=1e-3)  # Fashion-MNIST's known pixel mean
    assert split.std[0] == pytest.approx(0.3530, abs=1e-3)


@needs_fashion
def test_real_fashion_mnist_labels_line_up_with_images() -> None:
    """One epoch of an MLP on the 60k train images: the 5-NN accuracy on the 10k test images
    is far above chance (0.10), which it cannot be if labels and images were misaligned.
    Measured 0.824, 0.824, 0.825 for seeds 0-2; the bound leaves room for other CPUs."""
    result = run_trial({"dataset": "fashion_mnist", "data_dir": str(FASHION), "split": "official",
                        "model": "mlp", "hidden_sizes": [128], "loss": "triplet", "margin": 0.5,
                        "epochs": 1, "train_subset": 2000, "diagnostics": ["retrieval"],
                        "torch_device": "cpu"})
    assert result.epochs["knn_acc"].iloc[-1] > 0.75


# -- CIFAR-10 ---------------------------------------------------------------------------------


def test_cifar10_batches(tmp_path: Path) -> None:
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for name in [*(f"data_batch_{i}" for i in range(1, 6)), "test_batch"]:
        batch = {b"data": rng.integers(0, 256, size=(10, 3072), dtype=np.uint8),
                 b"labels": list(range(10))}
        (folder / name).write_bytes(pickle.dumps(batch))
    split = _load({"dataset": "cifar10", "data_dir": str(tmp_path), "split": "official"})
    assert split.x_train.shape == (50, 3, 32, 32) and split.x_test.shape == (10, 3, 32, 32)
    assert split.num_classes == 10 and len(split.mean) == 3
    (folder / "test_batch").unlink()
    with pytest.raises(DataError, match=r"cifar-10-batches-py.*test_batch"):
        _load({"dataset": "cifar10", "data_dir": str(tmp_path)})


# -- CUB-200-2011, Stanford Cars --------------------------------------------------------------


def _write_cub(root: Path) -> Path:
    """4 classes x 3 images; the first image of each class is a test image officially."""
    folder = root / "CUB_200_2011"
    images, labels, split = [], [], []
    for i in range(12):
        label = i // 3 + 1
        relative = f"{label:03d}.Bird_{label}/Bird_{label}_{i:04d}.jpg"
        write_jpeg(folder / "images" / relative, i)
        images.append(f"{i + 1} {relative}")
        labels.append(f"{i + 1} {label}")
        split.append(f"{i + 1} {int(i % 3 != 0)}")
    for name, lines in (("images.txt", images), ("image_class_labels.txt", labels),
                        ("train_test_split.txt", split)):
        (folder / name).write_text("\n".join(lines) + "\n")
    return folder


def test_cub200_splits_and_cache(tmp_path: Path) -> None:
    folder = _write_cub(tmp_path)
    base = {"dataset": "cub200", "data_dir": str(tmp_path), "dataset_params": {"image_size": 16}}
    # Default class_disjoint: the first half of the classes (1-100 of 200; here 1-2 of 4).
    disjoint = _load(base)
    assert disjoint.x_train.shape == (6, 3, 16, 16) and disjoint.x_train.dtype == torch.uint8
    assert disjoint.num_classes == 2 and set(disjoint.y_test.tolist()) == {2, 3}
    official = _load({**base, "split": "official"})
    assert len(official.y_train) == 8 and len(official.y_test) == 4
    # The second load reads the cache: the images are no longer needed.
    shutil.rmtree(folder / "images")
    again = _load(base)
    assert torch.equal(again.x_train, disjoint.x_train)
    assert torch.equal(again.x_test, disjoint.x_test)
    assert not list(folder.glob("*.tmp"))
    # Another image size needs the images again.
    with pytest.raises(DataError, match=r"cub200: image .*\.jpg not found"):
        _load({**base, "dataset_params": {"image_size": 8}})


def test_cub200_missing_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"cub200: not found in .*CUB_200_2011; expected "
                                        r"images\.txt.*no download") as error:
        _load({"dataset": "cub200", "data_dir": str(tmp_path), "download": True})
    assert "\n" not in str(error.value)


def test_cars196_mat_annotations(tmp_path: Path) -> None:
    folder = tmp_path / "stanford_cars"
    (folder / "devkit").mkdir(parents=True)
    scipy.io.savemat(folder / "devkit" / "cars_meta.mat",
                     {"class_names": np.array([f"Car {i}" for i in range(1, 5)], dtype=object)})
    fields = [("bbox_x1", "u2"), ("bbox_y1", "u2"), ("bbox_x2", "u2"), ("bbox_y2", "u2"),
              ("class", "u1"), ("fname", "O")]
    for annos, images, offset in (("devkit/cars_train_annos.mat", "cars_train", 0),
                                        ("cars_test_annos_withlabels.mat", "cars_test", 8)):
        table = np.zeros(8, dtype=fields)
        table["class"] = np.repeat(np.arange(1, 5), 2)
        table["fname"] = [f"{i + 1:05d}.jpg" for i in range(8)]
        for i, name in enumerate(table["fname"]):
            write_jpeg(folder / images / name, offset + i)
        scipy.io.savemat(folder / annos, {"annotations": table})
    base = {"dataset": "cars196", "data_dir": str(tmp_path), "dataset_params": {"image_size": 12}}
    disjoint = _load(base)  # classes 1-98 / 99-196; here 1-2 / 3-4
    assert disjoint.x_train.shape == (8, 3, 12, 12) and disjoint.num_classes == 2
    assert set(disjoint.y_test.tolist()) == {2, 3}
    official = _load({**base, "split": "official"})
    assert official.x_test.shape == (8, 3, 12, 12) and official.num_classes == 4
    assert official.mean == pytest.approx((0.485, 0.456, 0.406))


# -- Tiny-ImageNet ----------------------------------------------------------------------------

WNIDS = ["n01443537", "n01629819", "n01641577"]


def _tiny(tmp_path: Path, **params: object) -> dict[str, object]:
    return {"dataset": "tiny_imagenet", "data_dir": str(tmp_path),
            "dataset_params": {"image_size": 16, **params}}


def test_tiny_imagenet_official_split_and_labels(tmp_path: Path) -> None:
    write_tiny_imagenet(tmp_path, WNIDS, train_per_class=4, val_per_class=2)
    split = _load(_tiny(tmp_path))  # the default split is the official one
    assert split.x_train.shape == (12, 3, 16, 16) and split.x_test.shape == (6, 3, 16, 16)
    assert split.x_train.dtype == torch.uint8 and split.num_classes == 3
    assert split.mean == pytest.approx((0.485, 0.456, 0.406))
    # Class c's images are flat at 10 + 40c: each image shows its label (the grey one too).
    for x, y in ((split.x_train, split.y_train), (split.x_test, split.y_test)):
        levels = x.float().mean(dim=(1, 2, 3))
        assert torch.allclose(levels, 10 + 40 * y.float(), atol=2)
    assert torch.bincount(split.y_test).tolist() == [2, 2, 2]


def test_tiny_imagenet_cache_is_reused(tmp_path: Path) -> None:
    folder = write_tiny_imagenet(tmp_path, WNIDS, train_per_class=2, val_per_class=1)
    first = _load(_tiny(tmp_path))
    caches = list(folder.glob(".mlsweep-cache-16-*.npy"))
    assert len(caches) == 1
    for image in folder.glob("val/images/*.JPEG"):
        image.write_bytes(b"")  # would not decode
    again = _load(_tiny(tmp_path))
    assert torch.equal(first.x_test, again.x_test) and torch.equal(first.x_train, again.x_train)


@pytest.mark.parametrize(("damage", "message"), [
    ("no_annotations", r"tiny_imagenet: .*val/val_annotations\.txt not found; expected wnids"),
    ("bad_line", r"malformed line 2 of .*val_annotations\.txt: 'val_x\.JPEG\\tn99999999'"),
    ("no_image", r"image .*val_0\.JPEG not found"),
    ("bad_image", r"cannot decode .*n01629819_1\.JPEG"),
    ("empty_class", r"no \*\.JPEG in .*train/n01641577/images; expected the full train folder"),
    ("no_folder", r"tiny_imagenet: not found in .*tiny-imagenet-200; expected wnids\.txt"),
])
def test_tiny_imagenet_bad_files_are_one_line(tmp_path: Path, damage: str, message: str) -> None:
    folder = write_tiny_imagenet(tmp_path, WNIDS, train_per_class=2, val_per_class=1)
    annotations = folder / "val" / "val_annotations.txt"
    if damage == "no_annotations":
        annotations.unlink()
    elif damage == "bad_line":
        lines = annotations.read_text().splitlines()
        annotations.write_text("\n".join([lines[0], "val_x.JPEG\tn99999999", *lines[1:]]))
    elif damage == "no_image":
        (folder / "val" / "images" / "val_0.JPEG").unlink()
    elif damage == "bad_image":
        (folder / "train" / WNIDS[1] / "images" / f"{WNIDS[1]}_1.JPEG").write_bytes(b"not a jpeg")
    elif damage == "empty_class":
        for image in (folder / "train" / WNIDS[2] / "images").iterdir():
            image.unlink()
    else:
        shutil.rmtree(folder)
    with pytest.raises(DataError, match=message) as error:
        _load(_tiny(tmp_path))
    assert "\n" not in str(error.value)


def test_train_cli_on_a_broken_tiny_imagenet_exits_2(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from mlsweep.cli import app

    folder = write_tiny_imagenet(tmp_path, WNIDS, train_per_class=2, val_per_class=1)
    (folder / "val" / "val_annotations.txt").unlink()
    result = CliRunner().invoke(app, ["train", "--dataset", "tiny_imagenet", "--set",
                                      f"data_dir={tmp_path}", "--set", "epochs=1"])
    assert result.exit_code == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "val_annotations.txt not found" in lines[0], result.output


# -- samplers ---------------------------------------------------------------------------------


def _generator(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_random_sampler_covers_each_index_once() -> None:
    labels = torch.arange(201) % 7
    batches = epoch_batches(labels, 50, "random", 4, _generator())
    assert [len(b) for b in batches] == [50, 50, 50, 50]  # the last batch of 1 is dropped
    covered = torch.cat(batches)
    assert len(covered.unique()) == 200
    full = torch.cat(epoch_batches(labels[:200], 32, "random", 4, _generator()))
    assert torch.equal(full.sort().values, torch.arange(200))


def test_m_per_class_batches() -> None:
    labels = torch.arange(10).repeat_interleave(20)[torch.randperm(200, generator=_generator(1))]
    batches = epoch_batches(labels, 16, "m_per_class", 4, _generator())
    assert len(batches) == 200 // 16
    for batch in batches:
        assert len(batch) == 16 and len(batch.unique()) == 16
        counts = torch.bincount(labels[batch], minlength=10)
        assert sorted(counts[counts > 0].tolist()) == [4, 4, 4, 4]
    again = epoch_batches(labels, 16, "m_per_class", 4, _generator())
    assert all(torch.equal(a, b) for a, b in zip(batches, again, strict=True))
    other = epoch_batches(labels, 16, "m_per_class", 4, _generator(1))
    assert not all(torch.equal(a, b) for a, b in zip(batches, other, strict=True))


def test_m_per_class_repeats_only_in_small_classes() -> None:
    labels = torch.tensor([0, 0, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2])
    for batch in epoch_batches(labels, 8, "m_per_class", 4, _generator()):
        for c in labels[batch].unique():
            members = batch[labels[batch] == c]
            assert len(members) == 4
            assert len(members.unique()) == (2 if c == 0 else 4)


# -- batches ----------------------------------------------------------------------------------


def _image_split(size: int = 32) -> DataSplit:
    x = torch.randint(0, 256, (8, 3, size, size), dtype=torch.uint8, generator=_generator())
    y = torch.arange(8) % 2
    return DataSplit(x, y, x, y, num_classes=2, image=True, mean=(0.5, 0.4, 0.3),
                     std=(0.2, 0.25, 0.3))


def test_prepare_batch_normalises_images_and_passes_vectors() -> None:
    split = _image_split()
    out = prepare_batch(split.x_train, split, train=False, augment=True, generator=None)
    mean = torch.tensor(split.mean).view(1, 3, 1, 1)
    std = torch.tensor(split.std).view(1, 3, 1, 1)
    assert torch.allclose(out, (split.x_train.float() / 255 - mean) / std)
    vectors = torch.arange(6).view(2, 3)
    vector_split = DataSplit(vectors, vectors, vectors, vectors, 1, image=False)
    out = prepare_batch(vectors, vector_split, train=True, augment=True, generator=None)
    assert out.dtype == torch.float32 and torch.equal(out, vectors.float())


def _crop_offsets(out: torch.Tensor, split: DataSplit, pad: int) -> list[tuple[int, int]]:
    """For each augmented image, the (dy, dx) of the window of the zero-padded image it is."""
    padded = torch.nn.functional.pad(split.x_train, (pad, pad, pad, pad))
    padded = prepare_batch(padded, split, train=False, augment=False, generator=None)
    size = split.x_train.shape[-1]
    offsets = []
    for image, source in zip(out, padded, strict=True):
        found = [(dy, dx) for dy in range(2 * pad + 1) for dx in range(2 * pad + 1)
                 for window in [source[:, dy:dy + size, dx:dx + size]]
                 if torch.equal(image, window) or torch.equal(image, window.flip(2))]
        assert found, "not a (mirrored) window of the padded image"
        offsets.append(found[0])
    return offsets


def test_augmentation_is_a_seeded_crop_and_flip() -> None:
    split = _image_split()
    a = prepare_batch(split.x_train, split, train=True, augment=True, generator=_generator())
    b = prepare_batch(split.x_train, split, train=True, augment=True, generator=_generator())
    assert a.shape == split.x_train.shape and a.dtype == torch.float32
    assert torch.equal(a, b)
    plain = prepare_batch(split.x_train, split, train=True, augment=False, generator=None)
    assert not torch.equal(a, plain)
    assert len(set(_crop_offsets(a, split, pad=4))) > 1


def test_augmentation_pads_an_eighth_of_large_images() -> None:
    split = _image_split(size=64)
    out = prepare_batch(split.x_train, split, train=True, augment=True, generator=_generator(3))
    assert out.shape == (8, 3, 64, 64)
    offsets = _crop_offsets(out, split, pad=8)
    assert any(abs(dy - 8) > 4 or abs(dx - 8) > 4 for dy, dx in offsets)  # beyond a 4 px pad
