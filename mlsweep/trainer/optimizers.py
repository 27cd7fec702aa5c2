"""The trainer's optimisers: Adam, AdamW and SGD with momentum as torch's fused kernels, called
the way torch.optim calls them with `fused=True`, so every update is the same bit for bit.

Why not torch.optim itself: its every step imports torch's compiler (torch._dynamo, ~2 s of
CPU), which a trial never uses; on two cores that was a tenth of a quickstart launch, paid by
each trial worker and each `mlsweep train` (bench/RESULTS.md, fixed cost). Devices without the
fused kernels (anything but CPU and CUDA) keep torch.optim.

The state dict has torch.optim's layout ({"state": {index: {"step", "exp_avg", ...}}}), so the
checkpoints of trials that torch.optim trained resume here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import torch
from torch import nn

BETAS = (0.9, 0.999)  # torch.optim.Adam's defaults, as the trainer always used them
EPS = 1e-8
MOMENTUM = 0.9


class Optimizer(Protocol):
    """What the trainer asks of an optimiser (torch.optim's optimisers have it too)."""

    def zero_grad(self, set_to_none: bool = True) -> None: ...
    def step(self) -> None: ...
    def state_dict(self) -> dict[str, Any]: ...
    def load_state_dict(self, state: dict[str, Any]) -> None: ...


def make_optimizer(name: str, params: list[nn.Parameter], lr: float, weight_decay: float) -> Optimizer:
    """One fused call over all parameters per step: on small models torch's per-tensor update
    loop was a fifth of a step."""
    if all(p.device.type in ("cpu", "cuda") for p in params):
        return FusedOptimizer(name, params, lr, weight_decay)
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=MOMENTUM, weight_decay=weight_decay)
    optimizer = torch.optim.AdamW if name == "adamw" else torch.optim.Adam
    return optimizer(params, lr=lr, weight_decay=weight_decay)


class FusedOptimizer:
    """Adam ("adam", L2 weight decay), AdamW ("adamw", decoupled) or SGD with momentum 0.9
    ("sgd") over a fixed list of parameters. As in torch.optim, a parameter without a gradient
    is left alone and its state starts at its first gradient."""

    def __init__(self, name: str, params: list[nn.Parameter], lr: float, weight_decay: float) -> None:
        self.name, self.params, self.lr, self.weight_decay = name, params, lr, weight_decay
        self.state: dict[int, dict[str, torch.Tensor]] = {}

    def zero_grad(self, set_to_none: bool = True) -> None:
        for p in self.params:
            if set_to_none:
                p.grad = None
            elif p.grad is not None:
                p.grad.zero_()

    @torch.no_grad()
    def step(self) -> None:
        with_grad = [i for i, p in enumerate(self.params) if p.grad is not None]
        groups: dict[tuple[torch.device, torch.dtype], list[int]] = {}
        for i in with_grad:
            groups.setdefault((self.params[i].device, self.params[i].dtype), []).append(i)
        update = self._sgd if self.name == "sgd" else self._adam
        for indices in groups.values():
            update(indices)

    def _adam(self, indices: list[int]) -> None:
        for i in indices:
            if i not in self.state:
                p = self.params[i]
                self.state[i] = {"step": torch.zeros((), dtype=torch.float32, device=p.device),
                                 "exp_avg": torch.zeros_like(p, memory_format=torch.preserve_format),
                                 "exp_avg_sq": torch.zeros_like(p, memory_format=torch.preserve_format)}
        steps = self._states(indices, "step")
        torch._foreach_add_(steps, 1)
        kernel: Callable[..., None] = torch._fused_adamw_ if self.name == "adamw" else torch._fused_adam_
        kernel(self._params(indices), self._grads(indices), self._states(indices, "exp_avg"),
               self._states(indices, "exp_avg_sq"), [], steps, amsgrad=False, lr=self.lr,
               beta1=BETAS[0], beta2=BETAS[1], weight_decay=self.weight_decay, eps=EPS,
               maximize=False, grad_scale=None, found_inf=None)

    def _sgd(self, indices: list[int]) -> None:
        """A parameter's first step starts its momentum from its gradient (the kernel's
        is_first_step), also where its first gradient comes later than the others'."""
        new = [i for i in indices if i not in self.state]
        for i in new:
            self.state[i] = {"momentum_buffer": torch.empty_like(self.params[i].grad)}
        for part, first in (([i for i in indices if i not in new], False), (new, True)):
            if part:
                torch._fused_sgd_(self._params(part), self._grads(part),
                                  self._states(part, "momentum_buffer"), weight_decay=self.weight_decay,
                                  momentum=MOMENTUM, lr=self.lr, dampening=0.0, nesterov=False,
                                  maximize=False, is_first_step=first, grad_scale=None, found_inf=None)

    def _params(self, indices: list[int]) -> list[torch.Tensor]:
        return [self.params[i] for i in indices]

    def _grads(self, indices: list[int]) -> list[torch.Tensor]:
        return [self.params[i].grad for i in indices]

    def _states(self, indices: list[int], key: str) -> list[torch.Tensor]:
        return [self.state[i][key] for i in indices]

    def state_dict(self) -> dict[str, Any]:
        return {"state": {i: dict(s) for i, s in self.state.items()},
                "param_groups": [{"lr": self.lr, "weight_decay": self.weight_decay,
                                  "params": list(range(len(self.params)))}]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Each tensor onto its parameter's device (and dtype, but `step`, which stays float32)."""
        loaded = {}
        for i, saved in state["state"].items():
            p = self.params[int(i)]
            loaded[int(i)] = {k: v.to(p.device, torch.float32 if k == "step" else p.dtype)
                              for k, v in saved.items()}
        self.state = loaded
