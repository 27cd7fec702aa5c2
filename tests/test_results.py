"""Parquet results: atomic writes, folder-as-table reads, and the merged-table cache."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pyarrow.fs as pafs
import pytest

from mlsweep.results import filesystem, join, read_results, write_atomic, write_table


def rows(trial: str, n: int, **extra: object) -> list[dict[str, object]]:
    return [{"trial_id": trial, "epoch": e, "train_loss": 1.0 / e, **extra} for e in range(1, n + 1)]


def test_folder_reads_as_one_table_and_cache_follows_every_change(tmp_path: Path) -> None:
    run = str(tmp_path)
    write_table(run, "epochs", "a", rows("a", 3, margin=0.5))
    write_table(run, "epochs", "b", rows("b", 2))  # no margin column: a margin-free loss
    first = read_results(run, "epochs")
    assert sorted(first["trial_id"]) == ["a"] * 3 + ["b"] * 2
    assert first.loc[first["trial_id"] == "b", "margin"].isna().all()
    assert (tmp_path / ".cache" / "epochs.parquet").is_file()
    # Any reader sees the same folder as one table, without the cache.
    assert len(pd.read_parquet(tmp_path / "results" / "epochs")) == 5
    write_table(run, "epochs", "c", rows("c", 1))  # added
    write_table(run, "epochs", "a", rows("a", 4, margin=0.5))  # rewritten (a retried trial)
    (tmp_path / "results" / "epochs" / "b.parquet").unlink()  # removed
    again = read_results(run, "epochs")
    assert sorted(again["trial_id"]) == ["a"] * 4 + ["c"]
    assert read_results(run, "epochs", columns=["trial_id", "nope"]).columns.tolist() == ["trial_id"]


def test_missing_or_empty_tables_read_as_empty_frames(tmp_path: Path) -> None:
    assert read_results(str(tmp_path), "trials").empty
    (tmp_path / "results" / "steps").mkdir(parents=True)
    assert read_results(str(tmp_path), "steps").empty
    with pytest.raises(ValueError, match="unknown table"):
        read_results(str(tmp_path), "nope")


def test_atomic_write_leaves_nothing_on_failure_and_keeps_the_old_file(tmp_path: Path) -> None:
    fs, base = filesystem(str(tmp_path))
    target = join(base, "x", "file.txt")
    write_atomic(fs, target, lambda stream: stream.write(b"old"))

    def broken(stream: object) -> None:
        stream.write(b"half")  # type: ignore[attr-defined]
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        write_atomic(fs, target, broken)
    assert (tmp_path / "x" / "file.txt").read_text() == "old"
    assert [p.name for p in (tmp_path / "x").iterdir()] == ["file.txt"]


def test_uri_joins_keep_the_query_last() -> None:
    assert join("s3://b/runs?endpoint_override=h:1&scheme=http", "smoke", "results") == (
        "s3://b/runs/smoke/results?endpoint_override=h:1&scheme=http")
    fs, path = filesystem("s3://b/runs?endpoint_override=127.0.0.1:1&scheme=http")
    assert isinstance(fs, pafs.S3FileSystem) and path == "b/runs"


def test_rows_with_different_keys_keep_every_column(tmp_path: Path) -> None:
    """eval_every > 1: the first epoch has no evaluation columns, later ones do."""
    write_table(str(tmp_path), "epochs", "a", [{"trial_id": "a", "epoch": 1},
                                                {"trial_id": "a", "epoch": 2, "map_at_r": 0.5}])
    frame = read_results(str(tmp_path), "epochs")
    assert frame["map_at_r"].isna().tolist() == [True, False]
