"""RunFolder: the layout of a run folder, its manifest, and the one 'not a run folder' wording."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest

from mlsweep.errors import UserError
from mlsweep.runfolder import RunFolder, require_writable_dir, require_writable_file

S3 = "s3://sweeps/runs/smoke?endpoint_override=127.0.0.1:9000&scheme=http"


def test_paths_of_an_s3_run_folder_keep_the_query_last() -> None:
    folder = RunFolder(S3)
    assert folder.results_uri == "s3://sweeps/runs/smoke/results?endpoint_override=127.0.0.1:9000&scheme=http"
    assert folder.uri_of("results", "trials") == ("s3://sweeps/runs/smoke/results/trials"
                                                  "?endpoint_override=127.0.0.1:9000&scheme=http")
    assert shlex.split(f"mlsweep analyze {shlex.quote(folder.uri)}")[-1] == S3  # usable as printed


def test_a_local_folder_is_absolute_and_its_manifest_round_trips(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    folder = RunFolder("runs/smoke")
    assert folder.uri == str(tmp_path / "runs" / "smoke") and folder.report_uri.endswith("smoke/report.html")
    assert not folder.exists() and folder.manifest() == {} and folder.sweep_text() is None
    with pytest.raises(UserError, match="not a run folder"):
        folder.require()
    folder.write_manifest({"sweep": "smoke", "trials": {"a": {"loss": "triplet"}}})
    folder.write_sweep_text("name: smoke\n")
    assert folder.require() is folder
    assert folder.manifest()["trials"] == {"a": {"loss": "triplet"}}
    assert (tmp_path / "runs" / "smoke" / "sweep.yaml").read_text() == folder.sweep_text() == "name: smoke\n"
    assert sorted(p.name for p in (tmp_path / "runs" / "smoke").iterdir()) == ["manifest.json", "sweep.yaml"]


def test_a_train_out_folder_with_results_only_is_a_run_folder(tmp_path: Path) -> None:
    (tmp_path / "results" / "trials").mkdir(parents=True)
    assert RunFolder(str(tmp_path)).exists()


def test_writability_is_tested_by_writing(tmp_path: Path) -> None:
    require_writable_dir(str(tmp_path / "new" / "deep"), "--out")
    assert (tmp_path / "new" / "deep").is_dir() and not list((tmp_path / "new" / "deep").iterdir())
    with pytest.raises(UserError, match=r"--out /sys/mlsweep-x: cannot write there"):
        require_writable_dir("/sys/mlsweep-x", "--out")
    (tmp_path / "taken").mkdir()
    with pytest.raises(UserError, match="is a folder, not a file"):
        require_writable_file(str(tmp_path / "taken"), "--out")
