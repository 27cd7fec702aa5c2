"""Contrastive and triplet losses with their miners, batched over the members of a pack.

Inputs carry a leading member dimension: embeddings [P, B, D], labels [P, B], one generator
and one margin per member. Every reduction runs over shapes fixed by the batch size alone
(never padded to the pack's largest member), so a member's numbers are the same in any pack.

Definitions (DESIGN.md section 4), per member:
- contrastive: mean over pairs of y·d² + (1−y)·max(0, m − d)², d = ‖z_i − z_j‖ on the
  embeddings as they come; pairs are every ordered in-batch pair for the `all` miner, else the
  (a, p) and (a, n) pairs of the mined triplets, deduplicated.
- triplet: mean over the mined triplets of max(0, d_ap − d_an + m), zeros included, with d
  the Euclidean distance of the re-normalised embeddings (pytorch-metric-learning's
  LpDistance); with `random` mining, of the mined pairs only (not the B x B matrix).
- miners: `all` every valid triplet; `random` one random positive and negative per anchor;
  `semihard` / `hard` pytorch-metric-learning's TripletMarginMiner: the valid triplets with
  d_an − d_ap ≤ m and d_an − d_ap > 0 (semihard) or ≤ 0 (hard), on detached distances.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class PackedLossOutput(NamedTuple):
    loss: Tensor  # [P] per-member scalars
    terms: Tensor  # 1-D, each member's unreduced terms after the previous member's
    counts: Tensor  # [P] terms per member


class RandomTriplets(NamedTuple):
    anchor: Tensor  # [P, B] bool: the sample is an anchor (has a positive and a negative)
    positive: Tensor  # [P, B] index of its positive (meaningless where not an anchor)
    negative: Tensor  # [P, B]


def random_triplets(labels: Tensor, generators: Sequence[torch.Generator]) -> RandomTriplets:
    """One uniformly drawn positive and negative per anchor, per member (the seed paper's
    protocol); anchors without an in-batch positive or negative are skipped.

    Works on each batch sorted by label, where each class is one run: the r-th other member of
    an anchor's class is a position in its run (skipping the anchor), the r-th sample of another
    class a position outside it. Each member draws two uniforms per anchor from its own
    generator, so its triplets are those it would draw alone.
    """
    members, n = labels.shape
    order = torch.argsort(labels, dim=1, stable=True)
    sorted_labels = labels.gather(1, order)
    start = torch.searchsorted(sorted_labels, labels)  # where each sample's class run begins
    count = torch.searchsorted(sorted_labels, labels, right=True) - start
    position = torch.empty_like(order).scatter_(
        1, order, torch.arange(n, device=labels.device).expand(members, n))
    anchor = (count >= 2) & (count < n)
    u = torch.zeros(2, members, n)
    draws = [torch.rand((2, k), generator=g, device=g.device).cpu()
             for g, k in zip(generators, anchor.sum(1).tolist(), strict=True)]
    u[:, anchor.cpu()] = torch.cat(draws, dim=1)
    u = u.to(labels.device)
    r_pos = torch.minimum((u[0] * (count - 1)).long(), count - 2)
    r_pos += r_pos >= position - start  # step over the anchor itself
    r_neg = torch.minimum((u[1] * (n - count)).long(), n - count - 1)
    r_neg += count * (r_neg >= start)  # step over the anchor's class run
    positive = order.gather(1, (start + r_pos).clamp(0, n - 1))
    negative = order.gather(1, r_neg.clamp(0, n - 1))
    return RandomTriplets(anchor, positive, negative)


def valid_triplets(labels: Tensor) -> Tensor:
    """[P, B, B, B] bool: (a, p, n) with p ≠ a of a's class and n of another class."""
    same = labels[:, :, None] == labels[:, None, :]
    positive = same & ~torch.eye(labels.shape[1], dtype=torch.bool, device=labels.device)
    return positive[:, :, :, None] & ~same[:, :, None, :]


def margin_triplets(miner: str, distances: Tensor, labels: Tensor, margins: Tensor) -> Tensor:
    """[P, B, B, B] bool: the valid triplets `all`, `semihard` or `hard` mining keeps."""
    valid = valid_triplets(labels)
    if miner == "all":
        return valid
    d = distances.detach()
    gap = d[:, :, None, :] - d[:, :, :, None]  # d_an − d_ap at [member, a, p, n]
    kept = gap <= margins[:, None, None, None]
    kept &= (gap > 0) if miner == "semihard" else (gap <= 0)
    return valid & kept


