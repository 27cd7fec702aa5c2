"""The diagnostic reporters a trial runs (`diagnostics:`): one entry each, its columns read off
the metrics table. A new reporter is one `Reporter` subclass plus one entry here and its
columns in metrics.py."""

from __future__ import annotations

from dataclasses import dataclass

from mlsweep.catalog.metrics import METRICS


@dataclass(frozen=True)
class ReporterInfo:
    name: str
    doc: str
    impl: str  # "module:class", a mlsweep.diagnostics.base.Reporter subclass

    @property
    def columns(self) -> tuple[str, ...]:
        """The epoch columns it contributes."""
        return tuple(name for name, m in METRICS.items() if m.reporter == self.name)


_D = "mlsweep.diagnostics."

REPORTERS: dict[str, ReporterInfo] = {
    info.name: info
    for info in [
        ReporterInfo("variance", "intra-/inter-class variance of the test split and a train subset",
                     _D + "variance:VarianceReporter"),
        ReporterInfo("greediness", "active ratio of terms and gradient norms, per step",
                     _D + "greediness:GreedinessReporter"),
        ReporterInfo("retrieval", "Recall@k, MAP@R, R-precision, P@1 and kNN accuracy",
                     _D + "retrieval:RetrievalReporter"),
    ]
}
