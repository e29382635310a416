"""Real ``floe broker`` processes for tests: start, wait ready, SIGTERM, kill -9.

Tests talk to these processes only through real Kafka clients and HTTP, the
way users do. Every process is tracked and killed at teardown.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(predicate, timeout: float, interval: float = 0.05, message: str = "condition"):  # type: ignore[no-untyped-def]
    """Poll ``predicate`` until it returns a truthy value; fail with ``message``."""
    deadline = time.monotonic() + timeout
    last_exc: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = predicate()
            if value:
                return value
        except Exception as exc:  # noqa: BLE001 - polled conditions may fail transiently
            last_exc = exc
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout}s waiting for {message} (last error: {last_exc!r})")


@dataclass
class BrokerProcess:
    storage: str
    cluster: str
    log_path: Path
    env: dict[str, str]
    extra: list[str] = field(default_factory=list)
    kafka_port: int = field(default_factory=free_port)
    http_port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.kafka_port}"

    @property
    def http(self) -> str:
        return f"127.0.0.1:{self.http_port}"

    def command(self) -> list[str]:
        """The broker's command line; a subclass may wrap it (``ip netns exec``)."""
        return [
            sys.executable, "-m", "floe_cli", "broker",
            "--storage", self.storage, "--cluster", self.cluster,
            "--listen", self.bootstrap, "--http", self.http,
            *self.extra,
        ]

    def start(self, *, wait: bool = True, timeout: float = 60) -> BrokerProcess:
        cmd = self.command()
        source_roots = os.pathsep.join(str(ROOT / root) for root in ("api", "broker", "cli"))
        env = {**os.environ, "PYTHONPATH": source_roots, "FLOE_LOG_FORMAT": "json", **self.env}
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT, env=env)
        if wait:
            self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout: float = 60) -> None:
        def ready() -> bool:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"broker exited with {self.proc.returncode}:\n{self.log_tail()}")
            return self.get("/readyz")[0] == 200

        try:
            wait_until(ready, timeout, message=f"broker {self.http} ready")
        except TimeoutError as exc:
            raise TimeoutError(f"{exc}\n{self.log_tail()}") from None

    def get(self, path: str) -> tuple[int, dict]:  # type: ignore[type-arg]
        try:
            with urllib.request.urlopen(f"http://{self.http}{path}", timeout=2) as resp:
                body = resp.read()
                return resp.status, json.loads(body) if body.startswith(b"{") else {"text": body.decode()}
        except urllib.error.HTTPError as exc:
            return exc.code, {}
        except OSError:
            return 0, {}

    def metrics_text(self) -> str:
        with urllib.request.urlopen(f"http://{self.http}/metrics", timeout=5) as resp:
            return resp.read().decode()

    def kill9(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def terminate(self, timeout: float = 60) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)
        if getattr(self, "_log", None):
            self._log.close()

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")
