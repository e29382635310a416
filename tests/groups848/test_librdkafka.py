"""KIP-848 consumer groups with librdkafka (``group.protocol=consumer``): what a user of confluent-kafka sees.

Members come and go in a group over 12 partitions; at every moment sampled,
no partition is owned by two members, every record is consumed, and
committed offsets survive the changes.
"""

from __future__ import annotations

import time
import uuid

from confluent_kafka import Consumer, KafkaException, TopicPartition

from tests.groups848.conftest import FAST_848
from tests.infra.broker import wait_until
from tests.test_clients import create_topic, produce_all

PARTITIONS = 12


def name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def consumer(bootstrap: str, group: str, label: str, **conf: object) -> Consumer:
    return Consumer({"bootstrap.servers": bootstrap, "group.id": group, "client.id": label,
                     "group.protocol": "consumer", "auto.offset.reset": "earliest",
                     "enable.auto.commit": True, "auto.commit.interval.ms": 200,
                     "topic.metadata.refresh.interval.ms": 1000, **conf})


class Members:
    """confluent-kafka members of one group, polled round-robin; checks single ownership on every sample."""

    def __init__(self) -> None:
        self.members: dict[str, Consumer] = {}
        self.seen: set[tuple[str, int, int]] = set()
        self.samples = 0

    def add(self, label: str, c: Consumer, topics: list[str]) -> None:
        c.subscribe(topics)
        self.members[label] = c

    def remove(self, label: str) -> None:
        self.members.pop(label).close()

    def pump(self, seconds: float = 0.2) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            for c in self.members.values():
                m = c.poll(0.02)
                if m is None:
                    continue
                if m.error():
                    raise KafkaException(m.error())
                self.seen.add((m.topic(), m.partition(), m.offset()))
            self.check_single_owner()

    def owned(self) -> dict[str, set[tuple[str, int]]]:
        return {label: {(tp.topic, tp.partition) for tp in c.assignment()} for label, c in self.members.items()}

    def check_single_owner(self) -> None:
        owned = self.owned()
        union: set[tuple[str, int]] = set()
        for parts in owned.values():
            assert not union & parts, f"partitions {sorted(union & parts)} owned twice: {owned}"
            union |= parts
        self.samples += 1

    def spread(self, expected: dict[str, int]) -> bool:
        self.pump(0.1)
        return {label: len(p) for label, p in self.owned().items()} == expected

    def close(self) -> None:
        for c in self.members.values():
            c.close()
        self.members.clear()


def test_two_members_share_twelve_partitions_through_leave_and_rejoin(brokers, file_store) -> None:  # type: ignore[no-untyped-def]
    b = brokers(file_store, *FAST_848)
    topic, group = name("t848"), name("g848")
    create_topic(b.bootstrap, topic, PARTITIONS)
    produce_all(b.bootstrap, [(topic, p, None, f"{p}:{i}".encode(), None, None)
                              for i in range(5) for p in range(PARTITIONS)])
    g = Members()
    try:
        g.add("a", consumer(b.bootstrap, group, "a"), [topic])
        g.add("b", consumer(b.bootstrap, group, "b"), [topic])
        wait_until(lambda: g.spread({"a": 6, "b": 6}), 60, message="two members with six partitions each")
        wait_until(lambda: (g.pump(0.1), len(g.seen) == 5 * PARTITIONS)[1], 60, message="every record consumed")
        g.remove("b")
        wait_until(lambda: g.spread({"a": 12}), 60, message="the one left owns all twelve")
        g.add("b", consumer(b.bootstrap, group, "b2"), [topic])
        wait_until(lambda: g.spread({"a": 6, "b": 6}), 60, message="balanced again after the rejoin")
        produce_all(b.bootstrap, [(topic, p, None, b"more", None, None) for p in range(PARTITIONS)])
        wait_until(lambda: (g.pump(0.1), len(g.seen) == 6 * PARTITIONS)[1], 60, message="new records consumed")
        wait_until(lambda: (g.pump(0.1), committed(g.members["a"], topic) == [6] * PARTITIONS)[1], 60,
                   message="auto-commit reached the end of every partition")
    finally:
        g.close()  # a final commit, then leave
    assert g.samples > 10
    probe = consumer(b.bootstrap, group, "probe")
    try:
        assert committed(probe, topic) == [6] * PARTITIONS, "commits survive the membership changes"
    finally:
        probe.close()


def committed(c: Consumer, topic: str) -> list[int]:
    return [tp.offset for tp in c.committed([TopicPartition(topic, p) for p in range(PARTITIONS)], timeout=30)]
