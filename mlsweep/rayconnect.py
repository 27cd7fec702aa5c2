"""Connect a driver to Ray: an embedded local Ray of its own by default, else a cluster.

The embedded Ray is private (every one of its servers listens on 127.0.0.1 only) and watched
(mlsweep.raywatch ends what is left of it when the driver is killed); its start and stop are
Ray's fixed cost of a launch (mlsweep.rayfast cuts what it can, mlsweep.estimate measures it).
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable, Iterator

from mlsweep import rayfast, raywatch
from mlsweep.errors import UserError


def connect(address: str | None, verbose: bool) -> Callable[[], None] | None:
    """Connect to Ray (embedded local by default). Returns how to stop it when this call
    started it, else None. The embedded Ray is private: every one of its servers listens on
    127.0.0.1 only, and a watchdog process ends what is left of it when the driver is killed."""
    import ray

    # Tune's own result loggers (CSV, JSON, TensorBoard) would duplicate what the driver writes.
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    # Ctrl-C and SIGTERM are launch's own (mlsweep.signals): Tune's handler would swallow the first.
    os.environ["TUNE_DISABLE_SIGINT_HANDLER"] = "1"
    if ray.is_initialized():
        return None
    # Quiet by default: failed trials are recorded and summarised, not dumped as tracebacks.
    level = logging.INFO if verbose else logging.CRITICAL
    # A new Ray of its own, also where a `ray start` left one running here ("local"; Ray's
    # default would join that one).
    embedded = address is None and os.environ.get("RAY_ADDRESS", "local") in ("", "local")
    local = {"address": "local", "_node_ip_address": LOOPBACK}
    try:
        with _embedded_start(verbose) if embedded else contextlib.nullcontext():
            ray.init(include_dashboard=False if address is None else None,
                     log_to_driver=verbose, logging_level=level, configure_logging=True,
                     **(local if embedded else {"address": address}))
    except ConnectionError as err:
        raise UserError(f"--address {address}: cannot reach a Ray cluster there ({err})") from None
    logging.getLogger("ray").setLevel(level)
    watchdog = raywatch.start() if embedded else None

    def stop() -> None:
        ray.shutdown()
        if watchdog is not None:
            raywatch.dismiss(watchdog)

    return stop


LOOPBACK = "127.0.0.1"


@contextlib.contextmanager
def _embedded_start(verbose: bool) -> Iterator[None]:
    """While the embedded Ray starts: only the processes a launch uses (rayfast.lean_node), and
    loopback only. Ray turns a node address of 127.0.0.1 into the host's outward address (its
    `resolve_ip_for_localhost`), and binds its gRPC servers to every interface unless the
    node's address is 127.0.0.1 itself; so that translation is off while it starts."""
    with (rayfast.lean_node(verbose),
          rayfast.swapped("ray._private.services.resolve_ip_for_localhost", lambda host: host)):
        yield
