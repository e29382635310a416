"""Consumer-group figures on a 3-broker file:// cluster, printed (nothing is asserted).

    .venv/bin/python benchmarks/groups.py --commits 500

- OffsetCommit latency (a synchronous commit from confluent-kafka, answered
  once the record is durable in the WAL): p50/p99.
- Rebalance time: from a new member's subscribe until it and the existing
  members own disjoint partitions covering the topic.
- Coordinator move: the offsets partition of the group is reassigned while a
  member commits every 50 ms; the figure is the longest gap between two
  successful commits around the move.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "broker")]

from confluent_kafka import Consumer, KafkaException, TopicPartition  # noqa: E402

from floe_broker.groups.coordinator import OFFSETS_TOPIC, partition_for  # noqa: E402
from tests.infra.broker import BrokerProcess, wait_until  # noqa: E402
from tests.test_clients import create_topic  # noqa: E402
from tests.test_cluster import cluster_view, post  # noqa: E402


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, max(0, int(len(s) * q) - 1))]


def member(boot: str, group: str, topic: str) -> Consumer:
    c = Consumer({"bootstrap.servers": boot, "group.id": group, "enable.auto.commit": False,
                  "session.timeout.ms": 6000, "heartbeat.interval.ms": 300, "auto.offset.reset": "earliest"})
    c.subscribe([topic])
    return c


def covered(members: list[Consumer], partitions: int) -> bool:
    owned: list[set[int]] = []
    for c in members:
        c.poll(0.02)
        owned.append({tp.partition for tp in c.assignment()})
    union = set().union(*owned)
    return all(owned) and sum(map(len, owned)) == partitions and union == set(range(partitions))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--commits", type=int, default=500)
    ap.add_argument("--partitions", type=int, default=12)
    ns = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="floe-groups-"))
    store = f"file://{tmp / 'bucket'}"
    procs = [BrokerProcess(storage=store, cluster="bench", log_path=tmp / f"b{i}.log", env={},
                           extra=["--session-timeout-ms", "3000"]) for i in range(3)]
    try:
        for p in procs:
            p.start()
        wait_until(lambda: len(cluster_view(procs[0])["brokers"]) == 3, 30, message="3 brokers")
        boot = ",".join(p.bootstrap for p in procs)
        topic, group = f"gb-{uuid.uuid4().hex[:6]}", f"g-{uuid.uuid4().hex[:6]}"
        create_topic(boot, topic, ns.partitions)

        a = member(boot, group, topic)
        wait_until(lambda: covered([a], ns.partitions), 60, message="first member assigned")
        lat = []
        for i in range(ns.commits):
            t0 = time.perf_counter()
            a.commit(offsets=[TopicPartition(topic, i % ns.partitions, i)], asynchronous=False)
            lat.append((time.perf_counter() - t0) * 1000)
        print(f"OffsetCommit (sync, durable): p50 {pct(lat, 0.5):.1f} ms  p99 {pct(lat, 0.99):.1f} ms "
              f"over {ns.commits}", flush=True)

        t0 = time.monotonic()
        b = member(boot, group, topic)
        wait_until(lambda: covered([a, b], ns.partitions), 60, message="two members share the topic")
        rebalance_s = time.monotonic() - t0
        print(f"rebalance for a joining member: {rebalance_s:.2f} s", flush=True)

        parts = {p["partition"]: p["leader"] for p in cluster_view(procs[0])["partitions"]
                 if p["topic"] == OFFSETS_TOPIC}
        index = partition_for(group, len(parts))
        target = 1 + parts[index] % 3
        ok_times: list[float] = []
        moved_at = 0.0
        deadline = time.monotonic() + 20
        i = 0
        while time.monotonic() < deadline:
            for c in (a, b):
                c.poll(0.01)
            if not moved_at and time.monotonic() > deadline - 15:
                moved_at = time.monotonic()
                post(procs[0].http, "/v1/reassignments",
                     {"moves": [{"topic": OFFSETS_TOPIC, "partition": index, "to": target}]})
            own = a.assignment()
            if own:
                try:
                    a.commit(offsets=[TopicPartition(own[0].topic, own[0].partition, i)], asynchronous=False)
                    ok_times.append(time.monotonic())
                except KafkaException:
                    pass
            i += 1
            time.sleep(0.05)
        around = [t for t in ok_times if moved_at - 2 <= t <= moved_at + 10]
        gap = max((y - x for x, y in zip(around, around[1:], strict=False)), default=float("nan"))
        print(f"coordinator move: longest gap between successful commits {gap * 1000:.0f} ms", flush=True)
        a.close()
        b.close()
        print(json.dumps({"commit_p50_ms": round(pct(lat, 0.5), 2), "commit_p99_ms": round(pct(lat, 0.99), 2),
                          "rebalance_s": round(rebalance_s, 2), "coordinator_move_gap_ms": round(gap * 1000),
                          "python": platform.python_version()}))
    finally:
        for p in procs:
            p.stop()


if __name__ == "__main__":
    main()
