"""Diagnostic reporters (DESIGN.md section 5); adding one is one new file and a line here."""

from mlsweep.diagnostics.base import EvalContext, Reporter, StepContext
from mlsweep.diagnostics.greediness import GreedinessReporter
from mlsweep.diagnostics.retrieval import RetrievalReporter, retrieval_metrics
from mlsweep.diagnostics.variance import VarianceReporter, variance_metrics
from mlsweep.trainer.summary import loss_decay

# Keyed like registry.DIAGNOSTICS, which lists each reporter's columns.
REPORTERS: dict[str, type[Reporter]] = {
    r.name: r for r in (VarianceReporter, GreedinessReporter, RetrievalReporter)
}

__all__ = ["REPORTERS", "EvalContext", "Reporter", "StepContext", "loss_decay",
           "retrieval_metrics", "variance_metrics"]
