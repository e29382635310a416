"""Pieces the benchmark scripts share: the librdkafka workloads, /metrics parsing, /proc sampling.

Every workload talks to a bootstrap address only, so the same function drives
a Floe broker and an Apache Kafka broker (``benchmarks/vs_kafka.py``).
"""

from __future__ import annotations

import os
import re
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path[:0] = [str(ROOT), str(ROOT / "broker")]

from confluent_kafka import Consumer, Producer, TopicPartition  # noqa: E402
from confluent_kafka.admin import AdminClient, NewTopic  # noqa: E402

PRODUCER_CONFIG: dict[str, object] = {
    "acks": "all", "linger.ms": 5, "batch.size": 1024 * 1024,
    "queue.buffering.max.kbytes": 512 * 1024, "compression.type": "none",
}
CONSUMER_CONFIG: dict[str, object] = {
    "enable.auto.commit": False, "fetch.max.bytes": 64 * 1024 * 1024,
    "max.partition.fetch.bytes": 16 * 1024 * 1024, "queued.max.messages.kbytes": 256 * 1024,
}


def metric(text: str, name: str) -> float:
    """One unlabelled sample of a Prometheus text exposition (0 when absent)."""
    m = re.search(rf"^{name} ([0-9.e+]+)$", text, re.M)
    return float(m.group(1)) if m else 0.0


def metric_sum(text: str, name: str) -> float:
    """The sum of every labelled sample of ``name`` (for example all key kinds of a store counter)."""
    return sum(float(v) for v in re.findall(rf"^{name}(?:{{[^}}]*}})? ([0-9.e+]+)$", text, re.M))


def pct(values: list[float], q: float) -> float:
    """The ``q`` quantile of ``values`` (nearest rank), NaN when empty."""
    s = sorted(values) or [float("nan")]
    return s[min(len(s) - 1, max(0, int(len(s) * q) - 1))]


def create_topic(bootstrap: str, topic: str, partitions: int, replication: int = 1, timeout: float = 120) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(topic, partitions, replication)], operation_timeout=timeout)[topic].result(timeout)
    # Wait until every partition has a leader: the first produces must not measure leader election.
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        md = admin.list_topics(topic, timeout=10).topics.get(topic)
        if md is not None and md.error is None and len(md.partitions) == partitions \
                and all(p.leader >= 0 for p in md.partitions.values()):
            return
        time.sleep(0.2)
    raise TimeoutError(f"topic {topic}: not every partition has a leader after {timeout}s")


def producer(bootstrap: str, **overrides: object) -> Producer:
    return Producer({"bootstrap.servers": bootstrap, **PRODUCER_CONFIG, **overrides})


def produce_saturated(p: Producer, topic: str, value: bytes, count: int,
                      progress: bool = True) -> tuple[list[float], float]:
    """Produce ``count`` records as fast as the producer accepts them.

    Returns each acknowledged record's latency (enqueue to delivery report) and
    the seconds until the last acknowledgement.
    """
    latencies: list[float] = []
    t0 = time.perf_counter()
    sent = 0
    last_report = t0

    def cb(err, _msg, start):  # type: ignore[no-untyped-def]
        if err is None:
            latencies.append(time.perf_counter() - start)

    while sent < count:
        now = time.perf_counter()
        try:
            p.produce(topic, value=value, on_delivery=lambda e, m, s=now: cb(e, m, s))  # type: ignore[misc]
            sent += 1
        except BufferError:
            p.poll(0.001)
        if progress and now - last_report > 2:
            print(f"  produced {sent}/{count}", file=sys.stderr, flush=True)
            last_report = now
    p.flush(300)
    return latencies, time.perf_counter() - t0


def produce_at_rate(p: Producer, topic: str, value: bytes, per_sec: float, seconds: float) -> list[float]:
    """Produce at a fixed ``per_sec`` records per second for ``seconds``; each acknowledged record's latency.

    Saturation latency is queueing; latency at a rate the server sustains is its service time.
    """
    rate_lat: list[float] = []
    t_lat = time.perf_counter()
    n = 0
    while time.perf_counter() - t_lat < seconds:
        due = t_lat + n / per_sec
        now = time.perf_counter()
        if now < due:
            p.poll(min(due - now, 0.001))
            continue
        try:
            p.produce(topic, value=value,
                      on_delivery=lambda e, m, s=now: None if e else rate_lat.append(time.perf_counter() - s))  # type: ignore[misc]
            n += 1
        except BufferError:
            p.poll(0.001)
    p.flush(120)
    return rate_lat


def consume_all(bootstrap: str, topic: str, partitions: int, expected: int,
                timeout: float = 300) -> tuple[int, int, float]:
    """Read ``expected`` records from offset 0 of every partition: (records, value bytes, seconds)."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"bench-{topic}", **CONSUMER_CONFIG})
    c.assign([TopicPartition(topic, i, 0) for i in range(partitions)])
    got = 0
    nbytes = 0
    t1 = time.perf_counter()
    while got < expected and time.perf_counter() - t1 < timeout:
        for m in c.consume(10000, 1.0):
            if not m.error():
                got += 1
                nbytes += len(m.value() or b"")
    seconds = time.perf_counter() - t1
    c.close()
    return got, nbytes, seconds


def latency_ms(latencies: list[float]) -> dict[str, float]:
    return {"p50_ms": round(statistics.median(latencies) * 1000, 2) if latencies else float("nan"),
            "p99_ms": round(pct(latencies, 0.99) * 1000, 2)}


CLK_TCK = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class ProcSample:
    """What /proc says about one server process at one moment."""

    cpu_seconds: float  # user + system time
    peak_rss_bytes: int  # VmHWM: the resident set's high-water mark since start
    write_bytes: int  # bytes this process caused to be sent to the block layer (/proc/<pid>/io)


def proc_sample(pid: int) -> ProcSample:
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2:].split()  # the command name may hold spaces: split after it
    cpu = (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime, stime
    hwm = 0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            hwm = int(line.split()[1]) * 1024
    write_bytes = 0
    try:
        for line in Path(f"/proc/{pid}/io").read_text().splitlines():
            if line.startswith("write_bytes:"):
                write_bytes = int(line.split()[1])
    except OSError:
        pass
    return ProcSample(cpu, hwm, write_bytes)


def machine() -> str:
    import platform

    return (f"{platform.machine()} {os.cpu_count()} cores, {platform.python_implementation()} "
            f"{platform.python_version()}")
