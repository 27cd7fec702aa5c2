"""The losses: one entry each, with what it reads and a pointer to its builder.

A new loss is one builder function (`build(config, num_classes, embedding_dim) -> nn.Module`
returning a `LossOutput`) plus one entry here; the contract tests build every entry.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# Settings that only some losses read; expansion drops them for the others.
LOSS_DEPENDENT_SETTINGS = ("margin", "miner")


@dataclass(frozen=True)
class LossInfo:
    """A loss: which per-trial settings it reads, its own parameters with defaults, its builder."""

    name: str
    doc: str
    builder: str  # "module:function", see catalog.lazy
    uses: frozenset[str] = frozenset()  # subset of LOSS_DEPENDENT_SETTINGS
    params: dict[str, Any] = field(default_factory=dict)  # `loss_params.<name>` defaults
    has_parameters: bool = False  # proxies / class centres optimised with the model
    miner_margin: float = 0.0  # margin its miner uses when the loss itself has none


_B = "mlsweep.trainer.losses:"
_P = "mlsweep.trainer.pml_losses:"

LOSSES: dict[str, LossInfo] = {
    info.name: info
    for info in [
        LossInfo("contrastive", "Hadsell et al.: y*d^2 + (1-y)*max(0, m-d)^2 per pair",
                 _B + "contrastive", frozenset({"margin", "miner"})),
        LossInfo("triplet", "max(0, d_ap - d_an + m) per triplet", _B + "triplet",
                 frozenset({"margin", "miner"})),
        LossInfo("npair", "N-pair loss (Sohn 2016)", _P + "npair"),
        LossInfo("infonce", "InfoNCE / NT-Xent over in-batch positives", _P + "infonce",
                 params={"temperature": 0.1}),
        LossInfo("supcon", "supervised contrastive loss", _P + "supcon", params={"temperature": 0.1}),
        LossInfo("arcface", "additive angular margin classifier", _P + "arcface",
                 params={"margin_deg": 28.6, "scale": 64.0}, has_parameters=True),
        LossInfo("ccl", "center contrastive loss: samples against a learnt class-centre bank",
                 _B + "ccl", params={"temperature": 0.1}, has_parameters=True),
        LossInfo("multi_similarity", "multi-similarity loss", _P + "multi_similarity",
                 frozenset({"miner"}), params={"alpha": 2.0, "beta": 50.0, "base": 0.5},
                 miner_margin=0.1),
        LossInfo("proxy_anchor", "proxy-anchor loss", _P + "proxy_anchor",
                 params={"margin": 0.1, "alpha": 32.0}, has_parameters=True),
    ]
}
