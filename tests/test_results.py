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


# --------------------------------------------------------------------------- one schema per table


@pytest.fixture(scope="module")
def mixed_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run folder of real trials of a margin loss and a margin-free one, evaluated every
    other epoch: the files differ in which values exist, never in their columns."""
    from mlsweep.catalog import resolve, trial_id
    from mlsweep.results import write_trial
    from mlsweep.trainer.loop import run_trial

    run = tmp_path_factory.mktemp("mixed")
    tiny = {"dataset": "digits", "epochs": 3, "eval_every": 2, "hidden_sizes": [8], "embedding_dim": 8,
            "train_subset": 100, "batch_size": 256}
    for loss in ("contrastive", "supcon"):
        config = resolve({**tiny, "loss": loss})
        result = run_trial(config)
        write_trial(str(run), trial_id(config), "mixed", config, result.summary,
                    result.epochs.to_dict("records"), result.steps.to_dict("records"))
    return run


def _sorted(frame: pd.DataFrame, table: str) -> pd.DataFrame:
    keys = {"trials": ["trial_id"], "epochs": ["trial_id", "epoch"], "steps": ["trial_id", "step"]}[table]
    return frame.sort_values(keys).reset_index(drop=True)


@pytest.mark.parametrize("table", ["trials", "epochs", "steps"])
def test_every_reader_reads_each_folder_whole(mixed_run: Path, table: str) -> None:
    import duckdb
    import polars as pl
    import pyarrow.dataset as ds
    import pyarrow.parquet as pq

    from mlsweep.catalog import COLUMNS

    folder = mixed_run / "results" / table
    schemas = {pq.read_schema(f).remove_metadata() for f in folder.glob("*.parquet")}
    assert len(schemas) == 1 and list(schemas.pop().names) == list(COLUMNS[table])
    ours = _sorted(read_results(str(mixed_run), table), table)
    assert ours["loss"].tolist().count("supcon") >= 1 and ours["margin"].isna().any()
    readers = {
        "pandas": lambda: pd.read_parquet(folder),
        "pyarrow.dataset": lambda: ds.dataset(folder).to_table().to_pandas(),
        "duckdb": lambda: duckdb.sql(f"select * from read_parquet('{folder}/*.parquet')").df(),
        "polars": lambda: pl.read_parquet(f"{folder}/*.parquet").to_pandas(),
    }
    for name, read in readers.items():
        frame = _sorted(read(), table)
        assert list(frame.columns) == list(ours.columns), name
        for column in ours.columns:
            a, b = ours[column], frame[column]
            if pd.api.types.is_datetime64_any_dtype(a):
                assert (pd.to_datetime(a, utc=True) == pd.to_datetime(b, utc=True)).all(), (name, column)
            else:
                assert a.astype(object).where(a.notna(), None).tolist() == \
                    b.astype(object).where(b.notna(), None).tolist(), (name, column)


def test_loss_is_the_loss_name_in_every_table(mixed_run: Path) -> None:
    for table in ("trials", "epochs", "steps"):
        frame = read_results(str(mixed_run), table)
        assert set(frame["loss"]) == {"contrastive", "supcon"}, table
    steps = read_results(str(mixed_run), "steps")
    assert pd.api.types.is_float_dtype(steps["batch_loss"]) and steps["batch_loss"].notna().all()


def test_folders_written_before_the_schema_still_read(tmp_path: Path) -> None:
    """0.1 wrote each file with its own columns: the step value as `loss`, null-typed columns
    where a trial had no value."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    steps = tmp_path / "results" / "steps"
    steps.mkdir(parents=True)
    pq.write_table(pa.table({"trial_id": ["a", "a"], "epoch": [1, 1], "step": [1, 2],
                             "loss": [0.5, 0.25], "n_terms": [3, 4]}), steps / "a.parquet")
    pq.write_table(pa.table({"trial_id": ["b"], "epoch": [1], "step": [1], "loss": [0.75],
                             "margin": pa.array([None], pa.null())}), steps / "b.parquet")
    frame = read_results(str(tmp_path), "steps").sort_values(["trial_id", "step"])
    assert frame["batch_loss"].tolist() == [0.5, 0.25, 0.75] and "loss" not in frame
    trials = tmp_path / "results" / "trials"
    trials.mkdir()
    pq.write_table(pa.table({"trial_id": ["a"], "loss": ["supcon"],
                             "loss_half_epoch": pa.array([None], pa.null())}), trials / "a.parquet")
    pq.write_table(pa.table({"trial_id": ["b"], "loss": ["triplet"], "loss_half_epoch": [3]}),
                   trials / "b.parquet")
    half = read_results(str(tmp_path), "trials").set_index("trial_id")["loss_half_epoch"]
    assert pd.isna(half["a"]) and half["b"] == 3


def test_a_truncated_file_is_named_and_left_out_never_fatal(tmp_path: Path) -> None:
    from mlsweep.results import BadFile, UnreadableResultWarning, quarantine

    run = str(tmp_path)
    for trial in ("a", "b", "c"):
        write_table(run, "epochs", trial, rows(trial, 2))
    assert len(read_results(run, "epochs")) == 6  # cached
    path = tmp_path / "results" / "epochs" / "b.parquet"
    path.write_bytes(path.read_bytes()[:100])
    bad: list[BadFile] = []
    frame = read_results(run, "epochs", bad=bad)
    assert sorted(set(frame["trial_id"])) == ["a", "c"]
    assert [b.path for b in bad] == [str(path)] and "Parquet" in bad[0].error
    with pytest.warns(UnreadableResultWarning, match="b.parquet: unreadable, left out"):
        read_results(run, "epochs")
    moved = quarantine(run, "epochs", "b")
    assert not path.exists() and Path(moved).parent.name == ".corrupt"
    assert sorted(set(read_results(run, "epochs", bad=bad)["trial_id"])) == ["a", "c"]
    (tmp_path / ".cache" / "epochs.parquet").write_bytes(b"garbage")  # a broken cache is rebuilt
    assert len(read_results(run, "epochs")) == 4
