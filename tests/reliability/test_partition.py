"""A network partition: one broker cut off from the controller (and its clients) but still reaching the bucket.

The broker runs in its own network namespace, joined to the others by a veth
pair; taking the host's end down cuts it off while the ``file://`` bucket
stays reachable. The controller must fail it and move its partitions; the
cut-off broker must learn from the bucket that it was failed and exit 3; and
every acknowledged record must be at its offset. Skipped where network
namespaces cannot be made (not root, no iproute2).
"""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.infra.broker import ROOT, BrokerProcess, free_port, wait_until
from tests.test_clients import create_topic
from tests.test_cluster import Ledger, cluster_view, leaders


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=10)


@dataclass
class Link:
    netns: str
    host_if: str
    host_ip: str
    ns_ip: str


@pytest.fixture
def link() -> Iterator[Link]:
    if shutil.which("ip") is None or os.geteuid() != 0:
        pytest.skip("needs root and iproute2 for a network namespace")
    tag = uuid.uuid4().hex[:6]
    net = random.randrange(1, 250)
    ln = Link(f"floe-{tag}", f"fl{tag}a", f"10.251.{net}.1", f"10.251.{net}.2")
    try:
        ip("netns", "add", ln.netns)
    except (subprocess.CalledProcessError, OSError) as exc:
        pytest.skip(f"cannot create a network namespace here: {exc}")
    try:
        ip("link", "add", ln.host_if, "type", "veth", "peer", "name", f"fl{tag}b")
        ip("link", "set", f"fl{tag}b", "netns", ln.netns)
        ip("addr", "add", f"{ln.host_ip}/24", "dev", ln.host_if)
        ip("link", "set", ln.host_if, "up")
        ip("netns", "exec", ln.netns, "ip", "addr", "add", f"{ln.ns_ip}/24", "dev", f"fl{tag}b")
        ip("netns", "exec", ln.netns, "ip", "link", "set", f"fl{tag}b", "up")
        ip("netns", "exec", ln.netns, "ip", "link", "set", "lo", "up")
        yield ln
    finally:
        subprocess.run(["ip", "link", "del", ln.host_if], capture_output=True, timeout=10)
        subprocess.run(["ip", "netns", "del", ln.netns], capture_output=True, timeout=10)


@dataclass
class PlacedBroker(BrokerProcess):
    """A broker on a given address, optionally inside a network namespace."""

    host: str = "127.0.0.1"
    netns: str | None = None

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.kafka_port}"

    @property
    def http(self) -> str:
        return f"{self.host}:{self.http_port}"

    def start(self, *, wait: bool = True, timeout: float = 60) -> BrokerProcess:
        cmd = [sys.executable, "-m", "floe_cli", "broker", "--storage", self.storage, "--cluster", self.cluster,
               "--listen", self.bootstrap, "--http", self.http, *self.extra]
        if self.netns:
            cmd = ["ip", "netns", "exec", self.netns, *cmd]
        source_roots = os.pathsep.join(str(ROOT / root) for root in ("api", "broker", "cli"))
        env = {**os.environ, "PYTHONPATH": source_roots, "FLOE_LOG_FORMAT": "json", **self.env}
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT, env=env)
        if wait:
            self.wait_ready(timeout)
        return self


def test_a_broker_cut_off_from_the_controller_is_failed_and_stops(link: Link, tmp_path: Path) -> None:
    bucket = f"file://{tmp_path / 'bucket'}"
    flags = ["--fsync", "false"]

    def broker(i: int, host: str, netns: str | None = None) -> PlacedBroker:
        return PlacedBroker(storage=bucket, cluster="netns", log_path=tmp_path / f"broker-{i}.log", env={},
                            extra=flags, kafka_port=free_port(), http_port=free_port(), host=host, netns=netns)

    procs = [broker(0, link.host_ip).start(), broker(1, link.host_ip).start()]
    try:
        procs.append(broker(2, link.ns_ip, link.netns).start())
        wait_until(lambda: len(cluster_view(procs[0])["brokers"]) == 3, 30, message="3 brokers registered")
        topic = f"cut-{uuid.uuid4().hex[:6]}"
        create_topic(procs[0].bootstrap, topic, 6)
        cut = procs[2]
        with Ledger(f"{procs[0].bootstrap},{procs[1].bootstrap}", topic, 6) as ledger:
            wait_until(lambda: ledger.count() > 300, 30, message="acks before the cut")
            assert 3 in leaders(procs[0], topic).values()
            ip("link", "set", link.host_if, "down")
            t0 = time.monotonic()
            wait_until(lambda: 3 not in leaders(procs[0], topic).values(), 20,
                       message="the cut-off broker's partitions moved")
            assert cut.proc is not None
            code = cut.proc.wait(30)
            print(f"cut-off broker failed after {time.monotonic() - t0:.1f} s; exit code {code}")
            assert code == 3, cut.log_tail()
            assert "seen in the bucket" in cut.log_text()
            n = ledger.count()
            wait_until(lambda: ledger.count() > n + 300, 30, message="acks after the cut")
        ledger.verify(procs[0].bootstrap)
    finally:
        for p in procs:
            p.stop()
