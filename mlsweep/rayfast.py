"""Ray's fixed cost of a launch, cut without leaving Ray: work that Ray and Tune do on every
start or stop and that mlsweep never uses, each measured by bench/fixed_cost.py (figures in
bench/RESULTS.md).

These reach into Ray's private modules, so each is scoped to the call that needs it, and
skipped where a Ray version lacks what it replaces: a Ray upgrade can make a launch slower
again, never break it.
"""

from __future__ import annotations

import contextlib
import importlib
from collections.abc import Iterator
from typing import Any


@contextlib.contextmanager
def swapped(module: str, name: str, value: Any) -> Iterator[None]:
    """`module.name` is `value` while the block runs; nothing changes where that module or
    name does not exist."""
    try:
        owner = importlib.import_module(module)
    except ImportError:
        owner = None
    if owner is None or not hasattr(owner, name):
        yield
        return
    old = getattr(owner, name)
    setattr(owner, name, value)
    try:
        yield
    finally:
        setattr(owner, name, old)


@contextlib.contextmanager
def quick_tune() -> Iterator[None]:
    """While Tuner.fit runs. Tune gives its trial actors a runtime env of their own
    ({"PL_DISABLE_FORK": "1"}, for PyTorch Lightning, which mlsweep does not use), which none
    of the workers that ray.init prestarts has: every first trial waited for a new worker
    process to start. Tune's telemetry on the callbacks given (ours) imports its MLflow and W&B
    integrations, and with them mlflow and wandb when installed: seconds per launch."""
    with (swapped("ray.tune.execution.class_cache", "DEFAULT_ENV_VARS", {}),
          swapped("ray.air._internal.usage", "tag_callbacks", lambda callbacks: False)):
        yield


def end_monitor() -> None:
    """Kill the local Ray's autoscaler monitor, before ray.shutdown: shutdown stops the GCS
    first and then sends the monitor SIGTERM, whose handler reports to the stopped GCS until
    Ray kills it a second later."""
    with contextlib.suppress(ImportError, AttributeError):
        from ray._private import ray_constants, worker

        node = worker._global_node
        for info in node.all_processes.get(ray_constants.PROCESS_TYPE_MONITOR, []) if node else []:
            info.process.kill()
