"""Retrieval quality of an embedding: recall@k, MAP@R and friends on the test set against
itself, and a 5-NN classifier from train to test embeddings.

All test-set metrics come from one chunked kNN search (k = the larger of 10 and the largest
class): MAP@R, R-precision and precision@1 follow Musgrave et al. (2020) exactly as
pytorch-metric-learning's AccuracyCalculator computes them (the tests check it against that
calculator), at a fraction of its per-call overhead, which matters when evaluating every epoch.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from mlsweep.catalog import REPORTERS
from mlsweep.diagnostics.base import EvalContext, Reporter

RECALL_KS = (1, 5, 10)
KNN_K = 5
_CHUNK = 4096  # queries per distance block: bounded memory on large test sets


def _nearest(query: Tensor, gallery: Tensor, k: int, exclude_self: bool) -> Tensor:
    """Indices of the k nearest gallery items per query, chunked over queries. Both sides are
    L2-normalised, where ‖q − g‖² = 2 − 2·q·g: ranking by the dot product is ranking by
    Euclidean distance, without cdist's square roots."""
    out = []
    for start in range(0, len(query), _CHUNK):
        sim = query[start:start + _CHUNK] @ gallery.T
        if exclude_self:
            rows = torch.arange(sim.shape[0], device=sim.device)
            sim[rows, rows + start] = -math.inf
        # Excluding self leaves n - 1 candidates: taking n would return self (at -inf) as a hit.
        out.append(sim.topk(min(k, gallery.shape[0] - int(exclude_self))).indices)
    return torch.cat(out)


def _ranked_hits(emb: Tensor, labels: Tensor, k: int) -> Tensor:
    """[n, k] booleans: is the i-th nearest other item of each query of its class?"""
    return labels[_nearest(emb, emb, k, exclude_self=True)] == labels[:, None]


def recall_at_k(emb: Tensor, labels: Tensor, ks: tuple[int, ...] = RECALL_KS,
                hits: Tensor | None = None) -> dict[str, float]:
    """Share of queries with a same-class item among their k nearest others (self excluded)."""
    if hits is None:
        hits = _ranked_hits(F.normalize(emb.detach().float(), dim=1), labels, max(ks))
    return {f"recall_at_{k}": hits[:, :k].any(1).double().mean().item() for k in ks}


def map_at_r(labels: Tensor, hits: Tensor) -> dict[str, float]:
    """precision_at_1, r_precision and map_at_r over queries with at least one same-class
    item (R ≥ 1), from ranked hits covering at least the largest R."""
    _, index, counts = torch.unique(labels, return_inverse=True, return_counts=True)
    r = (counts[index] - 1).clamp(max=hits.shape[1])  # same-class others per query
    keep = r > 0
    hits, r = hits[keep].double(), r[keep].double()
    ranks = torch.arange(1, hits.shape[1] + 1, device=hits.device, dtype=hits.dtype)
    within_r = ranks[None, :] <= r[:, None]
    precision = hits.cumsum(1) / ranks
    return {
        "precision_at_1": hits[:, 0].mean().item(),
        "r_precision": ((hits * within_r).sum(1) / r).mean().item(),
        "map_at_r": ((precision * hits * within_r).sum(1) / r).mean().item(),
    }


def knn_accuracy(train_emb: Tensor, train_labels: Tensor, test_emb: Tensor,
                 test_labels: Tensor, k: int = KNN_K) -> float:
    """k-NN majority vote from train to test (ties to the smallest label, as scikit-learn);
    NaN when no test class occurs in train (class-disjoint splits)."""
    if not torch.isin(test_labels, train_labels).any():
        return math.nan
    votes = train_labels[_nearest(test_emb, train_emb, k, exclude_self=False)]
    classes, index = torch.unique(votes, return_inverse=True)
    counts = torch.zeros(len(votes), len(classes), device=votes.device).scatter_add_(
        1, index, torch.ones_like(index, dtype=torch.float))
    predicted = classes[counts.argmax(1)]  # argmax returns the first (smallest) class on ties
    return (predicted == test_labels).double().mean().item()


def retrieval_metrics(test_emb: Tensor, test_labels: Tensor, train_emb: Tensor | None = None,
                      train_labels: Tensor | None = None) -> dict[str, float]:
    """recall_at_1/5/10, precision_at_1, r_precision, map_at_r (Musgrave et al. 2020, k = max
    class count) on the test set against itself, and knn_acc (5-NN, train → test)."""
    z = F.normalize(test_emb.detach().float(), dim=1)
    if not torch.isfinite(z).all():
        # An overflowing model (finite train loss, non-finite test embeddings): no ranking.
        return dict.fromkeys(REPORTERS["retrieval"].columns, math.nan)
    largest_class = int(torch.unique(test_labels, return_counts=True)[1].max()) - 1
    hits = _ranked_hits(z, test_labels, max(*RECALL_KS, largest_class))
    out = {**recall_at_k(z, test_labels, hits=hits), **map_at_r(test_labels, hits)}
    train_z = None if train_emb is None else F.normalize(train_emb.detach().float(), dim=1)
    out["knn_acc"] = (math.nan if train_z is None or train_labels is None
                      or not torch.isfinite(train_z).all()
                      else knn_accuracy(train_z, train_labels, z, test_labels))
    return out


class RetrievalReporter(Reporter):
    """`retrieval_metrics` of the test split, the kNN classifier fitted on the train subset."""

    def on_eval(self, ctx: EvalContext) -> dict[str, float]:
        return retrieval_metrics(ctx.test_emb, ctx.test_labels, ctx.train_emb, ctx.train_labels)
