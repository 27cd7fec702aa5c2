"""The reporter interface the training loop calls: per step (after backward, before the
optimiser step) and per evaluation (on embeddings computed once and shared by all reporters)."""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor, nn

from mlsweep.catalog import REPORTERS, load


@dataclass
class StepContext:
    """What backward already computed for one batch of a pack (or of one trial).

    A pack of P members has embeddings [P, B, D], its terms one member's after another with
    `counts` [P] of them each, and parameters stacked with a leading member dimension. Without
    `counts` it is one trial: embeddings [B, D], its own parameters.
    """

    loss: Tensor
    terms: Tensor  # the loss's unreduced terms
    embeddings: Tensor  # the batch's embeddings, with .grad = dL/dz
    model: nn.Module
    loss_module: nn.Module
    counts: Tensor | None = None

    @property
    def members(self) -> int:
        return 1 if self.counts is None else len(self.counts)


@dataclass
class EvalContext:
    """L2-normalised embeddings of the test split and of the fixed train subset."""

    test_emb: Tensor
    test_labels: Tensor
    train_emb: Tensor
    train_labels: Tensor


class Reporter:
    """A diagnostic; subclasses override what they measure. Its catalog entry
    (mlsweep.catalog.reporters) names it, and the metrics table lists its columns."""

    def on_step(self, ctx: StepContext) -> None:
        """Look at one step; keep what `end_epoch` needs (the step's tensors, not numbers)."""

    def end_epoch(self) -> dict[str, list[list[float]]]:
        """Per-step columns of the steps seen since the last call: per member, in step order
        (`columns[name][member][step]`). Computed
        here, over all those steps at once: a GPU is read once per epoch, and a small
        model's step does not pay a handful of tiny tensor operations per diagnostic."""
        return {}

    def on_eval(self, ctx: EvalContext) -> dict[str, float]:
        return {}


def build_reporters(names: list[str]) -> list[Reporter]:
    """The reporters a trial's `diagnostics:` names, through their catalog entries."""
    return [load(REPORTERS[name].impl)() for name in names]
