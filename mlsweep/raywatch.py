"""A watchdog for the embedded Ray: when the driver dies without shutting Ray down (SIGKILL,
OOM), it kills what is left of Ray at once. Left alone, Ray's agents outlive a killed
driver by a minute or more (they try to tell its dead GCS first).

The driver starts it (`start`) after `ray.init`, holding the write end of a pipe; the
watchdog notes the driver's process tree every POLL_S and, when the pipe closes without the
word "done" (`dismiss`), kills every process of the last tree still alive (the same pid and
start time) and their children. Runs as a plain script (stdlib only, Linux /proc), in its own
session, so that a signal to the driver's process group does not end it first.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import subprocess
import sys

POLL_S = 1.0
DONE = b"done"


def start() -> subprocess.Popen[bytes]:
    """Watch this process's tree until `dismiss`, or until it dies."""
    return subprocess.Popen([sys.executable, os.path.abspath(__file__), str(os.getpid())],
                            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)


def dismiss(watchdog: subprocess.Popen[bytes]) -> None:
    """Ray was shut down cleanly: the watchdog ends without killing anything."""
    assert watchdog.stdin is not None
    with contextlib.suppress(OSError):
        watchdog.stdin.write(DONE)
        watchdog.stdin.close()
    watchdog.wait(timeout=10)


def _processes() -> dict[int, tuple[int, str]]:
    """Every process: pid -> (parent pid, start time in clock ticks)."""
    found = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        found[int(name)] = (int(fields[1]), fields[19])
    return found


def tree(root: int, processes: dict[int, tuple[int, str]]) -> dict[int, str]:
    """`root`'s descendants (not itself): pid -> start time."""
    children: dict[int, list[int]] = {}
    for pid, (parent, _) in processes.items():
        children.setdefault(parent, []).append(pid)
    found, stack = {}, list(children.get(root, []))
    while stack:
        pid = stack.pop()
        found[pid] = processes[pid][1]
        stack += children.get(pid, [])
    return found


def _watch(driver: int) -> None:
    seen: dict[int, str] = {}
    message = b""
    while True:
        ready, _, _ = select.select([sys.stdin.buffer], [], [], POLL_S)
        if ready:
            chunk = os.read(sys.stdin.fileno(), 64)
            if not chunk:
                break
            message += chunk
        else:
            seen.update(tree(driver, _processes()))
    if message == DONE:
        return
    processes = _processes()
    alive = {pid: t for pid, t in seen.items() if processes.get(pid, (0, None))[1] == t}
    for pid in list(alive):
        alive.update(tree(pid, processes))
    alive.pop(os.getpid(), None)
    for pid in alive:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)


if __name__ == "__main__":
    _watch(int(sys.argv[1]))
