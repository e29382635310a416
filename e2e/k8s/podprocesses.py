"""Finding and killing the processes a kubelet stand-in started, even when the stand-in itself is gone.

Every container process the stand-in starts carries ``FLOE_E2E_NODE=<node
directory>`` in its environment, and everything it forks inherits it. So
after a run, whatever happened to the stand-in (stopped cleanly, killed,
never reached its own clean-up because a fixture failed half-way), the test
harness can find what is left of its pods by that marker alone and kill it,
and a scenario can check that uninstalling left nothing running.

Processes are matched by their own environment (``/proc/<pid>/environ``),
never by name or process group: a preStop hook runs in the stand-in's own
group, so killing groups from here could take the test run down with it.
"""

from __future__ import annotations

import os
import pathlib
import signal
import time
from collections.abc import Callable

MARKER = "FLOE_E2E_NODE"


def marker(node_dir: pathlib.Path) -> dict[str, str]:
    """The environment entry that tags a process as one of this node's pods."""
    return {MARKER: str(node_dir.absolute())}


def find(node_dir: pathlib.Path) -> list[int]:
    """PIDs of live processes tagged with this node's marker (zombies excluded)."""
    wanted = f"{MARKER}={node_dir.absolute()}".encode()
    found = []
    for entry in pathlib.Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if wanted not in (entry / "environ").read_bytes().split(b"\0"):
                continue
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:  # gone meanwhile, or another user's
            continue
        if state != "Z":
            found.append(int(entry.name))
    return found


def kill_all(node_dir: pathlib.Path, *, within: float = 10.0) -> list[int]:
    """SIGKILL every tagged process until none is left (children forked meanwhile included).

    Returns the PIDs that were still running, so a caller can say a clean-up
    was needed.
    """
    killed: list[int] = []
    deadline = time.monotonic() + within
    while (pids := find(node_dir)) and time.monotonic() < deadline:
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                continue
            if pid not in killed:
                killed.append(pid)
        time.sleep(0.1)
    return killed



def wait_until(node_dir: pathlib.Path, check: Callable[[list[int]], bool], *, within: float = 30.0) -> list[int]:
    """Poll the tagged processes until ``check`` accepts them; returns them.

    Raises AssertionError with what is alive when it never does in time.
    """
    deadline = time.monotonic() + within
    while not check(pids := find(node_dir)):
        if time.monotonic() > deadline:
            raise AssertionError(f"tagged processes alive: {pids}")
        time.sleep(0.05)
    return pids
