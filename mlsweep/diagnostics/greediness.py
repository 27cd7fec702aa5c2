"""How greedily a loss optimises: active terms and gradient sizes, per step. (How fast the
loss falls, per trial, is mlsweep.diagnostics.summary.loss_decay.)"""

from __future__ import annotations

import torch
from torch import Tensor

from mlsweep.diagnostics.base import Reporter, StepContext

ACTIVE_THRESHOLD = 1e-6
HELD_LIMIT = 1 << 22  # elements of loss terms and embedding gradients held before reducing


def _segment_sums(values: Tensor, lengths: Tensor) -> Tensor:
    """Sums of consecutive runs of `values` of the given lengths (an empty run sums to 0)."""
    ids = torch.repeat_interleave(torch.arange(len(lengths), device=values.device), lengths)
    return torch.zeros(len(lengths), dtype=values.dtype, device=values.device).index_add_(0, ids, values)


def _stacked(tensors: list[Tensor]) -> Tensor | None:
    """One stacked tensor when all have the same shape (one reduction for many steps)."""
    return torch.stack(tensors) if len({t.shape for t in tensors}) == 1 else None


class GreedinessReporter(Reporter):
    """active_ratio (terms > 1e-6 over all terms; NaN when a step formed none), grad_norm
    (global L2 norm of the parameter gradients, before any clipping), emb_grad_norm (mean over
    the batch of ‖∂L/∂z_i‖) and n_terms, per step and member: a member's values are over its
    own terms, its own slice of every (stacked) parameter and its own embeddings.

    A step only keeps references to its terms, its embedding gradient and the per-member
    gradient norms of each parameter; the per-step values are computed for many steps at
    once, at the epoch's end or when the held tensors exceed HELD_LIMIT elements.
    """

    def __init__(self) -> None:
        self.parameters: list[torch.nn.Parameter] | None = None  # a trial's are fixed: list them once
        self.terms: list[Tensor] = []
        self.counts: list[Tensor] = []  # [P] terms per member, per held step
        self.emb_grads: list[Tensor] = []  # [P, B, D]
        self.grad_norms: list[Tensor] = []  # [P, parameters with a gradient], per held step
        self.held = 0
        self.reduced: list[Tensor] = []  # [3, steps, P]: active_ratio, grad_norm, emb_grad_norm
        self.n_terms: list[Tensor] = []

    def on_step(self, ctx: StepContext) -> None:
        if self.parameters is None:
            self.parameters = [*ctx.model.parameters(), *ctx.loss_module.parameters()]
        members = ctx.members
        # Gradients and terms carry no graph: no detach needed (each call counts here).
        grads = [p.grad.reshape(members, -1) for p in self.parameters if p.grad is not None]
        self.grad_norms.append(torch.stack([torch.linalg.vector_norm(g, dim=1) for g in grads], dim=1)
                               if grads else ctx.embeddings.new_zeros(members, 0))
        emb_grad = ctx.embeddings.grad
        emb_grad = (ctx.embeddings.new_zeros(members, 1, 1) if emb_grad is None
                    else emb_grad.reshape(members, emb_grad.shape[-2], -1))
        self.emb_grads.append(emb_grad)
        counts = (torch.tensor([ctx.terms.numel()], device=ctx.terms.device) if ctx.counts is None
                  else ctx.counts)
        self.terms.append(ctx.terms)
        self.counts.append(counts)
        self.held += ctx.terms.numel() + emb_grad.numel()
        if self.held > HELD_LIMIT:
            self._reduce()

    def _reduce(self) -> None:
        if not self.terms:
            return
        counts = torch.stack(self.counts)  # [steps, P]
        active = _segment_sums((torch.cat(self.terms) > ACTIVE_THRESHOLD).float(),
                               counts.flatten()).view(counts.shape)
        emb_grads = _stacked(self.emb_grads)
        emb = (torch.stack([g.float().norm(dim=2).sum(1) / g.shape[1] for g in self.emb_grads])
               if emb_grads is None else emb_grads.float().norm(dim=3).sum(2) / emb_grads.shape[2])
        grad_norms = _stacked(self.grad_norms)
        grad = (torch.stack([n.float().pow(2).sum(1).sqrt() for n in self.grad_norms])
                if grad_norms is None else grad_norms.float().pow(2).sum(2).sqrt())
        device = active.device
        self.reduced.append(torch.stack([active / counts.float(), grad.to(device), emb.to(device)]))
        self.n_terms.append(counts)
        self.terms, self.counts, self.emb_grads, self.grad_norms, self.held = [], [], [], [], 0

    def end_epoch(self) -> dict[str, list[list[float]]]:
        self._reduce()
        if not self.reduced:
            return {}
        active, grad, emb = torch.cat(self.reduced, dim=1).transpose(1, 2).double().tolist()
        n_terms = torch.cat(self.n_terms).T.double().tolist()
        self.reduced, self.n_terms = [], []
        return {"active_ratio": active, "grad_norm": grad, "emb_grad_norm": emb, "n_terms": n_terms}
