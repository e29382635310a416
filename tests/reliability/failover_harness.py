"""Failover as clients see it, on real broker processes: the harness the test and the benchmark share.

:func:`measure` kill -9s one broker of a loaded cluster and times, per partition
it led, the kill to the first acknowledged produce (librdkafka, acks=all);
:func:`soak` runs a loaded cluster with nobody killed and counts the sessions
the controller expired anyway (false failovers).
"""

from __future__ import annotations

import os
import statistics
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

from tests.infra.broker import BrokerProcess, wait_until


def create_topic(bootstrap: str, topic: str, partitions: int) -> None:
    """Create ``topic`` and wait until every partition has a leader."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(topic, partitions, 1)], operation_timeout=60)[topic].result(60)

    def led() -> bool:
        md = admin.list_topics(topic, timeout=10).topics.get(topic)
        return md is not None and md.error is None and len(md.partitions) == partitions \
            and all(p.leader >= 0 for p in md.partitions.values())

    wait_until(led, 60, message=f"{topic}: every partition has a leader")


@dataclass
class FailoverResult:
    victim: str
    victim_node: int
    moved: list[int]
    served_s: dict[int, float]  # partition -> seconds from the kill to its first ack after it
    metadata_s: float  # seconds until a survivor's /v1/cluster no longer named the victim
    settings: list[str] = field(default_factory=list)

    @property
    def worst_s(self) -> float:
        return max(self.served_s.values(), default=float("nan"))

    def summary(self) -> dict[str, object]:
        values = sorted(self.served_s.values())
        return {
            "victim": self.victim, "partitions_moved": len(self.moved),
            "metadata_s": round(self.metadata_s, 2),
            "first_ack_p50_s": round(statistics.median(values), 2) if values else None,
            "first_ack_max_s": round(self.worst_s, 2),
            "settings": " ".join(self.settings), "loadavg": round(os.getloadavg()[0], 1),
        }


class AckClock:
    """A producer thread writing to every partition, remembering each partition's latest ack time."""

    def __init__(self, bootstrap: str, topic: str, partitions: int, *, value_bytes: int = 100,
                 pause_s: float = 0.002) -> None:
        self.topic, self.partitions = topic, partitions
        self.value, self.pause_s = b"x" * value_bytes, pause_s
        self.producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 5,
                                  "message.timeout.ms": 60_000, "log_level": 2})
        self.last_ack: dict[int, float] = {}
        self.acked = 0
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _on_delivery(self, err, msg) -> None:  # type: ignore[no-untyped-def]
        if err is None:
            now = time.monotonic()
            with self.lock:
                self.last_ack[msg.partition()] = now
                self.acked += 1

    def _run(self) -> None:
        i = 0
        while not self.stop.is_set():
            try:
                self.producer.produce(self.topic, value=self.value, partition=i % self.partitions,
                                      on_delivery=self._on_delivery)
                i += 1
            except BufferError:
                pass
            self.producer.poll(0.001 if self.pause_s else 0)
            if self.pause_s:
                time.sleep(self.pause_s)
        self.producer.flush(60)

    def acked_since(self, t: float) -> dict[int, float]:
        with self.lock:
            return {p: at - t for p, at in self.last_ack.items() if at > t}

    def __enter__(self) -> AckClock:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(90)


def view(b: BrokerProcess) -> dict:  # type: ignore[type-arg]
    status, body = b.get("/v1/cluster")
    if status != 200:
        raise RuntimeError(f"/v1/cluster answered {status}")
    return body


def led_by(b: BrokerProcess, topic: str) -> dict[int, int]:
    return {p["partition"]: p["leader"] for p in view(b)["partitions"] if p["topic"] == topic}


