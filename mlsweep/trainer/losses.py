"""Metric-learning losses and miners; every loss returns its scalar and its unreduced terms.

The unreduced terms (one per pair, triplet or anchor, as the loss forms them) feed the
greediness diagnostics: the share of terms above 1e-6 is the active ratio.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from pytorch_metric_learning import losses as pml_losses
from pytorch_metric_learning import miners as pml_miners
from pytorch_metric_learning.reducers import MeanReducer
from pytorch_metric_learning.utils import loss_and_miner_utils as lmu
from torch import Tensor, nn

from mlsweep.catalog import LOSSES, load

Triplets = tuple[Tensor, Tensor, Tensor]


class LossOutput(NamedTuple):
    loss: Tensor  # scalar the optimiser minimises
    terms: Tensor  # 1-D unreduced terms, for the active ratio


# --------------------------------------------------------------------------- miners


def random_triplets(labels: Tensor, generator: torch.Generator) -> Triplets:
    """One random positive and one random negative per anchor (the seed paper's protocol).

    Anchors without an in-batch positive or negative are skipped. Works on the batch sorted
    by label, where each class is one run: the r-th other member of an anchor's class is a
    position in its run (skipping the anchor), the r-th sample of another class a position
    outside it. Two uniform draws per anchor and O(batch) work: on small models the miner
    was the costliest part of a step when it drew a number per pair.
    """
    n = len(labels)
    order = torch.argsort(labels, stable=True)
    sorted_labels = labels[order]
    start = torch.searchsorted(sorted_labels, labels)  # where each sample's class run begins
    count = torch.searchsorted(sorted_labels, labels, right=True) - start
    position = torch.empty_like(order)
    position[order] = torch.arange(n, device=labels.device)
    anchors = torch.nonzero((count >= 2) & (count < n)).squeeze(1)
    start, count = start[anchors], count[anchors]
    u = torch.rand((2, len(anchors)), generator=generator, device=generator.device).to(labels.device)
    r_pos = torch.minimum((u[0] * (count - 1)).long(), count - 2)
    r_pos += r_pos >= position[anchors] - start  # step over the anchor itself
    r_neg = torch.minimum((u[1] * (n - count)).long(), n - count - 1)
    r_neg += count * (r_neg >= start)  # step over the anchor's class run
    return anchors, order[start + r_pos], order[r_neg]


def mine(miner: str, embeddings: Tensor, labels: Tensor, margin: float,
         generator: torch.Generator) -> Triplets:
    """Triplets (anchor, positive, negative) a batch forms under `miner`."""
    if miner == "all":
        return lmu.get_all_triplets_indices(labels)
    if miner == "random":
        return random_triplets(labels, generator)
    hard = pml_miners.TripletMarginMiner(margin=margin, type_of_triplets=miner)
    return hard(embeddings.detach(), labels)


def triplets_to_pairs(triplets: Triplets, batch_size: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """(a, p) positive pairs and (a, n) negative pairs of a triplet set, deduplicated and in
    lexicographic order (a mark in a [batch, batch] grid, then its nonzero entries)."""
    anchor, positive, negative = triplets

    def unique_pairs(a: Tensor, b: Tensor) -> tuple[Tensor, Tensor]:
        grid = torch.zeros(batch_size, batch_size, dtype=torch.bool, device=a.device)
        grid[a, b] = True
        return grid.nonzero(as_tuple=True)

    return (*unique_pairs(anchor, positive), *unique_pairs(anchor, negative))


# --------------------------------------------------------------------------- losses


class ContrastiveLoss(nn.Module):
    """Hadsell et al. (2006), the seed paper's squared form, averaged over all pairs:

        L = mean over pairs of  y·d² + (1−y)·max(0, m − d)²,   d = ‖z_i − z_j‖

    with y = 1 for a positive pair. Pairs come from the miner's triplets, or every in-batch
    pair for the `all` miner.
    """

    def __init__(self, margin: float, miner: str) -> None:
        super().__init__()
        self.margin, self.miner = margin, miner

    def forward(self, emb: Tensor, labels: Tensor, generator: torch.Generator) -> LossOutput:
        if self.miner == "all":
            a1, p, a2, n = lmu.get_all_pairs_indices(labels)
        else:
            a1, p, a2, n = triplets_to_pairs(mine(self.miner, emb, labels, self.margin, generator),
                                             len(labels))
        d_pos = (emb[a1] - emb[p]).norm(dim=1)
        d_neg = (emb[a2] - emb[n]).norm(dim=1)
        terms = torch.cat([d_pos.pow(2), F.relu(self.margin - d_neg).pow(2)])
        return LossOutput(_mean(terms, emb), terms.detach())


class TripletLoss(nn.Module):
    """max(0, d_ap − d_an + m) per mined triplet, averaged over all triplets (zeros included,
    as in the seed paper; pytorch-metric-learning's default would average the non-zero ones)."""

    def __init__(self, margin: float, miner: str) -> None:
        super().__init__()
        self.margin, self.miner = margin, miner
        self.pml = pml_losses.TripletMarginLoss(margin=margin, reducer=MeanReducer())

    def forward(self, emb: Tensor, labels: Tensor, generator: torch.Generator) -> LossOutput:
        triplets = mine(self.miner, emb, labels, self.margin, generator)
        return _pml_output(self.pml, emb, labels, triplets)


class CenterContrastiveLoss(nn.Module):
    """Center contrastive loss (Cai et al. 2023, arXiv 2308.00458), as read from the paper:
    a bank of class centres c_k, learnt with the network, against which each sample is
    contrasted, so no pair mining is needed:

        L_i = −log( exp(cos(z_i, c_{y_i}) / τ) / Σ_k exp(cos(z_i, c_k) / τ) )

    The positive centre pulls the sample in (less intra-class variation), all other centres
    push it away (more inter-class separation); one term per sample.
    """

    def __init__(self, num_classes: int, embedding_dim: int, temperature: float) -> None:
        super().__init__()
        self.temperature = temperature
        self.centres = nn.Parameter(torch.randn(num_classes, embedding_dim) / math.sqrt(embedding_dim))

    def forward(self, emb: Tensor, labels: Tensor, generator: torch.Generator) -> LossOutput:
        logits = F.normalize(emb, dim=1) @ F.normalize(self.centres, dim=1).T / self.temperature
        terms = F.cross_entropy(logits, labels, reduction="none")
        return LossOutput(terms.mean(), terms.detach())


class PMLLoss(nn.Module):
    """A pytorch-metric-learning loss, optionally fed by a miner, with its terms exposed."""

    def __init__(self, pml: pml_losses.BaseMetricLossFunction, miner: str | None = None,
                 margin: float = 0.0) -> None:
        super().__init__()
        self.pml, self.miner, self.margin = pml, miner, margin

    def forward(self, emb: Tensor, labels: Tensor, generator: torch.Generator) -> LossOutput:
        indices = (None if self.miner in (None, "all")
                   else mine(self.miner, emb, labels, self.margin, generator))
        return _pml_output(self.pml, emb, labels, indices)


def _mean(terms: Tensor, emb: Tensor) -> Tensor:
    """Mean of the terms; a batch that forms none gives a zero loss that still has a graph."""
    return terms.mean() if terms.numel() else emb.sum() * 0.0


def _pml_output(pml: pml_losses.BaseMetricLossFunction, emb: Tensor, labels: Tensor,
                indices: Any) -> LossOutput:
    loss_dict = pml.compute_loss(emb, labels, indices, emb, labels)
    loss = pml.reducer(loss_dict, emb, labels)
    terms = [part["losses"].detach().reshape(-1) for part in loss_dict.values()
             if torch.is_tensor(part["losses"]) and part["reduction_type"] != "already_reduced"]
    return LossOutput(loss, torch.cat(terms) if terms else emb.new_zeros(0))


# Builders, one per catalog entry (mlsweep.catalog.losses names them): the trial's resolved
# config, the number of train classes and the embedding size in, the loss module out.


def contrastive(c: Mapping[str, Any], k: int, d: int) -> nn.Module:
    return ContrastiveLoss(c["margin"], c["miner"])


def triplet(c: Mapping[str, Any], k: int, d: int) -> nn.Module:
    return TripletLoss(c["margin"], c["miner"])


def npair(c: Mapping[str, Any], k: int, d: int) -> nn.Module:
    return PMLLoss(pml_losses.NPairsLoss())


def infonce(c: Mapping[str, Any], k: int, d: int) -> nn.Module:
    return PMLLoss(pml_losses.NTXentLoss(**c["loss_params"]))


def supcon(c: Mapping[str, Any], k: int, d: int) -> nn.Module:
    return PMLLoss(pml_losses.SupConLoss(**c["loss_params"]))


def arcface(c: Mapping[str, Any], k: int, d: int) -> nn.Module:
    params = c["loss_params"]
    return PMLLoss(pml_losses.ArcFaceLoss(k, d, margin=params["margin_deg"], scale=params["scale"]))


def ccl(c: Mapping[str, Any], k: int, d: int) -> nn.Module:
    return CenterContrastiveLoss(k, d, **c["loss_params"])


def multi_similarity(c: Mapping[str, Any], k: int, d: int) -> nn.Module:
    return PMLLoss(pml_losses.MultiSimilarityLoss(**c["loss_params"]), c["miner"],
                   LOSSES["multi_similarity"].miner_margin)


def proxy_anchor(c: Mapping[str, Any], k: int, d: int) -> nn.Module:
    return PMLLoss(pml_losses.ProxyAnchorLoss(k, d, **c["loss_params"]))


def build_loss(config: Mapping[str, Any], num_classes: int, embedding_dim: int) -> nn.Module:
    """The trial's loss module; its parameters (proxies, centres) join the optimiser."""
    return load(LOSSES[config["loss"]].builder)(config, num_classes, embedding_dim)
