"""Named claims about two losses, and the claim sets that ship with mlsweep.

A claim says "loss A's metric M is greater (or less) than loss B's", at the final epoch or
averaged over epochs. `mlsweep analyze` tests each claim per block of the sweep; this module
only defines, names and parses them, so a sweep file, a YAML file or Python code can give them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from mlsweep.catalog import LOSSES, METRICS, not_one_of
from mlsweep.errors import UserError

DIRECTIONS = ("greater", "less")
STATS = ("final", "mean")
_KEYS = {"a", "b", "metric", "direction", "stat", "name"}


class ClaimsError(UserError):
    """A claim set that cannot be read; the message is one line for the user."""


@dataclass(frozen=True)
class Claim:
    """Loss `a`'s `metric` is `direction` than loss `b`'s, on `stat` (final epoch or mean)."""

    a: str
    b: str
    metric: str
    direction: str = "greater"
    stat: str = "final"
    name: str = ""

    def __post_init__(self) -> None:
        if self.direction not in DIRECTIONS:
            raise ClaimsError(f"claim direction {self.direction!r}; allowed: greater, less")
        if self.stat not in STATS:
            raise ClaimsError(f"claim stat {self.stat!r}; allowed: final, mean")
        if self.a == self.b:
            raise ClaimsError(f"claim compares loss {self.a!r} with itself")
        for loss in (self.a, self.b):
            if loss not in LOSSES:
                raise ClaimsError(not_one_of(loss, LOSSES, "a loss"))
        if self.metric not in METRICS:
            raise ClaimsError(not_one_of(self.metric, METRICS, "a metric"))
        if not self.name:
            sign = ">" if self.direction == "greater" else "<"
            object.__setattr__(self, "name", f"{self.a} {self.metric} {sign} {self.b} ({self.stat})")


def _paper() -> tuple[Claim, ...]:
    """The seed paper's claims: triplet keeps more spread and retrieves better; contrastive
    makes many small updates (more active terms), triplet fewer, stronger ones."""
    greater = [("intra_var_mean", "final"), ("centroid_dist_mean", "final"),
               ("grad_norm", "mean"), ("recall_at_1", "final"), ("map_at_r", "final")]
    claims = [Claim("triplet", "contrastive", metric, "greater", stat) for metric, stat in greater]
    claims.insert(2, Claim("contrastive", "triplet", "active_ratio", "greater", "mean"))
    return tuple(claims)


CLAIM_SETS: dict[str, tuple[Claim, ...]] = {"paper": _paper()}


def load_claims(spec: str | Path | Sequence[Mapping[str, Any] | Claim]) -> list[Claim]:
    """Claims from a set name (`paper`), a YAML file (a list, or a mapping with `claims:`
    such as a sweep file), or a list of dicts `{a, b, metric, direction, stat, name}`."""
    if isinstance(spec, str | Path):
        return _from_name_or_file(spec)
    if not isinstance(spec, Sequence):
        raise ClaimsError(f"claims must be a set name, a YAML file or a list, not {spec!r}")
    return [_claim(item, i) for i, item in enumerate(spec)]


def _from_name_or_file(spec: str | Path) -> list[Claim]:
    if str(spec) in CLAIM_SETS:
        return list(CLAIM_SETS[str(spec)])
    path = Path(spec)
    if not path.is_file():
        known = ", ".join(CLAIM_SETS)
        raise ClaimsError(f"claims {str(spec)!r} is neither a claim set ({known}) nor a file")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        raise ClaimsError(f"{path}: not valid YAML ({type(error).__name__})") from None
    if isinstance(data, Mapping):
        if "claims" not in data:
            raise ClaimsError(f"{path}: no top-level `claims:` key")
        data = data["claims"]
    if isinstance(data, str) and data not in CLAIM_SETS:
        raise ClaimsError(f"{path}: unknown claim set {data!r}; known: {', '.join(CLAIM_SETS)}")
    try:
        return load_claims(data)
    except ClaimsError as error:
        raise ClaimsError(f"{path}: {error}") from None


def _claim(item: Mapping[str, Any] | Claim, index: int) -> Claim:
    if isinstance(item, Claim):
        return item
    if not isinstance(item, Mapping):
        raise ClaimsError(f"claims[{index}] must be a mapping, not {item!r}")
    unknown = sorted(set(item) - _KEYS)
    missing = sorted({"a", "b", "metric"} - set(item))
    if unknown or missing:
        problem = f"unknown keys {unknown}" if unknown else f"missing keys {missing}"
        raise ClaimsError(f"claims[{index}]: {problem}; allowed: {', '.join(sorted(_KEYS))}")
    try:
        return Claim(**{key: str(value) for key, value in item.items()})
    except ClaimsError as error:
        raise ClaimsError(f"claims[{index}]: {error}") from None
