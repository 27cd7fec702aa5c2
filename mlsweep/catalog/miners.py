"""The miners: which pairs / triplets a batch forms for the pair and triplet losses."""

from __future__ import annotations

MINERS: dict[str, str] = {
    "all": "every in-batch pair / triplet",
    "random": "one random positive and one random negative per anchor (the seed paper's protocol)",
    "semihard": "semi-hard triplets (d_ap < d_an < d_ap + m)",
    "hard": "hard triplets (d_an < d_ap + m, violating the margin)",
}
