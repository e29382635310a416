"""A local Prometheus process for ``floe local up --autoscale``, read through the operator's reader.

It scrapes every broker's ``/metrics`` (file_sd targets, rewritten as brokers
come and go) and answers the same PromQL the Kubernetes loop sends, through
the same :class:`floe_operator.balancing.prometheus.PrometheusReader`.
"""

from __future__ import annotations

import json
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

from floe_operator.balancing.load import LoadSnapshot
from floe_operator.balancing.prometheus import PrometheusReader


def duration(seconds: float) -> str:
    """A Prometheus duration (integer units only: 0.5 s is ``500ms``)."""
    return f"{max(1, round(seconds * 1000))}ms"


class LocalPrometheus:
    """The process under ``DIR/prometheus`` and a reader of it; :meth:`close` stops it."""

    def __init__(self, binary: str, state: Path, *, window: float, scrape_interval: float, port: int,
                 host: str = "127.0.0.1", balance_window: float | None = None) -> None:
        self.dir = state / "prometheus"
        shutil.rmtree(self.dir, ignore_errors=True)
        (self.dir / "tsdb").mkdir(parents=True)
        if port == 0:
            with socket.socket() as s:
                s.bind((host, 0))
                port = int(s.getsockname()[1])
        self.url = f"http://{host}:{port}"
        scrape = duration(scrape_interval)
        self.targets_file = self.dir / "targets.json"
        self._last_targets: list[str] | None = None
        self.targets([])
        (self.dir / "prometheus.yml").write_text(
            "global:\n"
            f"  scrape_interval: {scrape}\n"
            f"  scrape_timeout: {scrape}\n"
            f"  evaluation_interval: {scrape}\n"
            "scrape_configs:\n"
            "  - job_name: floe\n"
            "    file_sd_configs:\n"
            f"      - files: ['{self.targets_file}']\n"
            "        refresh_interval: 1s\n"
        )
        self.log = open(self.dir / "prometheus.log", "ab")  # noqa: SIM115 - closed in close()
        self.proc = subprocess.Popen(
            [binary, f"--config.file={self.dir / 'prometheus.yml'}", f"--storage.tsdb.path={self.dir / 'tsdb'}",
             f"--web.listen-address={host}:{port}", "--storage.tsdb.retention.time=2h"],
            stdout=self.log, stderr=subprocess.STDOUT,
        )
        self._wait_ready(30.0)
        # rate() needs two samples inside the window.
        self.reader = PrometheusReader(
            self.url,
            rate_window=duration(max(window, 2 * scrape_interval)),
            balance_window=duration(max(balance_window or window, 2 * scrape_interval)),
            timeout_seconds=5.0,
        )

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"prometheus exited {self.proc.returncode}; see {self.dir / 'prometheus.log'}")
            try:
                with urllib.request.urlopen(f"{self.url}/-/ready", timeout=1):
                    return
            except OSError:
                time.sleep(0.1)
        self.close()
        raise RuntimeError(f"prometheus did not become ready in {timeout:g} s")

    def targets(self, https: list[str]) -> None:
        if self._last_targets == sorted(https):
            return
        self._last_targets = sorted(https)
        tmp = self.targets_file.with_suffix(".tmp")
        tmp.write_text(json.dumps([{"targets": sorted(https), "labels": {"job": "floe"}}]))
        tmp.replace(self.targets_file)

    async def sample(self) -> None:
        """Nothing to do: Prometheus scrapes on its own."""

    async def load(self) -> LoadSnapshot:
        return await self.reader.load()

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        shutil.rmtree(self.dir / "tsdb", ignore_errors=True)
