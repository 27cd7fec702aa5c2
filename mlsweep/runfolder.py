"""The run folder's layout, in one place: where a sweep's files lie and how its manifest is read.

`<storage>/<sweep name>/` holds `sweep.yaml` (the sweep as launched), `manifest.json` (every
trial id ever planned, one line per launch), `results/<table>/` (Parquet), `analysis/`,
`report.html` and `tune/` (Ray Tune's own state). A folder `mlsweep train --out` wrote holds
`results/` only; it is a run folder too (no manifest). Local folders and s3:// URIs alike.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pyarrow.fs as pafs

from mlsweep import results
from mlsweep.errors import UserError

MANIFEST = "manifest.json"
SWEEP_FILE = "sweep.yaml"


class RunFolder:
    """One run folder. `uri` is what a person reads and types (a URI's query stays last)."""

    def __init__(self, location: str) -> None:
        self.uri = location if "://" in location else str(Path(location).expanduser().resolve())
        self.fs, self._base = results.filesystem(self.uri)

    def __str__(self) -> str:
        return self.uri

    # --- layout ---------------------------------------------------------------------------------

    def uri_of(self, *parts: str) -> str:
        """A path inside the folder, as a person gives it to mlsweep or pandas."""
        return results.join(self.uri, *parts)

    def _path(self, *parts: str) -> str:
        """A path inside the folder, inside its file system."""
        return results.join(self._base, *parts)

    @property
    def results_uri(self) -> str:
        return self.uri_of("results")

    @property
    def analysis_uri(self) -> str:
        return self.uri_of("analysis")

    @property
    def report_uri(self) -> str:
        return self.uri_of("report.html")

    @property
    def tune_uri(self) -> str:
        return self.uri_of("tune")

    # --- what it holds --------------------------------------------------------------------------

    def exists(self) -> bool:
        """A manifest (a launched sweep) or a results folder (`mlsweep train --out`)."""
        return (self.fs.get_file_info(self._path(MANIFEST)).is_file
                or self.fs.get_file_info(self._path("results")).type == pafs.FileType.Directory)

    def require(self) -> RunFolder:
        """This folder, or the one wording every command uses for a folder that is no run folder."""
        if not self.exists():
            raise UserError(f"{self.uri}: not a run folder (no manifest.json or results/); "
                            "give <storage>/<sweep name> of a launched sweep")
        return self

    def manifest(self) -> dict[str, Any]:
        """`manifest.json`, or {} where there is none (a `mlsweep train --out` folder)."""
        return json.loads(self._read(MANIFEST) or "{}")

    def write_manifest(self, manifest: dict[str, Any]) -> None:
        self._write(MANIFEST, json.dumps(manifest, indent=1))

    def sweep_text(self) -> str | None:
        """`sweep.yaml` as launched, or None where there is none."""
        return self._read(SWEEP_FILE)

    def write_sweep_text(self, text: str) -> None:
        self._write(SWEEP_FILE, text)

    def _read(self, name: str) -> str | None:
        path = self._path(name)
        if not self.fs.get_file_info(path).is_file:
            return None
        with self.fs.open_input_stream(path) as stream:
            return stream.readall().decode()

    def _write(self, name: str, text: str) -> None:
        results.write_atomic(self.fs, self._path(name), lambda stream: stream.write(text.encode()))


def require_writable_dir(location: str, given: str = "") -> None:
    """Fail in one line, before any work, unless `location` (a folder, local or a URI) can be
    created and written into. Tested by writing: a temporary file is created and deleted, which
    also catches what permission bits do not show (a read-only mount, a file system that refuses
    even root, a file where a folder should be). `given` names where the path came from
    (`--storage`, `--out`)."""
    shown = f"{given} {location}" if given else location
    if "://" not in location:
        blocker = _file_in_the_way(Path(location).expanduser())
        if blocker is not None:
            raise UserError(f"{shown}: {blocker} is a file, not a folder")
    fs, path = results.filesystem(location)
    probe = results.join(path, f".write-test-{uuid.uuid4().hex}")
    try:
        fs.create_dir(path, recursive=True)
        with fs.open_output_stream(probe):
            pass
        fs.delete_file(probe)
    except OSError as err:
        reason = getattr(err, "strerror", None) or str(err).splitlines()[0]
        raise UserError(f"{shown}: cannot write there ({reason})") from None


def require_writable_file(location: str, given: str = "") -> None:
    """A file can be written at `location` (local or a URI): its folder takes files, and no
    folder stands where the file goes."""
    shown = f"{given} {location}" if given else location
    if "://" in location:
        path, sep, query = location.partition("?")
        parent = path.rsplit("/", 1)[0] + sep + query
    else:
        parent = str(Path(location).expanduser().resolve().parent)
    require_writable_dir(parent, given)
    fs, target = results.filesystem(location)
    if fs.get_file_info(target).type == pafs.FileType.Directory:
        raise UserError(f"{shown}: is a folder, not a file")


def _file_in_the_way(path: Path) -> Path | None:
    """The nearest existing ancestor-or-self of `path` when it is not a folder."""
    for candidate in (path, *path.parents):
        if candidate.exists():
            return None if candidate.is_dir() else candidate
    return None
