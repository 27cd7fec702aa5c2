"""What the report reads: the analysis tables (rerun when missing or older than the results),
the manifest and the sweep's name."""

from __future__ import annotations

import pandas as pd
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from mlsweep.analysis import AnalysisError, analyze
from mlsweep.results import filesystem, join

ANALYSIS_TABLES = ("summary", "tests", "ranks", "claims")


def analysis_tables(run_dir: str) -> tuple[dict[str, pd.DataFrame], bool, str]:
    """The analysis tables, whether `analyze` ran for them, and why `analyze` failed (its one
    line: no completed trials, ...) or ''."""
    fs, base = filesystem(run_dir)
    paths = [join(base, "analysis", f"{name}.parquet") for name in ANALYSIS_TABLES]
    if not _stale(fs, base, paths):
        return ({name: pq.read_table(path, filesystem=fs).to_pandas()
                 for name, path in zip(ANALYSIS_TABLES, paths, strict=True)}, False, "")
    try:
        result = analyze(run_dir)
    except AnalysisError as error:
        return {}, True, str(error)
    return {name: getattr(result, name) for name in ANALYSIS_TABLES}, True, ""


def _stale(fs: pafs.FileSystem, base: str, outputs: list[str]) -> bool:
    """An output is missing, or a results file is newer than the oldest output."""
    written = fs.get_file_info(outputs)
    if any(info.type != pafs.FileType.File for info in written):
        return True
    results = [info for table in ("trials", "epochs")
               for info in fs.get_file_info(pafs.FileSelector(join(base, "results", table),
                                                              allow_not_found=True))]
    oldest = min(info.mtime_ns or 0 for info in written)
    return any((info.mtime_ns or 0) > oldest for info in results)


def sweep_name(run_dir: str, trials: pd.DataFrame) -> str:
    names = trials["sweep"].dropna().unique() if "sweep" in trials else []
    return str(names[0]) if len(names) else run_dir.rstrip("/").rsplit("/", 1)[-1]
