"""Launching ``floe broker`` processes on this machine and telling when they serve.

Shared by ``floe local up`` and the local autoscaler, which start brokers the
same way: the same interpreter, ``-m floe_cli broker``, one log file each.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from floe_api.public import READY_PATH, Readiness


def broker_command(
    *, storage: str, cluster: str, host: str, kafka_port: int, http_port: int, extra: list[str]
) -> list[str]:
    return [
        sys.executable, "-m", "floe_cli", "broker",
        "--storage", storage, "--cluster", cluster,
        "--listen", f"{host}:{kafka_port}", "--http", f"{host}:{http_port}",
        *extra,
    ]


def launch(cmd: list[str], log_path: Path) -> subprocess.Popen[bytes]:
    """Start a broker writing to ``log_path`` (appended to, so earlier runs stay readable).

    The broker gets a session of its own so that Ctrl-C in the terminal reaches
    only ``floe local up``, which then drains each broker once; a broker that
    saw the terminal's SIGINT as well as our SIGTERM would take the second
    signal as "exit now, without draining".
    """
    env = dict(os.environ)
    env.setdefault("FLOE_LOG_FORMAT", "console")
    with open(log_path, "ab") as out:
        return subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)


def readiness(http: str) -> Readiness | None:
    """One ``/readyz`` probe: the broker's answer once it serves clients, None before (or if it is gone)."""
    try:
        with urllib.request.urlopen(f"http://{http}{READY_PATH}", timeout=1) as resp:
            if resp.status != 200:
                return None
            return Readiness.model_validate_json(resp.read())
    except (OSError, ValueError):
        return None


def wait_ready(http: str, timeout: float = 60.0, proc: subprocess.Popen[bytes] | None = None) -> bool:
    """Poll ``/readyz`` until the broker serves; False on timeout or as soon as ``proc`` exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            return False
        if readiness(http) is not None:
            return True
        time.sleep(0.1)
    return False
