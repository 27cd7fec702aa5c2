"""mlsweep.rayfast against the real Ray it reaches into: each cut still takes hold (a Ray
upgrade that moved what it replaces fails here, not silently in a slower launch), is undone
after its block, and the embedded Ray still stops completely."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from conftest import ROOT

from mlsweep import rayfast, worker


def test_swapped_replaces_for_the_block_then_restores_and_skips_what_is_missing() -> None:
    from ray._private.node import Node

    before, start_monitor = worker.REPORT_EVERY_S, Node.start_monitor
    with (rayfast.swapped("mlsweep.worker.REPORT_EVERY_S", 99.0),
          rayfast.swapped("ray._private.node.Node.start_monitor", print)):
        assert worker.REPORT_EVERY_S == 99.0 and Node.start_monitor is print
    assert before == worker.REPORT_EVERY_S and Node.start_monitor is start_monitor
    with (rayfast.swapped("mlsweep.worker.NOT_THERE", 1), rayfast.swapped("mlsweep.not_there.X", 1),
          rayfast.swapped("mlsweep.worker.NoClass.x", 1)):
        assert not hasattr(worker, "NOT_THERE")
    assert not hasattr(worker, "NOT_THERE")


def test_in_quick_tune_trial_actors_get_no_runtime_env_of_their_own() -> None:
    from ray.tune.execution.class_cache import _ActorClassCache

    class Inside:
        pass

    class Outside:
        pass

    with rayfast.quick_tune():
        inside = _ActorClassCache().get(Inside)._default_options.get("runtime_env") or {}
    outside = _ActorClassCache().get(Outside)._default_options.get("runtime_env") or {}
    assert "PL_DISABLE_FORK" not in inside.get("env_vars", {})
    assert outside["env_vars"]["PL_DISABLE_FORK"] == "1"  # what Tune does without it


def _python(code: str) -> dict:
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=300, check=True)
    return json.loads(done.stdout.splitlines()[-1])


def test_in_quick_tune_tunes_callback_telemetry_imports_no_integrations() -> None:
    code = """
import json, sys
from ray.air._internal import usage
from ray.tune import Callback
from mlsweep import rayfast
with rayfast.quick_tune():
    usage.tag_callbacks([Callback()])
inside = "ray.air.integrations.mlflow" in sys.modules
usage.tag_callbacks([Callback()])
print(json.dumps({"inside": inside, "after": "ray.air.integrations.mlflow" in sys.modules}))
"""
    seen = _python(code)
    assert seen == {"inside": False, "after": True}  # outside the block Tune imports them


def test_the_embedded_ray_starts_only_what_a_launch_uses_runs_tasks_and_stops_completely() -> None:
    code = """
import glob, json, os, ray
from ray._private import worker
from mlsweep.rayconnect import connect
seen = {}
for verbose in (False, True):
    stop = connect(None, verbose)
    node = worker._global_node
    cmdlines = [open(path, "rb").read().replace(b"\\0", b" ").decode()
                for path in glob.glob("/proc/*/cmdline")]
    agents = [c for c in cmdlines if "dashboard/agent.py" in c and node.get_session_dir_path() in c]
    started = sorted(node.all_processes)
    processes = [i.process for infos in node.all_processes.values() for i in infos]
    pid = ray.get(ray.remote(lambda: os.getpid()).remote())
    stop()
    seen[str(verbose)] = {"started": started, "task_ran_elsewhere": pid != os.getpid(),
                          "minimal_agents": [" --minimal " in a for a in agents],
                          "alive_after": [p.poll() is None for p in processes]}
print(json.dumps(seen))
"""
    seen = _python(code)
    quiet, verbose = seen["False"], seen["True"]
    assert {"gcs_server", "raylet"} <= set(quiet["started"])
    assert not {"dashboard", "monitor", "log_monitor"} & set(quiet["started"])
    assert "log_monitor" in verbose["started"]  # --verbose shows the workers' output
    assert not {"dashboard", "monitor"} & set(verbose["started"])
    for run in (quiet, verbose):
        assert run["task_ran_elsewhere"] and run["minimal_agents"] == [True]
        assert run["alive_after"] and not any(run["alive_after"])
