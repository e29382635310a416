"""Rebalance times of the classic and the KIP-848 consumer protocol, side by side, printed (nothing is asserted).

    .venv/bin/python benchmarks/groups848.py --partitions 12 --rounds 3

One broker on file://, confluent-kafka members. For each protocol and round:
the time from a second member's subscribe until the two own disjoint halves
of the topic (join), and from one member's close until the other owns every
partition (leave). Both protocols get a 300 ms heartbeat interval (classic:
the client's ``heartbeat.interval.ms``; consumer: the broker's
``--group-consumer-heartbeat-interval-ms``) and no initial rebalance delay.
Figures on a shared, loaded machine are indicative only.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "broker")]

from confluent_kafka import Consumer  # noqa: E402

from tests.infra.broker import BrokerProcess, wait_until  # noqa: E402
from tests.test_clients import create_topic  # noqa: E402


def member(boot: str, group: str, topic: str, protocol: str) -> Consumer:
    conf: dict[str, object] = {"bootstrap.servers": boot, "group.id": group, "group.protocol": protocol,
                               "enable.auto.commit": False, "auto.offset.reset": "earliest"}
    if protocol == "classic":
        conf.update({"session.timeout.ms": 6000, "heartbeat.interval.ms": 300,
                     "partition.assignment.strategy": "cooperative-sticky"})
    c = Consumer(conf)
    c.subscribe([topic])
    return c


def split(members: list[Consumer], partitions: int) -> bool:
    owned = []
    for c in members:
        c.poll(0.02)
        owned.append({tp.partition for tp in c.assignment()})
    return all(owned) and sum(map(len, owned)) == partitions and set().union(*owned) == set(range(partitions))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--partitions", type=int, default=12)
    ap.add_argument("--rounds", type=int, default=3)
    ns = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="floe-groups848-"))
    broker = BrokerProcess(storage=f"file://{tmp / 'bucket'}", cluster="bench", log_path=tmp / "b.log", env={},
                           extra=["--group-consumer-heartbeat-interval-ms", "300",
                                  "--group-initial-rebalance-delay-ms", "0"])
    results: dict[str, dict[str, float]] = {}
    try:
        broker.start()
        topic = f"gb-{uuid.uuid4().hex[:6]}"
        create_topic(broker.bootstrap, topic, ns.partitions)
        for protocol in ("classic", "consumer"):
            joins, leaves = [], []
            for _ in range(ns.rounds):
                group = f"g-{protocol}-{uuid.uuid4().hex[:6]}"
                a = member(broker.bootstrap, group, topic, protocol)
                wait_until(lambda a=a: split([a], ns.partitions), 60, message="first member assigned")
                t0 = time.monotonic()
                b = member(broker.bootstrap, group, topic, protocol)
                wait_until(lambda a=a, b=b: split([a, b], ns.partitions), 60, message="two members share")
                joins.append(time.monotonic() - t0)
                t0 = time.monotonic()
                b.close()
                wait_until(lambda a=a: split([a], ns.partitions), 60, message="one member owns everything")
                leaves.append(time.monotonic() - t0)
                a.close()
            results[protocol] = {"join_s": round(statistics.median(joins), 2),
                                 "leave_s": round(statistics.median(leaves), 2)}
            print(f"{protocol:9} join {results[protocol]['join_s']:.2f} s  leave {results[protocol]['leave_s']:.2f} s"
                  f"  (median of {ns.rounds}, {ns.partitions} partitions)", flush=True)
        print(json.dumps(results))
    finally:
        broker.stop()


if __name__ == "__main__":
    main()
