"""The trainer's fused optimisers against torch.optim's own (`fused=True`): the same parameters
bit for bit at every step, a parameter without a gradient left alone, and checkpoints (ours, and
torch.optim's of trials checkpointed before) that resume exactly."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from conftest import ROOT

from mlsweep.trainer.optimizers import FusedOptimizer

SETTINGS = {"adam": (torch.optim.Adam, {}), "adamw": (torch.optim.AdamW, {}),
            "sgd": (torch.optim.SGD, {"momentum": 0.9})}


def _params(seed: int) -> list[torch.nn.Parameter]:
    g = torch.Generator().manual_seed(seed)
    return [torch.nn.Parameter(torch.randn(shape, generator=g)) for shape in ((3, 5), (5,), (2, 4, 4))]


def _grads(params: list[torch.nn.Parameter], step: int, none_at: tuple[int, ...] = (1, 3)) -> None:
    """Gradients of step `step`; the last parameter gets none at the steps `none_at`."""
    g = torch.Generator().manual_seed(100 + step)
    for i, p in enumerate(params):
        grad = torch.randn(p.shape, generator=g)
        p.grad = None if i == len(params) - 1 and step in none_at else grad


def _torch(name: str, params: list[torch.nn.Parameter], weight_decay: float) -> torch.optim.Optimizer:
    cls, extra = SETTINGS[name]
    return cls(params, lr=0.01, weight_decay=weight_decay, fused=True, **extra)


@pytest.mark.parametrize("name", SETTINGS)
@pytest.mark.parametrize("weight_decay", [0.0, 0.05])
def test_every_step_equals_torch_optims_fused_step_bit_for_bit(name: str, weight_decay: float) -> None:
    ours_p, theirs_p = _params(0), _params(0)
    ours, theirs = FusedOptimizer(name, ours_p, 0.01, weight_decay), _torch(name, theirs_p, weight_decay)
    for step in range(6):
        for params, optimizer in ((ours_p, ours), (theirs_p, theirs)):
            optimizer.zero_grad(set_to_none=True)
            _grads(params, step)
            optimizer.step()
        for a, b in zip(ours_p, theirs_p, strict=True):
            assert torch.equal(a, b), (name, step)
    assert not torch.equal(ours_p[0], _params(0)[0])  # it did move


@pytest.mark.parametrize("name", SETTINGS)
def test_a_parameter_whose_first_gradient_comes_late_starts_then_as_if_alone(name: str) -> None:
    """torch's fused SGD refuses this case (its kernel gets no momentum buffer for it)."""
    params = _params(2)
    late = torch.nn.Parameter(params[-1].detach().clone())
    together, alone = FusedOptimizer(name, params, 0.01, 0.01), FusedOptimizer(name, [late], 0.01, 0.01)
    for step in range(5):
        together.zero_grad()
        _grads(params, step, none_at=(0, 1))
        together.step()
        if step >= 2:
            late.grad = params[-1].grad.clone()
            alone.step()
    assert torch.equal(params[-1], late) and not torch.equal(late, _params(2)[-1])


@pytest.mark.parametrize("name", SETTINGS)
def test_a_checkpoint_of_ours_or_of_torch_optim_resumes_as_if_never_stopped(name: str) -> None:
    ref_p = _params(1)
    ref = FusedOptimizer(name, ref_p, 0.01, 0.01)
    runs = []
    for save_with in ("torch", "ours"):
        params = _params(1)
        first = (FusedOptimizer(name, params, 0.01, 0.01) if save_with == "ours"
                 else _torch(name, params, 0.01))
        for step in range(3):
            first.zero_grad()
            _grads(params, step)
            first.step()
        saved = first.state_dict()
        resumed = [torch.nn.Parameter(p.detach().clone()) for p in params]
        second = FusedOptimizer(name, resumed, 0.01, 0.01)
        second.load_state_dict(saved)
        for step in range(3, 6):
            second.zero_grad()
            _grads(resumed, step)
            second.step()
        runs.append(resumed)
    for step in range(6):
        ref.zero_grad()
        _grads(ref_p, step)
        ref.step()
    for resumed in runs:
        for a, b in zip(resumed, ref_p, strict=True):
            assert torch.equal(a, b)


def test_a_trial_imports_neither_torchs_compiler_nor_scikit_learn() -> None:
    """What the fused optimisers and the trainer's own split and digits reader are for: seconds
    of every trial worker's start."""
    code = ("import sys; from mlsweep.trainer.loop import run_trial; "
            "run_trial({'dataset': 'digits', 'epochs': 1, 'loss': 'triplet'}); "
            "run_trial({'dataset': 'synthetic', 'epochs': 1, 'optimizer': 'sgd'}); "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('sklearn', 'scipy', 'pytorch_metric_learning', 'torchvision') or m == 'torch._dynamo'))")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                          timeout=300, check=True)
    assert done.stdout.splitlines()[-1] == "[]"
