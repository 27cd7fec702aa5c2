"""Writing the page, and each chart as a PNG for papers and slides (vl-convert, offline)."""

from __future__ import annotations

import re
from typing import Any

import vl_convert as vlc

from mlsweep.report._page import VL_VERSION
from mlsweep.results import filesystem, join, write_atomic


def write(path: str, data: bytes) -> None:
    """`data` to a local path or s3:// URI, atomically."""
    fs, target = filesystem(path)
    write_atomic(fs, target, lambda stream: stream.write(data))


def export_pngs(charts: dict[str, dict[str, Any]], png_dir: str) -> list[str]:
    """Each chart (file stem -> spec) as `<png_dir>/<stem>.png` at twice the screen resolution."""
    paths = []
    for stem, spec in charts.items():
        path = join(png_dir, f"{_slug(stem)}.png")
        write(path, vlc.vegalite_to_png(spec, vl_version=VL_VERSION, scale=2))
        paths.append(path)
    return paths


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-") or "chart"
