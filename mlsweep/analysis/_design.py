"""How a sweep's trials form cells, blocks and arms; docs/analysis.md states the rules.

A factor is a config column that varies and describes a condition of the study, not one loss or
one data set. Some factors are set by only some losses (margin: contrastive and triplet; SupCon
has none): those are *arm factors*, and a loss with its values of them is an *arm*
(triplet margin=0.2, triplet margin=0.5, supcon). Every other factor, with the data set, forms a
*block*. Each trial then lies in exactly one block and one arm, so no rank test, summary or
tally sees a trial twice; a margin-free loss is one arm, not a member of every margin block.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations

import pandas as pd

IDS = ("trial_id", "sweep")
NOT_FACTORS = frozenset({*IDS, "seed", "epoch"})


@dataclass(frozen=True)
class Design:
    """The factors of a run (config order, `dataset` first among them), which of them are arm
    factors, and which arm factors each loss sets."""

    factors: list[str]
    arm_factors: list[str]
    set_by: dict[str, frozenset[str]]

    @property
    def blocks(self) -> list[str]:
        """Columns of a block: the data set and the factors every loss sets."""
        return [f for f in self.factors if f not in self.arm_factors]

    @property
    def cells(self) -> list[str]:
        """Columns of a cell (a setting of everything but the seed): the factors and the loss."""
        return [*self.factors, "loss"]

    @property
    def losses(self) -> list[str]:
        return sorted(self.set_by)

    @classmethod
    def of_config(cls, config: pd.DataFrame) -> Design:
        """Read off the completed trials' config. Factors are the config columns that vary,
        except those fixed by the loss (a margin only triplet uses, a loss's own parameters) or
        by the data set (its default model, its own parameters): those describe the loss or the
        data set rather than a condition."""
        varying = [c for c in config.columns if c not in NOT_FACTORS and c not in ("loss", "dataset")
                   and config[c].nunique(dropna=False) > 1]
        fixed_by = [config.groupby(key)[varying].nunique(dropna=False).max()
                    for key in ("loss", "dataset") if key in config]
        factors = [c for c in config.columns
                   if c == "dataset" or (c in varying and all(counts[c] > 1 for counts in fixed_by))]
        return cls.of_cells(config[[*factors, "loss"]])

    @classmethod
    def of_cells(cls, frame: pd.DataFrame) -> Design:
        """From a table whose columns before `loss` (or `metric`) are the factors, such as
        summary.parquet: the report reads the design the analysis used this way."""
        end = "metric" if "metric" in frame else None
        columns = list(frame.columns[: frame.columns.get_loc(end)] if end else frame.columns)
        factors = [c for c in columns if c != "loss"]
        null = frame[factors].isna().groupby(frame["loss"]).mean()
        arm = [f for f in factors if f != "dataset" and null[f].isin([0.0, 1.0]).all()
               and (null[f] == 1).any() and (null[f] == 0).any()]
        set_by = {str(loss): frozenset(f for f in arm if row[f] == 0) for loss, row in null.iterrows()}
        return cls(factors, arm, set_by)

    def arms(self, frame: pd.DataFrame) -> pd.Series:
        """Each row's arm: `triplet margin=0.2`, or `supcon` for a loss that sets no arm factor."""
        label = frame["loss"].astype(str)
        for factor in self.arm_factors:
            value = frame[factor]
            label = label.where(value.isna(), label + f" {factor}=" + value.map(show))
        return label

    def arm_pairs(self, arms: pd.DataFrame) -> list[tuple[str, str]]:
        """Pairs of arms (rows of `arms`: index arm, columns loss and arm factors) that are
        compared: different losses that agree on every arm factor both set. So triplet and
        contrastive meet at each margin, a margin-free loss meets each margin of a margin loss,
        and two margin-free losses meet once."""
        ordered = arms.sort_values(["loss", *self.arm_factors], na_position="first")
        pairs = []
        for a, b in combinations(ordered.index, 2):
            row_a, row_b = ordered.loc[a], ordered.loc[b]
            if row_a["loss"] != row_b["loss"] and all(
                    pd.isna(row_a[f]) or pd.isna(row_b[f]) or row_a[f] == row_b[f]
                    for f in self.arm_factors):
                pairs.append((a, b))
        return pairs

    def shared(self, loss_a: str, loss_b: str) -> list[str]:
        """Arm factors both losses set: comparisons of the two that differ in these use
        disjoint runs; those that agree on them share the runs of one loss."""
        both = self.set_by.get(loss_a, frozenset()) & self.set_by.get(loss_b, frozenset())
        return [f for f in self.arm_factors if f in both]


def show(value: object) -> str:
    """A value in a label: 0.5 and 1 rather than 0.50 and 1.0; missing is ''."""
    if pd.isna(value):
        return ""
    return f"{value:g}" if isinstance(value, float) else str(value)
