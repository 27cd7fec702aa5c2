"""mlsweep.rayfast against the real Ray it reaches into: each cut still takes hold (a Ray
upgrade that moved what it replaces fails here, not silently in a slower launch), is undone
after its block, and the embedded Ray still stops completely."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

from conftest import ROOT

from mlsweep import rayfast, worker


def test_swapped_replaces_for_the_block_then_restores_and_skips_what_is_missing() -> None:
    before = worker.REPORT_EVERY_S
    with rayfast.swapped("mlsweep.worker", "REPORT_EVERY_S", 99.0):
        assert worker.REPORT_EVERY_S == 99.0
    assert before == worker.REPORT_EVERY_S
    with rayfast.swapped("mlsweep.worker", "NOT_THERE", 1), rayfast.swapped("mlsweep.not_there", "X", 1):
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


def test_stopping_the_embedded_ray_ends_its_monitor_first_then_everything() -> None:
    code = """
import json
from ray._private import ray_constants, worker
from mlsweep import rayfast
from mlsweep.rayconnect import connect
stop = connect(None, False)
node = worker._global_node
monitor = node.all_processes[ray_constants.PROCESS_TYPE_MONITOR][0].process
others = [i.process for infos in node.all_processes.values() for i in infos if i.process is not monitor]
rayfast.end_monitor()
monitor.wait(timeout=30)
alive_then = [p.poll() is None for p in others]
stop()
print(json.dumps({"monitor": monitor.returncode, "alive_then": alive_then,
                  "alive_after": [p.poll() is None for p in others]}))
"""
    seen = _python(code)
    assert seen["monitor"] == -signal.SIGKILL
    assert len(seen["alive_then"]) >= 4 and all(seen["alive_then"])  # GCS, raylet, ... still up
    assert not any(seen["alive_after"])