def _lp_distances(emb: Tensor) -> Tensor:
    """pytorch-metric-learning's LpDistance: re-normalised embeddings, torch.cdist."""
    z = F.normalize(emb, dim=-1)
    return torch.cdist(z, z)


def _rows(x: Tensor, index: Tensor) -> Tensor:
    """x[p, index[p, i]] for every member p: [P, K, D] from x [P, B, D] and index [P, K]."""
    return x.gather(1, index.unsqueeze(2).expand(-1, -1, x.shape[2]))


def _reduce(dense: Tensor, kept: Tensor) -> PackedLossOutput:
    """Per-member mean of the kept terms of a [P, ...] grid (zero, with a graph, if none)."""
    flat_terms = torch.where(kept, dense, 0.0).flatten(1)
    counts = kept.flatten(1).sum(1)
    loss = flat_terms.sum(1) / counts.clamp(min=1)
    return PackedLossOutput(loss, dense.detach()[kept], counts)


class MarginLoss(nn.Module):
    """Contrastive or triplet loss of a pack, each member with its own margin."""

    def __init__(self, kind: str, miner: str, margins: Sequence[float]) -> None:
        super().__init__()
        if kind not in ("contrastive", "triplet"):
            raise ValueError(f"no batched margin loss {kind!r}")
        self.kind, self.miner = kind, miner
        self.register_buffer("margins", torch.tensor(margins, dtype=torch.float32), persistent=False)

    def forward(self, emb: Tensor, labels: Tensor, generators: Sequence[torch.Generator],
                ) -> PackedLossOutput:
        if self.kind == "triplet":
            return self._triplet(emb, labels, generators)
        return self._contrastive(emb, labels, generators)

    def _triplet(self, emb: Tensor, labels: Tensor, generators: Sequence[torch.Generator],
                 ) -> PackedLossOutput:
        m = self.margins
        if self.miner == "random":
            # Only the mined pairs' distances: B per member instead of the B x B matrix.
            mined = random_triplets(labels, generators)
            z = F.normalize(emb, dim=-1)
            d_ap = (z - _rows(z, mined.positive)).norm(dim=2)
            d_an = (z - _rows(z, mined.negative)).norm(dim=2)
            return _reduce(F.relu(d_ap - d_an + m[:, None]), mined.anchor)
        d = _lp_distances(emb)
        kept = margin_triplets(self.miner, d, labels, m)
        violation = d[:, :, :, None] - d[:, :, None, :] + m[:, None, None, None]
        return _reduce(F.relu(violation), kept)

    def _contrastive(self, emb: Tensor, labels: Tensor, generators: Sequence[torch.Generator],
                     ) -> PackedLossOutput:
        m = self.margins
        if self.miner == "random":
            # One triplet per anchor: its (a, p) and (a, n) pairs are distinct already.
            mined = random_triplets(labels, generators)
            index = torch.stack([mined.positive, mined.negative], dim=1)  # [P, 2, B]
            d = (emb.repeat(1, 2, 1) - _rows(emb, index.flatten(1))).norm(dim=2).unflatten(1, (2, -1))
            terms = torch.stack([d[:, 0].pow(2), F.relu(m[:, None] - d[:, 1]).pow(2)], dim=1)
            return _reduce(terms, mined.anchor.unsqueeze(1).expand(-1, 2, -1))
        d = (emb[:, :, None, :] - emb[:, None, :, :]).norm(dim=3)  # [P, B, B]
        if self.miner == "all":
            same = labels[:, :, None] == labels[:, None, :]
            positive = same & ~torch.eye(labels.shape[1], dtype=torch.bool, device=labels.device)
            pairs = torch.stack([positive, ~same], dim=1)
        else:
            triplets = margin_triplets(self.miner, _lp_distances(emb), labels, m)
            pairs = torch.stack([triplets.any(3), triplets.any(2)], dim=1)  # (a, p), (a, n)
        terms = torch.stack([d.pow(2), F.relu(m[:, None, None] - d).pow(2)], dim=1)
        return _reduce(terms, pairs)
