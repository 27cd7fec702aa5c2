"""The catalog as text: the tables of docs/reference.md and the component lists of help screens.

docs/reference.md is generated from here (`python -m mlsweep.catalog.describe > docs/reference.md`)
and a test keeps it equal, so the documented settings, components, metrics and columns are the
ones the code has.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from mlsweep.catalog.datasets import DATASETS
from mlsweep.catalog.losses import LOSSES
from mlsweep.catalog.metrics import METRICS
from mlsweep.catalog.miners import MINERS
from mlsweep.catalog.models import MODELS
from mlsweep.catalog.reporters import REPORTERS
from mlsweep.catalog.settings import SETTINGS
from mlsweep.catalog.tables import IDENTITY, OWN


def _table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell).replace("|", "\\|") for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def _code(value: Any) -> str:
    return f"`{value!r}`" if not isinstance(value, str) else f"`{value}`"


def components_help() -> str:
    """One line per loss, data set, model, miner and reporter: what `plan --help` lists."""
    sections = [("Losses", {n: i.doc for n, i in LOSSES.items()}),
                ("Data sets", {n: i.doc for n, i in DATASETS.items()}),
                ("Models", {n: i.doc for n, i in MODELS.items()}),
                ("Miners", MINERS),
                ("Diagnostics", {n: i.doc for n, i in REPORTERS.items()})]
    return "\n\n".join(f"{title} — " + "; ".join(f"{name}: {doc}" for name, doc in docs.items())
                       for title, docs in sections)


def reference_markdown() -> str:
    """docs/reference.md: every table of the catalog."""
    parts = [
        "# Reference (generated from mlsweep/catalog; do not edit by hand)",
        "Regenerate with `python -m mlsweep.catalog.describe > docs/reference.md`.",
        "## Trainer settings",
        "Set under `parameters:` in a sweep file, with `--set KEY=VALUE` on `mlsweep train`, or as "
        "keys of `run_trial`'s config. *In id*: whether the setting enters the trial id (execution "
        "details do not).",
        _table(["setting", "default", "type", "in id", "meaning"],
               [(f"`{n}`", _code(s.default), s.column, "yes" if s.sets_numbers else "no", s.doc)
                for n, s in SETTINGS.items()]),
        "## Losses",
        "*Reads*: the loss-dependent settings it uses (the others are dropped from its trials). "
        "*Parameters*: `loss_params.<loss>` keys with their defaults.",
        _table(["loss", "reads", "parameters", "learnt parameters", "builder", "meaning"],
               [(f"`{n}`", ", ".join(sorted(i.uses)) or "-",
                 ", ".join(f"{k}={v}" for k, v in i.params.items()) or "-",
                 "yes" if i.has_parameters else "no", f"`{i.builder}`", i.doc)
                for n, i in LOSSES.items()]),
        "## Data sets",
        _table(["data set", "default model", "default split", "images", "augment by default",
                "parameters", "loader", "meaning"],
               [(f"`{n}`", i.default_model, i.default_split, "yes" if i.image else "no",
                 "yes" if i.colour else "no", ", ".join(f"{k}={v}" for k, v in i.params.items()) or "-",
                 f"`{i.loader}`", i.doc) for n, i in DATASETS.items()]),
        "## Models",
        _table(["model", "ImageNet weights", "builder", "meaning"],
               [(f"`{n}`", "yes" if i.imagenet else "no", f"`{i.builder}`", i.doc)
                for n, i in MODELS.items()]),
        "## Miners",
        _table(["miner", "meaning"], [(f"`{n}`", doc) for n, doc in MINERS.items()]),
        "## Diagnostics (reporters)",
        _table(["reporter", "columns", "implementation", "meaning"],
               [(f"`{n}`", ", ".join(i.columns), f"`{i.impl}`", i.doc) for n, i in REPORTERS.items()]),
        "## Metrics (epochs table)",
        "*Comparable*: whether `analyze` compares losses on it. *Better*: the better direction, "
        "where there is one (variance and greediness describe, they do not rank).",
        _table(["metric", "reporter", "recorded", "comparable", "better", "meaning"],
               [(f"`{n}`", m.reporter or "every trial", m.when, "yes" if m.comparable else "no",
                 m.better or "-", m.doc) for n, m in METRICS.items()]),
        "## Columns of the results tables",
        "Every file of a table has exactly its columns with these types, in this order (absent "
        "values are typed nulls). *json* columns hold JSON text. Every table starts with the "
        "identity columns: the trial's id, the sweep's name and the trial's resolved config.",
        "### Identity columns (every table)",
        _table(["column", "type"], [(f"`{c}`", t) for c, t in IDENTITY.items()]),
        *(f"### `results/{table}/`, after the identity columns\n\n"
          + _table(["column", "type"], [(f"`{c}`", t) for c, t in columns.items()])
          for table, columns in OWN.items()),
    ]
    return "\n\n".join(parts) + "\n"


if __name__ == "__main__":
    print(reference_markdown(), end="")
