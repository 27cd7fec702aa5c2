"""The HTML page: the Vega scripts inlined once, the chart specs packed in one JSON block.

The page's skeleton, style and embedding script are package data (page.html, page.css,
page.js) beside this module.
"""

from __future__ import annotations

import contextlib
import functools
import html
import json
import math
import os
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib import resources
from pathlib import Path
from string import Template
from typing import Any

import altair as alt
import pandas as pd
import vl_convert as vlc

# The bundle's Vega-Lite must be the version Altair writes specs for ("v6.4.1" -> "6.4").
VL_VERSION = alt.SCHEMA_VERSION.lstrip("v").rsplit(".", 1)[0]


@dataclass
class Section:
    """A part of the page: a note on what it shows (or why it is empty), its charts, its HTML."""

    anchor: str
    title: str
    note: str
    charts: dict[str, dict[str, Any]] = field(default_factory=dict)  # PNG file stem -> spec
    body: str = ""


@functools.cache
def _asset(name: str) -> str:
    return resources.files(__package__).joinpath(name).read_text(encoding="utf-8")


@functools.cache
def _vega_bundle() -> str:
    """Vega, Vega-Lite and vega-embed as one script (vl-convert ships them: no network). Making
    it takes vl-convert seconds of CPU, so it is kept in the user's cache folder, per version:
    a live report rebuilt during a sweep would take those from the trials."""
    cache = (Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "mlsweep"
             / f"vega-bundle-{vlc.__version__}-{VL_VERSION}.js")
    if cache.is_file():
        return cache.read_text(encoding="utf-8")
    bundle = vlc.javascript_bundle(vl_version=VL_VERSION).replace("</script", "<\\/script")
    with contextlib.suppress(OSError):  # an unwritable cache folder only costs the seconds again
        cache.parent.mkdir(parents=True, exist_ok=True)
        partial = cache.with_suffix(f".{os.getpid()}.tmp")
        partial.write_text(bundle, encoding="utf-8")
        partial.replace(cache)
    return bundle


def spec(chart: alt.TopLevelMixin) -> dict[str, Any]:
    """The chart's Vega-Lite spec with its data inline, however many rows (they are aggregates)."""
    with alt.data_transformers.enable("default", max_rows=None):
        return chart.to_dict()


def _packed(chart_spec: dict[str, Any]) -> dict[str, Any]:
    """The spec for the page: each inline dataset column-wise, strings as indices into a list
    of levels, numbers to 4 significant digits (what the tooltips show). Vega's row objects
    repeat every key and label on every row, which made the page of a 1,000-trial sweep three
    times larger. The page's script unpacks the rows before embedding."""
    datasets = {}
    for name, rows in chart_spec.get("datasets", {}).items():
        frame = pd.DataFrame.from_records(rows)
        columns, levels = [], {}
        for field_name in frame.columns:
            values = frame[field_name]
            if pd.api.types.is_float_dtype(values):  # None became NaN in from_records
                columns.append([float(f"{v:.4g}") if math.isfinite(v) else None for v in values])
            elif any(isinstance(v, str) for v in values):
                codes, uniques = pd.factorize(values)
                columns.append([None if code < 0 else int(code) for code in codes])
                levels[field_name] = list(uniques)
            else:
                columns.append([None if pd.isna(v) else v for v in values.tolist()])
        datasets[name] = {"fields": list(frame.columns), "columns": columns, "levels": levels}
    return {**chart_spec, "datasets": datasets}


def page(name: str, sections: list[Section], analyzed: bool, banner: str = "") -> str:
    """The whole HTML document: scripts inlined once, specs in one JSON block, charts as divs."""
    specs: dict[str, dict[str, Any]] = {}
    parts = []
    for section in sections:
        divs = []
        for chart_spec in section.charts.values():
            chart_id = f"chart-{len(specs)}"
            specs[chart_id] = _packed(chart_spec)
            divs.append(f'<div class="chart" id="{chart_id}"></div>')
        parts.append(f'<section id="{section.anchor}"><h2>{html.escape(section.title)}</h2>'
                     f'<p class="note">{html.escape(section.note)}</p>{section.body}'
                     f'{"".join(divs)}</section>')
    # "<" escaped inside the JSON, so no string in the data (an error message) can end the script.
    data = json.dumps(specs, separators=(",", ":"), allow_nan=False).replace("<", "\\u003c")
    return Template(_asset("page.html")).substitute(
        title=html.escape(name), css=_asset("page.css"), vega=_vega_bundle(), embed=_asset("page.js"),
        when=datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC"),
        source=("partial: no analysis yet" if banner else
                "analysis run now" if analyzed else "analysis tables up to date"), banner=banner,
        nav="".join(f'<a href="#{s.anchor}">{html.escape(s.title)}</a>' for s in sections),
        sections="".join(parts), specs=data)
