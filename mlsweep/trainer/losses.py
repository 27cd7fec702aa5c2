"""Metric-learning losses; every loss returns its scalar and its unreduced terms.

The unreduced terms (one per pair, triplet or anchor, as the loss forms them) feed the
greediness diagnostics: the share of terms above 1e-6 is the active ratio. The losses taken
from pytorch-metric-learning live in mlsweep.trainer.pml_losses (the catalog loads a builder
only when a trial uses it, and that library takes a second to import).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mlsweep.catalog import LOSSES, TrialConfig, load
from mlsweep.trainer import margin_losses

Triplets = tuple[Tensor, Tensor, Tensor]


class LossOutput(NamedTuple):
    loss: Tensor  # scalar the optimiser minimises
    terms: Tensor  # 1-D unreduced terms, for the active ratio


# --------------------------------------------------------------------------- miners


def random_triplets(labels: Tensor, generator: torch.Generator) -> Triplets:
    """One random positive and one random negative per anchor (the seed paper's protocol),
    as (anchor, positive, negative) index tensors; margin_losses.random_triplets for a pack."""
    mined = margin_losses.random_triplets(labels.unsqueeze(0), [generator])
    anchors = torch.nonzero(mined.anchor[0]).squeeze(1)
    return anchors, mined.positive[0, anchors], mined.negative[0, anchors]


# --------------------------------------------------------------------------- losses


class SoloMarginLoss(nn.Module):
    """Contrastive or triplet loss of one trial: margin_losses.MarginLoss as a pack of one."""

    def __init__(self, kind: str, margin: float, miner: str) -> None:
        super().__init__()
        self.packed = margin_losses.MarginLoss(kind, miner, [margin])

    def forward(self, emb: Tensor, labels: Tensor, generator: torch.Generator) -> LossOutput:
        out = self.packed(emb.unsqueeze(0), labels.unsqueeze(0), [generator])
        return LossOutput(out.loss[0], out.terms)


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


# Builders, one per catalog entry (mlsweep.catalog.losses names them): the trial's resolved
# config, the number of train classes and the embedding size in, the loss module out.


def contrastive(c: TrialConfig, k: int, d: int) -> nn.Module:
    return SoloMarginLoss("contrastive", c.margin, c.miner)


def triplet(c: TrialConfig, k: int, d: int) -> nn.Module:
    return SoloMarginLoss("triplet", c.margin, c.miner)


def ccl(c: TrialConfig, k: int, d: int) -> nn.Module:
    return CenterContrastiveLoss(k, d, **c.loss_params)


def build_loss(config: TrialConfig, num_classes: int, embedding_dim: int) -> nn.Module:
    """The trial's loss module; its parameters (proxies, centres) join the optimiser."""
    return load(LOSSES[config.loss].builder)(config, num_classes, embedding_dim)
