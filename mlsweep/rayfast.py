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
def swapped(path: str, value: Any) -> Iterator[None]:
    """The attribute at `path` (a module's or a class's: "package.module.Class.name") is `value`
    while the block runs; nothing changes where that module, class or name does not exist."""
    owner_path, name = path.rsplit(".", 1)
    owner = _find(owner_path)
    if owner is None or not hasattr(owner, name):
        yield
        return
    old = getattr(owner, name)
    setattr(owner, name, value)
    try:
        yield
    finally:
        setattr(owner, name, old)


def _find(path: str) -> Any:
    """The module or class at a dotted path, or None: the longest importable module prefix,
    then attributes."""
    parts = path.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            found: Any = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for part in parts[cut:]:
            found = getattr(found, part, None)
        return found
    return None


@contextlib.contextmanager
def lean_node(verbose: bool) -> Iterator[None]:
    """While the embedded Ray starts. Besides the GCS, the raylet and the runtime-env agent that
    trials need, ray.init starts processes a one-node launch never uses: the dashboard's API
    server (started even with include_dashboard=False, for the job and state APIs), the
    autoscaler monitor (one local node never scales), the log monitor (it feeds worker output to
    the driver: kept with --verbose, the only time the driver shows it) and a dashboard agent
    with every module of a full install (the minimal one serves). On two cores they were ~2 s of
    ray.init and ~3.5 core-seconds (bench/RESULTS.md, fixed cost)."""
    skipped = ["start_api_server", "start_monitor"] + ([] if verbose else ["start_log_monitor"])
    with contextlib.ExitStack() as stack:
        for name in skipped:
            stack.enter_context(swapped(f"ray._private.node.Node.{name}", _not_started))
        stack.enter_context(swapped("ray._private.utils.get_dashboard_dependency_error",
                                    lambda: "mlsweep: a minimal dashboard agent"))
        yield


def _not_started(*args: Any, **kwargs: Any) -> None:
    """In place of a Node.start_* method whose process a launch does not need."""


@contextlib.contextmanager
def quick_tune() -> Iterator[None]:
    """While Tuner.fit runs. Tune gives its trial actors a runtime env of their own
    ({"PL_DISABLE_FORK": "1"}, for PyTorch Lightning, which mlsweep does not use), which none
    of the workers that ray.init prestarts has: every first trial waited for a new worker
    process to start. Tune's telemetry on the callbacks given (ours) imports its MLflow and W&B
    integrations, and with them mlflow and wandb when installed: seconds per launch."""
    with (swapped("ray.tune.execution.class_cache.DEFAULT_ENV_VARS", {}),
          swapped("ray.air._internal.usage.tag_callbacks", lambda callbacks: False)):
        yield
