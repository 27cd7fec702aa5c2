"""How greedily a loss optimises: active terms, gradient sizes, and how fast the loss falls."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch

from mlsweep.diagnostics.base import Reporter, StepContext
from mlsweep.trainer import registry

ACTIVE_THRESHOLD = 1e-6


# Step values stay 0-d tensors on the trial's device: the loop turns a whole epoch of them
# into numbers at once, so a GPU is not synchronised three times per step.


def active_ratio(terms: torch.Tensor) -> torch.Tensor:
    """Share of loss terms (pairs, triplets, anchors) with value > 1e-6; NaN when none formed."""
    if not terms.numel():
        return torch.tensor(math.nan, device=terms.device)
    return (terms > ACTIVE_THRESHOLD).float().mean()


def grad_norm(parameters: Sequence[torch.nn.Parameter]) -> torch.Tensor:
    """Global L2 norm of all parameter gradients (what clip_grad_norm_ reports), before clipping."""
    grads = [p.grad.detach() for p in parameters if p.grad is not None]
    if not grads:
        return torch.tensor(0.0)
    return torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads)))


def emb_grad_norm(embeddings: torch.Tensor) -> torch.Tensor:
    """Mean over the batch of ‖∂L/∂z_i‖."""
    if embeddings.grad is None:
        return torch.tensor(0.0)
    return embeddings.grad.detach().norm(dim=1).mean()


def loss_decay(train_loss: Sequence[float]) -> dict[str, float | None]:
    """First epochs (1-based) whose loss is ≤ 50% / 10% of epoch 1's (None if never), and the
    slope of log(train_loss) over epochs (least squares; NaN when undefined)."""
    losses = np.asarray(train_loss, dtype=float)

    def first_below(share: float) -> int | None:
        if not len(losses):
            return None
        hits = np.nonzero(losses <= share * losses[0])[0]
        return int(hits[0]) + 1 if len(hits) else None

    positive = np.isfinite(losses) & (losses > 0)
    slope = (float(np.polyfit(np.nonzero(positive)[0] + 1.0, np.log(losses[positive]), 1)[0])
             if positive.sum() >= 2 else math.nan)
    return {"loss_half_epoch": first_below(0.5), "loss_tenth_epoch": first_below(0.1),
            "loss_decay_rate": slope}


class GreedinessReporter(Reporter):
    name = "greediness"
    step_columns = registry.DIAGNOSTICS["greediness"]

    def on_step(self, ctx: StepContext) -> dict[str, torch.Tensor | float]:
        params = [*ctx.model.parameters(), *ctx.loss_module.parameters()]
        return {
            "active_ratio": active_ratio(ctx.terms),
            "grad_norm": grad_norm(params),
            "emb_grad_norm": emb_grad_norm(ctx.embeddings),
            "n_terms": float(ctx.terms.numel()),
        }
