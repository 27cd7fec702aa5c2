"""The run folder's layout, in one place: where a sweep's files lie and how its manifest is read.

`<storage>/<sweep name>/` holds `sweep.yaml` (the sweep as launched), `manifest.json` (every
trial id ever planned, one line per launch), `results/<table>/` (Parquet), `analysis/`,
`report.html`, `tune/` (Ray Tune's own state) and `checkpoints/` (packs stopped while
training). A folder `mlsweep train --out` wrote holds `results/` only; it is a run folder too
(no manifest). Local folders and s3:// URIs alike.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import threading
import time
import uuid
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow.fs as pafs

from mlsweep import results
from mlsweep.errors import UserError

MANIFEST = "manifest.json"
SWEEP_FILE = "sweep.yaml"
LOCK = "launch.lock"
CHECKPOINTS = "checkpoints"  # <run>/checkpoints/<pack_id>/: a training pack's checkpoints
MEMBERS = "members.json"  # beside them: the pack's trial ids, readable without torch
HEARTBEAT_S = 30.0  # a launch rewrites its lock this often
STALE_AFTER_S = 120.0  # a lock not rewritten for this long has lost its owner (another host's)
_HELD: set[str] = set()  # tokens of the locks this process holds now


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

    @property
    def checkpoints_uri(self) -> str:
        return self.uri_of(CHECKPOINTS)

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

    def manifest(self, bad: list[results.BadFile] | None = None) -> dict[str, Any]:
        """`manifest.json`, or {} where there is none (a `mlsweep train --out` folder) or it
        cannot be read: then it goes to `bad` when a list is given, else is warned about
        (UnreadableResultWarning), as read_results does for results files."""
        try:
            text = self._read(MANIFEST)
            manifest = json.loads(text or "{}")
            if not isinstance(manifest, dict):
                raise ValueError("not a JSON object")
            return manifest
        except (OSError, ValueError) as error:  # UnicodeDecodeError and JSONDecodeError too
            found = results.BadFile(self.uri_of(MANIFEST), str(error).splitlines()[0])
            if bad is None:
                warnings.warn(results.UnreadableResultWarning(found.line()), stacklevel=2)
            else:
                bad.append(found)
            return {}

    def move_aside(self, name: str) -> str:
        """Rename a bad run file to `<name>.corrupt-<n>` (the first free n), so that it is
        kept for a look and rewritten fresh; returns the new name's URI."""
        n = 1
        while self.fs.get_file_info(self._path(f"{name}.corrupt-{n}")).type != pafs.FileType.NotFound:
            n += 1
        self.fs.move(self._path(name), self._path(f"{name}.corrupt-{n}"))
        return self.uri_of(f"{name}.corrupt-{n}")

    def write_manifest(self, manifest: dict[str, Any]) -> None:
        self._write(MANIFEST, json.dumps(manifest, indent=1))

    def sweep_text(self) -> str | None:
        """`sweep.yaml` as launched, or None where there is none."""
        return self._read(SWEEP_FILE)

    def write_sweep_text(self, text: str) -> None:
        self._write(SWEEP_FILE, text)

    # --- the launch lock ------------------------------------------------------------------------

    @contextlib.contextmanager
    def locked(self) -> Iterator[dict[str, Any]]:
        """Hold `launch.lock` for the block: one launch of a sweep at a time per storage. A lock
        whose owner is gone (its pid no longer runs on this host) or that has not been rewritten
        for STALE_AFTER_S (the heartbeat keeps a live one fresh) is taken over; a live one is
        refused in one line. On s3:// a create cannot be exclusive: the read-back after writing
        catches all but a race within the same second."""
        held = self._lock_owner()
        if held is not None and not _stale(held):
            raise UserError(f"{self.uri}: another launch of this sweep is running (host "
                            f"{held.get('host')}, pid {held.get('pid')}, since {held.get('started')}); "
                            f"wait for it, or delete {self.uri_of(LOCK)} if it is gone")
        me = {"host": socket.gethostname(), "pid": os.getpid(), "token": uuid.uuid4().hex,
              "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "beat": time.time()}
        self._write(LOCK, json.dumps(me))
        if (self._lock_owner() or {}).get("token") != me["token"]:
            raise UserError(f"{self.uri}: another launch of this sweep took the lock at the same time")
        done = threading.Event()
        beat = threading.Thread(target=self._heartbeat, args=(me, done), daemon=True, name="lock")
        beat.start()
        _HELD.add(me["token"])
        try:
            yield me
        finally:
            _HELD.discard(me["token"])
            done.set()
            beat.join()
            if (self._lock_owner() or {}).get("token") == me["token"]:
                with contextlib.suppress(OSError):
                    self.fs.delete_file(self._path(LOCK))

    def _lock_owner(self) -> dict[str, Any] | None:
        """The lock's content; an unreadable lock counts as stale (a crash while writing it)."""
        try:
            text = self._read(LOCK)
            return None if text is None else dict(json.loads(text))
        except (OSError, ValueError, TypeError):
            return {"beat": 0.0}

    def checkpointed_packs(self) -> dict[str, list[str]]:
        """The packs with checkpoints (stopped while training): pack id -> member trial ids."""
        root = self._path(CHECKPOINTS)
        if self.fs.get_file_info(root).type != pafs.FileType.Directory:
            return {}
        packs = {}
        for entry in self.fs.get_file_info(pafs.FileSelector(root)):
            if entry.type != pafs.FileType.Directory:
                continue
            with contextlib.suppress(OSError, ValueError, TypeError, KeyError):
                text = self._read(f"{CHECKPOINTS}/{entry.base_name}/{MEMBERS}")
                if text is not None:
                    packs[entry.base_name] = [str(t) for t in json.loads(text)["trial_ids"]]
        return packs

    def drop_checkpoints(self, pack_id: str) -> None:
        """Delete a pack's checkpoints (none of it can resume: some member is recorded)."""
        with contextlib.suppress(OSError, FileNotFoundError):
            self.fs.delete_dir(self._path(CHECKPOINTS, pack_id))

    def _heartbeat(self, me: dict[str, Any], done: threading.Event) -> None:
        while not done.wait(HEARTBEAT_S):
            with contextlib.suppress(OSError):  # storage down: the writer's problem, not the lock's
                self._write(LOCK, json.dumps({**me, "beat": time.time()}))

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


def _stale(lock: dict[str, Any]) -> bool:
    """The lock's owner is gone: its pid runs no more on this host (or is this process, which
    left it behind when storage went down), or its heartbeat stopped."""
    if time.time() - float(lock.get("beat", 0.0)) > STALE_AFTER_S:
        return True
    if lock.get("host") != socket.gethostname():
        return False
    if lock.get("pid") == os.getpid():  # this process: stale unless one of its launches holds it
        return lock.get("token") not in _HELD
    try:
        pid = int(lock.get("pid", 0))
        if pid <= 0:
            return True
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except (PermissionError, ValueError, OverflowError):
        return False
    return False


def _file_in_the_way(path: Path) -> Path | None:
    """The nearest existing ancestor-or-self of `path` when it is not a folder."""
    for candidate in (path, *path.parents):
        if candidate.exists():
            return None if candidate.is_dir() else candidate
    return None
