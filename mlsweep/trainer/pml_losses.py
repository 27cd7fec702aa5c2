"""The losses taken from pytorch-metric-learning, and the miners that feed them.

A module of their own so that a trial of the other losses never imports that library (about
a second of a trial worker's start-up): the catalog loads a loss's builder only when a trial
uses it.
"""

from __future__ import annotations

from typing import Any

import torch
from pytorch_metric_learning import losses as pml_losses
from pytorch_metric_learning import miners as pml_miners
from pytorch_metric_learning.utils import loss_and_miner_utils as lmu
from torch import Tensor, nn

from mlsweep.catalog import LOSSES, TrialConfig
from mlsweep.trainer.losses import LossOutput, Triplets, random_triplets


def mine(miner: str, embeddings: Tensor, labels: Tensor, margin: float,
         generator: torch.Generator) -> Triplets:
    """Triplets (anchor, positive, negative) a batch forms under `miner`."""
    if miner == "all":
        return lmu.get_all_triplets_indices(labels)
    if miner == "random":
        return random_triplets(labels, generator)
    hard = pml_miners.TripletMarginMiner(margin=margin, type_of_triplets=miner)
    return hard(embeddings.detach(), labels)


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


def _pml_output(pml: pml_losses.BaseMetricLossFunction, emb: Tensor, labels: Tensor,
                indices: Any) -> LossOutput:
    loss_dict = pml.compute_loss(emb, labels, indices, emb, labels)
    loss = pml.reducer(loss_dict, emb, labels)
    terms = [part["losses"].detach().reshape(-1) for part in loss_dict.values()
             if torch.is_tensor(part["losses"]) and part["reduction_type"] != "already_reduced"]
    return LossOutput(loss, torch.cat(terms) if terms else emb.new_zeros(0))


# Builders (mlsweep.catalog.losses names them), as in mlsweep.trainer.losses.


def npair(c: TrialConfig, k: int, d: int) -> nn.Module:
    return PMLLoss(pml_losses.NPairsLoss())


def infonce(c: TrialConfig, k: int, d: int) -> nn.Module:
    return PMLLoss(pml_losses.NTXentLoss(**c.loss_params))


def supcon(c: TrialConfig, k: int, d: int) -> nn.Module:
    return PMLLoss(pml_losses.SupConLoss(**c.loss_params))


def arcface(c: TrialConfig, k: int, d: int) -> nn.Module:
    params = c.loss_params
    return PMLLoss(pml_losses.ArcFaceLoss(k, d, margin=params["margin_deg"], scale=params["scale"]))


def multi_similarity(c: TrialConfig, k: int, d: int) -> nn.Module:
    return PMLLoss(pml_losses.MultiSimilarityLoss(**c.loss_params), c.miner,
                   LOSSES["multi_similarity"].miner_margin)


def proxy_anchor(c: TrialConfig, k: int, d: int) -> nn.Module:
    return PMLLoss(pml_losses.ProxyAnchorLoss(k, d, **c.loss_params))
