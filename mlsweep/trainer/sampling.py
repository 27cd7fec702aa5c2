"""Batching by index and augmentation, as tensor operations on the data's device.

The data sets live whole on the trial's device (data.DataSplit.to), so an epoch is a list of
index tensors and a batch is prepared there too: no DataLoader, no worker processes, no copy
per batch. Random draws use the generator given (seeded by the trial's `seed`), on that
generator's device; a CPU and a CUDA generator give different (each reproducible) streams.
"""

from __future__ import annotations

import torch

from mlsweep.trainer.data import DataSplit


def epoch_batches(labels: torch.Tensor, batch_size: int, sampler: str, m_per_class: int | None,
                  generator: torch.Generator) -> list[torch.Tensor]:
    """Index tensors (on labels' device) of one epoch's batches.

    `random`: a permutation of all samples cut into batches; a last batch of one sample is
    dropped (it forms no pair). `m_per_class`: len(labels) // batch_size batches, each of
    m_per_class samples from each of batch_size // m_per_class distinct classes (fewer if the
    data has fewer classes); see _m_per_class. `m_per_class` is None beside the random
    sampler (a TrialConfig holds None for a setting its trial does not read).
    """
    if sampler == "random":
        order = torch.randperm(len(labels), generator=generator, device=generator.device)
        return [batch for batch in order.to(labels.device).split(batch_size) if len(batch) >= 2]
    if sampler == "m_per_class":
        return _m_per_class(labels, batch_size, m_per_class, generator)
    raise ValueError(f"unknown sampler {sampler!r}; known: random, m_per_class")


def _m_per_class(labels: torch.Tensor, batch_size: int, m: int, generator: torch.Generator,
                 ) -> list[torch.Tensor]:
    """Balanced batches, classes chosen uniformly per batch.

    Each class is shuffled once per epoch and read as a ring: the k-th time a class is drawn
    this epoch it gives its next m samples. Draws of one class thus repeat no sample until the
    class is used up, and a batch repeats a sample only if its class has fewer than m.
    """
    device = generator.device
    sample_class, counts = torch.unique(labels.to(device), return_inverse=True,
                                        return_counts=True)[1:]
    n_classes = len(counts)
    per_batch = max(1, min(batch_size // m, n_classes))
    n_batches = max(1, len(labels) // batch_size)
    # Samples grouped by class, in a random order within each class.
    shuffled = torch.randperm(len(labels), generator=generator, device=device)
    members = shuffled[torch.sort(sample_class[shuffled], stable=True).indices]
    starts = torch.cumsum(counts, 0) - counts
    # Distinct classes per batch: the first per_batch of a random order of all classes.
    chosen = torch.rand(n_batches, n_classes, generator=generator, device=device).argsort(1)
    chosen = chosen[:, :per_batch].reshape(-1)
    # Rank of each draw among the earlier draws of its class.
    draws = torch.bincount(chosen, minlength=n_classes)
    first_draw = torch.cumsum(draws, 0) - draws
    chosen_sorted, order = torch.sort(chosen, stable=True)
    rank = torch.empty_like(chosen)
    rank[order] = torch.arange(len(chosen), device=device) - first_draw[chosen_sorted]
    offsets = (rank[:, None] * m + torch.arange(m, device=device)) % counts[chosen][:, None]
    indices = members[starts[chosen][:, None] + offsets]
    return list(indices.reshape(n_batches, per_batch * m).to(labels.device))


def prepare_batch(x: torch.Tensor, split: DataSplit, train: bool, augment: bool,
                  generator: torch.Generator | None) -> torch.Tensor:
    """A model-ready float32 batch: vectors as they are; images scaled, augmented, normalised.

    Augmentation (train and augment only) is the usual random crop after zero padding (4
    pixels up to 32 px images, size/8 beyond) and a random horizontal flip, done as one gather
    over the whole batch on its device.
    """
    if not split.image:
        return x.float()
    if train and augment:
        x = _crop_and_flip(x, generator)
    mean = torch.tensor(split.mean, dtype=torch.float32, device=x.device).view(1, -1, 1, 1)
    std = torch.tensor(split.std, dtype=torch.float32, device=x.device).view(1, -1, 1, 1)
    return (x.float() / 255 - mean) / std


def _crop_and_flip(x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    n, _, height, width = x.shape
    pad = 4 if max(height, width) <= 32 else max(height, width) // 8
    device = generator.device if generator is not None else x.device
    dy, dx = torch.randint(0, 2 * pad + 1, (2, n, 1), generator=generator, device=device)
    flip = torch.rand(n, 1, generator=generator, device=device) < 0.5
    rows = (dy + torch.arange(height, device=device)).to(x.device)
    cols = torch.arange(width, device=device)
    cols = (dx + torch.where(flip, width - 1 - cols, cols)).to(x.device)
    padded = torch.nn.functional.pad(x, (pad, pad, pad, pad))
    batch = torch.arange(n, device=x.device)[:, None, None]
    # Advanced indices around the channel slice put the batch dims first: [N, H, W, C].
    return padded[batch, :, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2).contiguous()
