"""The broker processes of one local cluster: start, drain, stop, and ``DIR/brokers.json``.

This is what the local loop has where the Kubernetes loop has a Deployment:
starting a broker is a process on the next free ports, stopping one is a
SIGTERM (the broker drains itself and exits 0). ``brokers.json`` is how the
spike scenario follows the fleet.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from floe_cli.local import processes
from floe_operator.balancing.admin import BrokerAdmin, BrokerAdminError


class EventLog:
    """``DIR/autoscale.jsonl``: one JSON object per event, ``t`` in Unix seconds."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()  # drain threads write too

    def write(self, event: str, **fields: Any) -> None:
        row = {"t": round(time.time(), 3), "event": event, **fields}
        with self._lock, open(self.path, "a") as f:
            f.write(json.dumps(row) + "\n")


def port_free(host: str, port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


@dataclass
class Broker:
    index: int
    kafka: str
    http: str
    proc: subprocess.Popen[bytes]
    log_path: Path
    started: float
    node: int | None = None
    ready_at: float | None = None
    draining_since: float | None = None
    exit_code: int | None = None


@dataclass
class Fleet:
    """The broker processes of one local cluster, on consecutive free ports."""

    state: Path
    storage: str
    cluster: str
    host: str
    kafka_port: int
    http_port: int
    extra: list[str]
    events: EventLog
    admin_for: Callable[[str], BrokerAdmin]  # a broker's admin API by its host:port
    brokers: list[Broker] = field(default_factory=list)
    _next: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def _ports(self) -> tuple[int, int]:
        while True:
            i = self._next
            self._next += 1
            k, h = self.kafka_port + i, self.http_port + i
            if port_free(self.host, k) and port_free(self.host, h):
                return k, h

    async def start(self, count: int) -> list[Broker]:
        """Start ``count`` brokers and wait until each is ready (or has exited); returns the ready ones."""
        new = await asyncio.to_thread(self._launch, count)
        for b in new:
            if await asyncio.to_thread(processes.wait_ready, b.http, proc=b.proc) and await self._identify(b):
                self.events.write("broker_ready", index=b.index, node=b.node, http=b.http,
                                  seconds=round((b.ready_at or 0.0) - b.started, 3))
            else:
                self.events.write("broker_failed", index=b.index, http=b.http, code=b.proc.poll())
                print(f"broker {b.index} at {b.http} did not become ready; see {b.log_path}", file=sys.stderr)
        self.save()
        return [b for b in new if b.ready_at is not None]

    def _launch(self, count: int) -> list[Broker]:
        env = dict(os.environ)
        env.setdefault("FLOE_LOG_FORMAT", "console")
        new: list[Broker] = []
        for _ in range(count):
            k, h = self._ports()
            index = len(self.brokers) + len(new)
            log_path = self.state / f"broker-{index}.log"
            cmd = processes.broker_command(storage=self.storage, cluster=self.cluster, host=self.host,
                                           kafka_port=k, http_port=h, extra=self.extra)
            with open(log_path, "ab") as out:
                proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)
            b = Broker(index, f"{self.host}:{k}", f"{self.host}:{h}", proc, log_path, time.time())
            new.append(b)
            self.events.write("broker_started", index=index, kafka=b.kafka, http=b.http, pid=proc.pid)
        with self._lock:
            self.brokers.extend(new)
        return new

    async def _identify(self, b: Broker) -> bool:
        """Learn the node id a ready broker took; False if it stopped answering since."""
        try:
            ready = await self.admin_for(b.http).readiness()
        except BrokerAdminError:
            return False
        b.ready_at, b.node = time.time(), ready.node
        return True

    def serving(self) -> list[Broker]:
        """Ready brokers that are not draining and still run: what the HPA counts."""
        with self._lock:
            return [b for b in self.brokers
                    if b.ready_at is not None and b.draining_since is None and b.proc.poll() is None]

    def running(self) -> list[Broker]:
        with self._lock:
            return [b for b in self.brokers if b.proc.poll() is None]

    def drain(self, b: Broker, *, timeout: float) -> threading.Thread:
        """SIGTERM (the broker drains itself and exits 0); a thread waits and records the exit."""
        b.draining_since = time.time()
        self.events.write("drain_started", index=b.index, node=b.node, http=b.http)
        b.proc.send_signal(signal.SIGTERM)
        self.save()

        def wait() -> None:
            try:
                code = b.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                b.proc.kill()
                code = b.proc.wait()
                print(f"broker {b.index} did not finish draining in {timeout}s; killed", file=sys.stderr)
            b.exit_code = code
            assert b.draining_since is not None
            self.events.write("drain_exited", index=b.index, node=b.node, code=code,
                              seconds=round(time.time() - b.draining_since, 3))
            if code != 0:
                print(f"broker {b.index} exited {code} after drain; see {b.log_path}", file=sys.stderr)
            self.save()

        t = threading.Thread(target=wait, name=f"drain-{b.index}", daemon=True)
        t.start()
        return t

    def save(self) -> None:
        with self._lock:
            rows = [{"index": b.index, "node": b.node, "kafka": b.kafka, "http": b.http, "pid": b.proc.pid,
                     "state": ("exited" if b.exit_code is not None or b.proc.poll() is not None
                               else "draining" if b.draining_since is not None
                               else "ready" if b.ready_at is not None else "starting")}
                    for b in self.brokers]
        tmp = self.state / "brokers.json.tmp"
        tmp.write_text(json.dumps(rows))
        tmp.replace(self.state / "brokers.json")

    def stop_all(self, timeout: float) -> None:
        """SIGTERM every broker still running and wait (blocking) for all of them."""
        for b in self.running():
            if b.draining_since is None:
                b.draining_since = time.time()
                b.proc.send_signal(signal.SIGTERM)
        for b in list(self.brokers):
            try:
                b.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                b.proc.kill()
                b.proc.wait()
        self.save()
