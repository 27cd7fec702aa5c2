"""Parquet results of a sweep: layout, atomic writes through pyarrow file systems, readers.

Each trial's rows are one file per table (`results/<table>/<trial_id>.parquet`), written to a
temporary name and renamed, so a reader or a crash never sees half a file, and a folder reads
as one table with pandas, polars, duckdb or pyarrow.dataset: every file of a table has the
catalog's columns and types (mlsweep.catalog.tables), absent values as typed nulls.
"""

from __future__ import annotations

import contextlib
import json
import uuid
import warnings
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from mlsweep.catalog import COLUMNS, TABLES

_ARROW = {"float64": pa.float64(), "int64": pa.int64(), "string": pa.string(), "json": pa.string(),
          "bool": pa.bool_(), "timestamp": pa.timestamp("us", tz="UTC")}


def filesystem(uri: str) -> tuple[pafs.FileSystem, str]:
    """A pyarrow file system and the path inside it, for a local folder or an s3:// URI."""
    if "://" in uri:
        return pafs.FileSystem.from_uri(uri)
    return pafs.LocalFileSystem(), str(pafs.LocalFileSystem().normalize_path(_absolute(uri)))


def _absolute(path: str) -> str:
    from pathlib import Path

    return str(Path(path).expanduser().resolve())


def join(base: str, *parts: str) -> str:
    """Path joining for folders and URIs; a URI's query (`?endpoint_override=...`) stays last."""
    path, sep, query = base.partition("?") if "://" in base else (base, "", "")
    return "/".join([path.rstrip("/"), *parts]) + sep + query


def config_columns(config: Mapping[str, Any]) -> dict[str, Any]:
    """A resolved config as plain Parquet columns: scalars as they are, lists/dicts as JSON."""
    return {
        key: json.dumps(value, sort_keys=True) if isinstance(value, list | dict) else value
        for key, value in config.items()
    }


