"""The stratified train/test split, index for index as scikit-learn draws it, without importing
scikit-learn: its import was 1.5 s of every trial's start (bench/RESULTS.md, fixed cost).

`stratified_split(y, test_size, seed)` returns what
`train_test_split(np.arange(len(y)), test_size=test_size, random_state=seed, stratify=y)` gives,
sorted (sklearn.model_selection.StratifiedShuffleSplit, one split): the same numbers of each
class on each side, the same members drawn by the same RandomState calls. Having the algorithm
here also pins a trial's split against scikit-learn upgrades; tests/test_data.py checks it
against scikit-learn itself.
"""

from __future__ import annotations

import math

import numpy as np


def stratified_split(y: np.ndarray, test_size: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Sorted train and test indices into `y`; ValueError where a class has one sample or a
    side would have fewer samples than there are classes."""
    n_test = math.ceil(test_size * len(y))
    n_train = len(y) - n_test
    classes, y_indices, counts = np.unique(y, return_inverse=True, return_counts=True)
    if counts.min() < 2:
        raise ValueError(f"a stratified split needs 2 or more samples of every class; "
                         f"classes {classes[counts < 2].tolist()} have one")
    if min(n_train, n_test) < len(classes):
        raise ValueError(f"a stratified split of {len(y)} samples at test_size {test_size} puts "
                         f"{min(n_train, n_test)} on one side, fewer than the {len(classes)} classes")
    by_class = np.split(np.argsort(y_indices, kind="stable"), np.cumsum(counts)[:-1])
    rng = np.random.RandomState(seed)
    train_counts = _approximate_mode(counts, n_train, rng)
    test_counts = _approximate_mode(counts - train_counts, n_test, rng)
    train, test = [], []
    for members, count, k_train, k_test in zip(by_class, counts, train_counts, test_counts, strict=True):
        drawn = members.take(rng.permutation(count), mode="clip")
        train.append(drawn[:k_train])
        test.append(drawn[k_train:k_train + k_test])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(test))


def _approximate_mode(counts: np.ndarray, n_draws: int, rng: np.random.RandomState) -> np.ndarray:
    """How many of `n_draws` each class gets: its share, floored, then one more for the classes
    with the largest remainders, ties broken at random (scikit-learn's `_approximate_mode`)."""
    continuous = counts / counts.sum() * n_draws
    floored = np.floor(continuous)
    need = int(n_draws - floored.sum())
    if need > 0:
        remainder = continuous - floored
        for value in np.sort(np.unique(remainder))[::-1]:
            (tied,) = np.where(remainder == value)
            add_now = min(len(tied), need)
            floored[rng.choice(tied, size=add_now, replace=False)] += 1
            need -= add_now
            if need == 0:
                break
    return floored.astype(int)