@contextmanager
def cluster(workdir: Path, n: int, flags: list[str]) -> Iterator[list[BrokerProcess]]:
    """``n`` broker processes on one ``file://`` bucket; all killed on the way out."""
    bucket = f"file://{workdir / 'bucket'}"
    procs: list[BrokerProcess] = []
    try:
        for i in range(n):
            procs.append(BrokerProcess(storage=bucket, cluster="failover", log_path=workdir / f"broker-{i}.log",
                                       env={}, extra=["--fsync", "false", *flags]).start())
        wait_until(lambda: len(view(procs[0])["brokers"]) == n, 60, message=f"{n} brokers registered")
        yield procs
    finally:
        for p in procs:
            p.stop()


def node_of(procs: list[BrokerProcess], node: int) -> BrokerProcess:
    """The process registered as ``node`` (matched by its Kafka port)."""
    port = next(b["port"] for b in view(procs[0])["brokers"] if b["node_id"] == node)
    return next(p for p in procs if p.kafka_port == port)


def measure(workdir: Path, *, victim: str, brokers: int = 3, partitions: int = 12,
            flags: list[str] | None = None, timeout_s: float = 60,
            clock: Callable[[str, str, int], Any] = AckClock) -> FailoverResult:
    """One kill -9 of ``victim`` ("member" or "controller"); see the module docstring.

    ``clock`` makes the producer that times the acknowledgements from (bootstrap, topic,
    partitions): librdkafka's ``AckClock`` or ``java_ack_clock.JavaAckClock``."""
    flags = list(flags or [])
    with cluster(workdir, brokers, flags) as procs:
        topic = "failover"
        create_topic(procs[0].bootstrap, topic, partitions)
        with clock(",".join(p.bootstrap for p in procs), topic, partitions) as acks:
            wait_until(lambda: len(acks.acked_since(0)) == partitions, 90, message="every partition acked")
            state = view(procs[0])
            controller = int(state["controller"])
            leaders = led_by(procs[0], topic)
            counts = {n: sum(1 for v in leaders.values() if v == n) for n in set(leaders.values())}
            if victim == "controller":
                target = controller
            else:
                target = max((n for n in counts if n != controller), key=lambda n: counts[n])
            moved = sorted(p for p, n in leaders.items() if n == target)
            dead = node_of(procs, target)
            survivor = next(p for p in procs if p is not dead)
            t0 = time.monotonic()
            dead.kill9()
            wait_until(lambda: target not in led_by(survivor, topic).values(), timeout_s,
                       message="the victim's partitions handed over")
            metadata_s = time.monotonic() - t0
            wait_until(lambda: set(moved) <= set(acks.acked_since(t0)), timeout_s,
                       message="an ack on every moved partition")
            served = {p: s for p, s in acks.acked_since(t0).items() if p in moved}
        return FailoverResult(victim, target, moved, served, metadata_s, flags)


def expired_sessions(procs: list[BrokerProcess]) -> int:
    """Sessions the controller timed out, as the brokers' logs say."""
    return sum(p.log_text().count("broker session timed out") for p in procs)


def soak(workdir: Path, *, seconds: float, brokers: int = 3, partitions: int = 12,
         flags: list[str] | None = None) -> dict[str, object]:
    """Run a loaded cluster with nobody killed; count false failovers (expired live sessions)."""
    flags = list(flags or [])
    with cluster(workdir, brokers, flags) as procs:
        create_topic(procs[0].bootstrap, "soak", partitions)
        loads = []
        # As much as the producers can push: the brokers' event loops are as busy as two cores allow.
        clocks = [AckClock(",".join(p.bootstrap for p in procs), "soak", partitions, value_bytes=4096, pause_s=0)
                  for _ in range(3)]
        for c in clocks:
            c.__enter__()
        try:
            deadline = time.monotonic() + seconds
            while time.monotonic() < deadline:
                time.sleep(min(5.0, max(0.0, deadline - time.monotonic())))
                loads.append(os.getloadavg()[0])
        finally:
            for c in clocks:
                c.__exit__()
        alive = sum(1 for p in procs if p.proc is not None and p.proc.poll() is None)
        return {"seconds": seconds, "expired_sessions": expired_sessions(procs), "alive": alive,
                "acked": sum(c.acked for c in clocks), "settings": " ".join(flags),
                "loadavg_max": round(max(loads, default=0.0), 1)}