def rows_with_ids(trial_id: str, sweep: str, config: Mapping[str, Any],
                  rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Rows of any table, each carrying `trial_id`, `sweep` and the config as plain columns."""
    ids = {"trial_id": trial_id, "sweep": sweep, **config_columns(config)}
    return [{**ids, **row} for row in rows]


def write_trial(run_dir: str, trial_id: str, sweep: str, config: Mapping[str, Any],
                summary: Mapping[str, Any], epochs: Sequence[Mapping[str, Any]],
                steps: Sequence[Mapping[str, Any]]) -> None:
    """All three tables of one trial; the trials row last, since it marks the trial done."""
    for table, rows in (("epochs", epochs), ("steps", steps), ("trials", [summary])):
        if rows:
            write_table(run_dir, table, trial_id, rows_with_ids(trial_id, sweep, config, rows))


def write_atomic(fs: pafs.FileSystem, path: str, write: Any) -> None:
    """Write through `write(stream)` to a temporary sibling, then rename over `path`."""
    parent = path.rsplit("/", 1)[0]
    fs.create_dir(parent, recursive=True)
    tmp = f"{parent}/.tmp-{uuid.uuid4().hex}"
    try:
        with fs.open_output_stream(tmp) as stream:
            write(stream)
        fs.move(tmp, path)
    except BaseException:
        _delete_quietly(fs, tmp)
        raise


def _delete_quietly(fs: pafs.FileSystem, path: str) -> None:
    with contextlib.suppress(OSError, FileNotFoundError):
        fs.delete_file(path)


def write_table(run_dir: str, table: str, trial_id: str, rows: Sequence[Mapping[str, Any]]) -> None:
    """Write one trial's rows of `table` atomically (replacing an earlier file of that trial)."""
    fs, base = filesystem(run_dir)
    arrow = to_arrow(table, rows)
    write_atomic(fs, join(base, "results", table, f"{trial_id}.parquet"),
                 lambda stream: pq.write_table(arrow, stream))


def schema(table: str, extra: Sequence[str] = ()) -> pa.Schema:
    """The catalog's columns of `table`; `extra` keys outside the catalog follow as text."""
    columns = COLUMNS[table]
    return pa.schema([*((name, _ARROW[kind]) for name, kind in columns.items()),
                      *((name, pa.string()) for name in extra if name not in columns)])


def to_arrow(table: str, rows: Sequence[Mapping[str, Any]]) -> pa.Table:
    """Rows as an Arrow table with the catalog's schema: every column, typed, nulls where a row
    has no value (a margin-free loss's `margin`, epochs that were not evaluated)."""
    columns = COLUMNS[table]
    extra = [key for key in dict.fromkeys(k for row in rows for k in row) if key not in columns]
    extras = pa.Table.from_pylist([{key: row.get(key) for key in extra} for row in rows]) if extra else None
    # NaN is a float's "no value": in an integer or text column it becomes a null.
    arrays = [pa.array([row.get(name) for row in rows], type=_ARROW[kind], from_pandas=kind != "float64")
              for name, kind in columns.items()]
    names = list(columns)
    if extras is not None:  # columns a newer writer added: kept with their own types
        arrays += extras.columns
        names += extras.column_names
    return pa.Table.from_arrays(arrays, names=names)


@dataclass(frozen=True)
class BadFile:
    """A results file that cannot be read (cut short by a copy or a full disk, or foreign)."""

    path: str
    error: str

    def line(self) -> str:
        return f"{self.path}: unreadable, left out ({self.error})"

    @property
    def table(self) -> str:
        """The results table the file belongs to (`trials`, `epochs`, `steps`)."""
        return self.path.partition("?")[0].rsplit("/", 2)[-2]

    @property
    def trial_id(self) -> str:
        return self.path.partition("?")[0].rsplit("/", 1)[-1].removesuffix(".parquet")


class UnreadableResultWarning(UserWarning):
    """Results files were left out of a read because they cannot be read."""


def read_results(run_dir: str, table: str, columns: Sequence[str] | None = None,
                 bad: list[BadFile] | None = None) -> pd.DataFrame:
    """One table of a run folder as a pandas DataFrame (empty when nothing is written yet).

    `columns` limits what is returned. A file that cannot be read is left out, never fatal: it
    is appended to `bad` when a list is given (the CLI names it in one line), else reported as
    an UnreadableResultWarning. Reading thousands of small files costs about a
    millisecond each, so the merged table is kept in `<run_dir>/.cache/<table>.parquet` with the
    name, size and time of every file it holds; a later read loads it and reads only the files
    added or rewritten since.
    """
    if table not in TABLES:
        raise ValueError(f"unknown table {table!r}; known: {', '.join(TABLES)}")
    fs, base = filesystem(run_dir)
    folder = join(base, "results", table)
    if fs.get_file_info(folder).type != pafs.FileType.Directory:
        return pd.DataFrame()
    files = {f.base_name: f"{f.size}:{f.mtime_ns}" for f in fs.get_file_info(pafs.FileSelector(folder))
             if f.is_file and f.base_name.endswith(".parquet") and not f.base_name.startswith(".")}
    if not files:
        return pd.DataFrame()
    found: list[BadFile] = []
    merged = _merged(fs, join(base, ".cache", f"{table}.parquet"), folder, files, found)
    found = [BadFile(join(run_dir, "results", table, f.path), f.error) for f in found]
    if bad is not None:
        bad += found
    for f in found if bad is None else ():
        warnings.warn(UnreadableResultWarning(f.line()), stacklevel=2)
    if merged is None:
        return pd.DataFrame()
    frame = merged.to_pandas()
    return frame if columns is None else frame[[c for c in columns if c in frame.columns]]


def unreadable(run_dir: str) -> list[BadFile]:
    """Every results file of the run folder that cannot be read, table by table (what a
    command names before it reads around them)."""
    bad: list[BadFile] = []
    for table in TABLES:
        read_results(run_dir, table, columns=["trial_id"], bad=bad)
    return bad


_FILES_KEY = b"mlsweep.files"


def _merged(fs: pafs.FileSystem, cache: str, folder: str, files: dict[str, str],
            bad: list[BadFile]) -> pa.Table | None:
    """The union of `files`, from the cache plus the files it lacks; the cache is refreshed.
    Unreadable files go to `bad` (by name) and are left out; an unreadable cache is rebuilt."""
    cached, covered = _read_cache(fs, cache)
    fresh = sorted(name for name, stamp in files.items() if covered.get(name) != stamp)
    if cached is not None and not fresh and covered.keys() == files.keys():
        return cached
    parts = []
    if cached is not None:
        keep = [name.removesuffix(".parquet") for name in files if name not in fresh]
        parts.append(cached.filter(pc.is_in(cached["trial_id"], pa.array(keep, pa.string()))))
    with ThreadPoolExecutor(max_workers=16) as pool:
        for name, read in zip(fresh, pool.map(lambda name: _try_read(fs, join(folder, name)), fresh),
                              strict=True):
            if isinstance(read, pa.Table):
                parts.append(read)
            else:
                bad.append(BadFile(name, read))
                del files[name]
    if not parts:
        return None
    # Files of 0.1 differ in columns (a margin-free loss has no `margin`) and null-only columns.
    merged = pa.concat_tables(parts, promote_options="permissive").combine_chunks()
    merged = merged.replace_schema_metadata({_FILES_KEY: json.dumps(files).encode()})
    with contextlib.suppress(OSError):  # a read-only run folder still reads, only slower
        write_atomic(fs, cache, lambda stream: pq.write_table(merged, stream))
    return merged


def _read_cache(fs: pafs.FileSystem, cache: str) -> tuple[pa.Table | None, dict[str, str]]:
    """The merged table and the files it covers; nothing when absent or unreadable."""
    if not fs.get_file_info(cache).is_file:
        return None, {}
    try:
        with fs.open_input_file(cache) as stream:
            cached = pq.read_table(stream)
        return cached, json.loads((cached.schema.metadata or {}).get(_FILES_KEY, b"{}"))
    except (pa.ArrowException, OSError, ValueError):
        return None, {}


def _try_read(fs: pafs.FileSystem, path: str) -> pa.Table | str:
    """The file's table, or why it cannot be read."""
    try:
        return _read_file(fs, path)
    except (pa.ArrowException, OSError) as error:
        return str(error).splitlines()[0] if str(error) else type(error).__name__


def quarantine(run_dir: str, table: str, trial_id: str) -> str:
    """Move a trial's unreadable file of `table` aside, to `results/<table>/.corrupt/`, so the
    trial counts as not recorded and a launch runs it again; returns where it went."""
    fs, base = filesystem(run_dir)
    folder = join(base, "results", table)
    fs.create_dir(join(folder, ".corrupt"), recursive=True)
    target = join(folder, ".corrupt", f"{trial_id}-{uuid.uuid4().hex[:8]}.parquet")
    fs.move(join(folder, f"{trial_id}.parquet"), target)
    return target


def _read_file(fs: pafs.FileSystem, path: str) -> pa.Table:
    with fs.open_input_file(path) as stream:
        arrow = pq.read_table(stream)
    return _upgrade(arrow, path.rsplit("/", 2)[-2])


def _upgrade(arrow: pa.Table, table: str) -> pa.Table:
    """A file written before 0.2, read as today's: its steps' per-step value was `loss`."""
    names = arrow.column_names
    if table == "steps" and "batch_loss" not in names and "loss" in names \
            and pa.types.is_floating(arrow.schema.field("loss").type):
        return arrow.rename_columns(["batch_loss" if n == "loss" else n for n in names])
    return arrow
