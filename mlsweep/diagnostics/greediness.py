"""How greedily a loss optimises: active terms and gradient sizes, per step. (How fast the
loss falls, per trial, is mlsweep.diagnostics.summary.loss_decay.)"""

from __future__ import annotations

import torch
from torch import Tensor

from mlsweep.diagnostics.base import Reporter, StepContext

ACTIVE_THRESHOLD = 1e-6
HELD_LIMIT = 1 << 22  # elements of loss terms and embedding gradients held before reducing


def _segment_sums(values: Tensor, lengths: list[int]) -> Tensor:
    """Sums of consecutive runs of `values` of the given lengths (an empty run sums to 0)."""
    ids = torch.repeat_interleave(torch.arange(len(lengths), device=values.device),
                                  torch.tensor(lengths, device=values.device))
    return torch.zeros(len(lengths), dtype=values.dtype, device=values.device).index_add_(0, ids, values)


class GreedinessReporter(Reporter):
    """active_ratio (terms > 1e-6 over all terms; NaN when a step formed none), grad_norm
    (global L2 norm of the parameter gradients, before any clipping), emb_grad_norm (mean over
    the batch of ‖∂L/∂z_i‖) and n_terms, per step.

    A step only keeps references to its terms, its embedding gradient and the per-tensor
    gradient norms (one fused call); the per-step values are computed for many steps at once,
    at the epoch's end or when the held tensors exceed HELD_LIMIT elements.
    """


    def __init__(self) -> None:
        self.parameters: list[torch.nn.Parameter] | None = None  # a trial's are fixed: list them once
        self.terms: list[Tensor] = []
        self.emb_grads: list[Tensor] = []
        self.grad_norms: list[Tensor] = []  # per-tensor norms of every held step
        self.grads_per_step: list[int] = []
        self.held = 0
        self.reduced: list[Tensor] = []  # [3, steps]: active_ratio, grad_norm, emb_grad_norm
        self.n_terms: list[float] = []

    def on_step(self, ctx: StepContext) -> None:
        if self.parameters is None:
            self.parameters = [*ctx.model.parameters(), *ctx.loss_module.parameters()]
        # Gradients and terms carry no graph: no detach needed (each call counts here).
        grads = [p.grad for p in self.parameters if p.grad is not None]
        if grads:
            self.grad_norms += torch._foreach_norm(grads)
        self.grads_per_step.append(len(grads))
        emb_grad = ctx.embeddings.grad
        self.emb_grads.append(emb_grad if emb_grad is not None else ctx.embeddings.new_zeros(1, 1))
        self.terms.append(ctx.terms)
        n_terms = ctx.terms.numel()
        self.n_terms.append(float(n_terms))
        self.held += n_terms + self.emb_grads[-1].numel()
        if self.held > HELD_LIMIT:
            self._reduce()

    def _reduce(self) -> None:
        if not self.terms:
            return
        n_terms = [len(t) for t in self.terms]
        active = _segment_sums((torch.cat(self.terms) > ACTIVE_THRESHOLD).float(), n_terms)
        rows = [len(g) for g in self.emb_grads]
        emb = _segment_sums(torch.cat([g.reshape(len(g), -1).float() for g in self.emb_grads]).norm(dim=1),
                            rows)
        device = active.device
        norms = (torch.stack(self.grad_norms).float().to(device) if self.grad_norms
                 else torch.zeros(0, device=device))
        grad = _segment_sums(norms.pow(2), self.grads_per_step).sqrt()
        counts = torch.tensor(n_terms, dtype=torch.float32, device=device)
        self.reduced.append(torch.stack([active / counts, grad,
                                         emb / torch.tensor(rows, dtype=torch.float32, device=device)]))
        self.terms, self.emb_grads, self.grad_norms, self.grads_per_step, self.held = [], [], [], [], 0

    def end_epoch(self) -> dict[str, list[float]]:
        self._reduce()
        if not self.reduced:
            return {}
        active, grad, emb = torch.cat(self.reduced, dim=1).double().tolist()
        n_terms, self.reduced, self.n_terms = self.n_terms, [], []
        return {"active_ratio": active, "grad_norm": grad, "emb_grad_norm": emb, "n_terms": n_terms}
