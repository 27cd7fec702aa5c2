"""The loss of a pack: batched for contrastive and triplet, member by member for the others.

Losses with parameters of their own (ArcFace's class weights, proxy-anchor's proxies, CCL's
centres) keep them per member, stacked [P, ...] like the network's so that one optimiser
steps them all; each member's loss runs on its own slice (torch.func.functional_call), built
from its own config (its temperature, scale, ...), so its value is the one it has alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn
from torch.func import functional_call

from mlsweep.catalog import TrialConfig
from mlsweep.trainer.margin_losses import MarginLoss, PackedLossOutput


class MemberwiseLoss(nn.Module):
    """Each member's solo loss module on its slice of the embeddings and stacked parameters."""

    def __init__(self, modules: Sequence[nn.Module]) -> None:
        super().__init__()
        self.modules_ = list(modules)  # not registered: their parameters live stacked below
        self.names = [name for name, _ in modules[0].named_parameters()]
        self.stacked = nn.ParameterList(
            nn.Parameter(torch.stack([dict(m.named_parameters())[name].detach() for m in modules]))
            for name in self.names)

    def _apply(self, fn: Any, recurse: bool = True) -> MemberwiseLoss:
        # .to(device) must also move the members' buffers (their parameters are the stacked ones).
        for module in self.modules_:
            module._apply(fn, recurse)
        return super()._apply(fn, recurse)

    def forward(self, emb: Tensor, labels: Tensor, generators: Sequence[torch.Generator],
                ) -> PackedLossOutput:
        losses, terms = [], []
        for i, module in enumerate(self.modules_):
            params = {name: p[i] for name, p in zip(self.names, self.stacked, strict=True)}
            out = functional_call(module, params, (emb[i], labels[i], generators[i]))
            losses.append(out.loss)
            terms.append(out.terms)
        counts = torch.tensor([len(t) for t in terms], device=emb.device)
        return PackedLossOutput(torch.stack(losses), torch.cat(terms), counts)


def build_packed_loss(configs: Sequence[TrialConfig], modules: Sequence[nn.Module],
                      ) -> nn.Module:
    """The pack's loss: `modules` are the members' solo loss modules (built by build_loss in
    each member's seeded order, so their parameters start as they would alone)."""
    first = configs[0]
    if first.loss in ("contrastive", "triplet"):
        return MarginLoss(first.loss, first.miner, [c.margin for c in configs])
    return MemberwiseLoss(modules)

