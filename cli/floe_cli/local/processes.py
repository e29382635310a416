"""Starting one broker process and waiting until it serves."""

from __future__ import annotations

import subprocess
import sys
import time
import urllib.request


def broker_command(
    *, storage: str, cluster: str, host: str, kafka_port: int, http_port: int, extra: list[str]
) -> list[str]:
    return [
        sys.executable, "-m", "floe_broker.cli", "broker",
        "--storage", storage, "--cluster", cluster,
        "--listen", f"{host}:{kafka_port}", "--http", f"{host}:{http_port}",
        *extra,
    ]


def wait_ready(http: str, timeout: float = 60.0, proc: subprocess.Popen[bytes] | None = None) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            return False
        try:
            with urllib.request.urlopen(f"http://{http}/readyz", timeout=1) as resp:
                if resp.status == 200:
                    return True
        except OSError:
            pass
        time.sleep(0.1)
    return False
