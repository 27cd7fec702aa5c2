"""Intra-/inter-class spread of an embedding (docs/metrics.md), vectorised over samples."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from mlsweep.diagnostics.base import EvalContext, Reporter


def variance_metrics(embeddings: Tensor, labels: Tensor) -> dict[str, float]:
    """intra_var_mean/std, centroid_dist_mean/std, between_var, var_ratio of L2-normalised
    embeddings (normalised here). intra_var_std is the population std over classes;
    centroid_dist_std the sample std over class pairs, as docs/metrics.md defines them."""
    z = F.normalize(embeddings.detach().double(), dim=1)
    classes, index = torch.unique(labels, return_inverse=True)
    k = len(classes)
    counts = torch.bincount(index, minlength=k).double()
    centroids = torch.zeros(k, z.shape[1], dtype=z.dtype, device=z.device).index_add_(0, index, z)
    centroids /= counts[:, None]
    sq_dev = (z - centroids[index]).pow(2).sum(1)  # ‖z − μ_c‖² per sample
    intra = torch.zeros(k, dtype=z.dtype, device=z.device).index_add_(0, index, sq_dev) / counts
    pair_a, pair_b = torch.triu_indices(k, k, offset=1, device=z.device)
    dists = (centroids[pair_a] - centroids[pair_b]).norm(dim=1)
    between = (counts * (centroids - z.mean(0)).pow(2).sum(1)).sum() / len(z)
    nan = float("nan")
    return {
        "intra_var_mean": intra.mean().item(),
        "intra_var_std": intra.std(correction=0).item(),
        "centroid_dist_mean": dists.mean().item() if len(dists) else nan,
        "centroid_dist_std": dists.std(correction=1).item() if len(dists) > 1 else nan,
        "between_var": between.item(),
        # One class: between_var is 0 by definition, but rounding leaves ~1e-33 to divide by.
        "var_ratio": (sq_dev.mean() / between).item() if k > 1 and between > 0 else nan,
    }


class VarianceReporter(Reporter):
    """`variance_metrics` of the test split, and of the train subset with the prefix `train_`."""

    def on_eval(self, ctx: EvalContext) -> dict[str, float]:
        test = variance_metrics(ctx.test_emb, ctx.test_labels)
        train = variance_metrics(ctx.train_emb, ctx.train_labels)
        return {**test, **{f"train_{k}": v for k, v in train.items()}}
