"""KIP-848 groups across coordinator failures, regex subscriptions, and protocol mixing, with librdkafka.

- The coordinator broker is killed -9 (or drained) mid-group: the members find the new
  coordinator (which rebuilt the group from ``__consumer_offsets``), keep
  their partitions and consume on from the committed offsets.
- A regex subscription picks up a topic created after the group formed, and
  partitions added to a topic it matches.
- A classic consumer and a consumer-protocol consumer in the same group: the
  second one is refused with Kafka's error.
"""

from __future__ import annotations

import time

import pytest
from confluent_kafka import Consumer, KafkaError, TopicPartition
from confluent_kafka.admin import AdminClient, NewPartitions

from tests.groups848.conftest import FAST_848
from tests.groups848.test_librdkafka import Members, consumer, name
from tests.infra.broker import BrokerProcess, wait_until
from tests.test_clients import create_topic, produce_all
from tests.test_cluster import start_cluster
from tests.test_groups import cluster_node, coordinator_of


def fill(bootstrap: str, topic: str, partitions: int, count: int) -> None:
    produce_all(bootstrap, [(topic, p, None, b"x", None, None) for _ in range(count) for p in range(partitions)])


def committed(c: Consumer, topic: str, partitions: int) -> list[int]:
    return [tp.offset for tp in c.committed([TopicPartition(topic, p) for p in range(partitions)], timeout=30)]


@pytest.mark.parametrize("how", ["kill9", "drain"])
def test_coordinator_lost_mid_group_members_continue_from_committed_offsets(brokers, file_store, how) -> None:  # type: ignore[no-untyped-def]
    procs = start_cluster(brokers, file_store, 2, *FAST_848)
    boot = ",".join(p.bootstrap for p in procs)
    topic, group = name("t848k"), name("g848k")
    create_topic(boot, topic, 6)
    fill(boot, topic, 6, 10)
    g = Members()
    try:
        g.add("a", consumer(boot, group, "a"), [topic])
        g.add("b", consumer(boot, group, "b"), [topic])
        wait_until(lambda: g.spread({"a": 3, "b": 3}), 60, message="three partitions each")
        wait_until(lambda: (g.pump(0.1), len(g.seen) == 60)[1], 60, message="first 60 records")
        wait_until(lambda: (g.pump(0.1), committed(g.members["a"], topic, 6) == [10] * 6)[1], 60,
                   message="auto-commit of the first records")
        before = g.owned()
        _, node = coordinator_of(procs, group)
        victim: BrokerProcess = next(p for p in procs if cluster_node(p) == node)
        if how == "kill9":
            victim.kill9()
        else:
            assert victim.terminate(60) == 0, victim.log_tail()  # SIGTERM: a drain, then exit
        alive = next(p for p in procs if p is not victim)
        wait_until(lambda: coordinator_of([alive], group)[1] == cluster_node(alive), 60,
                   message="offsets partition failed over")
        fill(alive.bootstrap, topic, 6, 5)
        wait_until(lambda: (g.pump(0.1), len(g.seen) == 90)[1], 90, message="records after the crash")
        assert len({(t, p, o) for t, p, o in g.seen if o < 10}) == 60, "nothing re-read below the commits"
        wait_until(lambda: (g.pump(0.1), committed(g.members["a"], topic, 6) == [15] * 6)[1], 60,
                   message="commits at the new coordinator")
        assert g.owned() == before, "the members kept their partitions across the crash"
    finally:
        g.close()


def test_regex_subscription_picks_up_a_new_topic(brokers, file_store) -> None:  # type: ignore[no-untyped-def]
    b = brokers(file_store, *FAST_848, "--auto-create-topics", "false")
    prefix = name("rx")
    create_topic(b.bootstrap, f"{prefix}-one", 2)
    create_topic(b.bootstrap, "unrelated-" + prefix, 2)
    g = Members()
    try:
        g.add("a", consumer(b.bootstrap, name("g848r"), "a"), [f"^{prefix}-.*"])
        wait_until(lambda: (g.pump(0.1), g.owned()["a"] == {(f"{prefix}-one", 0), (f"{prefix}-one", 1)})[1], 60,
                   message="the matching topic assigned")
        create_topic(b.bootstrap, f"{prefix}-two", 3)
        wait_until(lambda: (g.pump(0.1), len(g.owned()["a"]) == 5)[1], 60, message="the new topic picked up")
        produce_all(b.bootstrap, [(f"{prefix}-two", p, None, b"new", None, None) for p in range(3)])
        wait_until(lambda: (g.pump(0.1), {(t, p) for t, p, _ in g.seen} == {(f"{prefix}-two", p) for p in range(3)})[1],
                   60, message="records of the new topic consumed")
        admin = AdminClient({"bootstrap.servers": b.bootstrap})
        admin.create_partitions([NewPartitions(f"{prefix}-one", 4)])[f"{prefix}-one"].result(30)
        wait_until(lambda: (g.pump(0.1), len(g.owned()["a"]) == 7)[1], 60, message="the new partitions picked up")
    finally:
        g.close()


def first_error(c: Consumer, seconds: float) -> KafkaError | None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        m = c.poll(0.2)
        if m is not None and m.error() is not None:
            return m.error()
    return None


def test_classic_and_consumer_protocol_members_never_share_a_group(brokers, file_store) -> None:  # type: ignore[no-untyped-def]
    b = brokers(file_store, *FAST_848)
    topic = name("tmix")
    create_topic(b.bootstrap, topic, 2)
    # A consumer-protocol group first: a classic member is refused.
    group = name("gmix")
    modern = consumer(b.bootstrap, group, "modern")
    modern.subscribe([topic])
    classic = Consumer({"bootstrap.servers": b.bootstrap, "group.id": group, "group.protocol": "classic",
                        "session.timeout.ms": 6000, "heartbeat.interval.ms": 300})
    try:
        wait_until(lambda: (modern.poll(0.1), len(modern.assignment()) == 2)[1], 60, message="modern member assigned")
        classic.subscribe([topic])
        err = first_error(classic, 30)
        assert err is not None and err.code() == KafkaError.INCONSISTENT_GROUP_PROTOCOL, err
    finally:
        classic.close()
        modern.close()
    # A classic group first: a consumer-protocol member is told the group is not a consumer group.
    group = name("gmix")
    classic = Consumer({"bootstrap.servers": b.bootstrap, "group.id": group, "group.protocol": "classic",
                        "session.timeout.ms": 6000, "heartbeat.interval.ms": 300})
    classic.subscribe([topic])
    modern = consumer(b.bootstrap, group, "modern")
    try:
        wait_until(lambda: (classic.poll(0.1), len(classic.assignment()) == 2)[1], 60,
                   message="classic member assigned")
        modern.subscribe([topic])
        err = first_error(modern, 30)
        # librdkafka treats Kafka's GROUP_ID_NOT_FOUND here as fatal for the consumer, as against Kafka
        assert err is not None and err.code() == KafkaError._FATAL and "group id does not exist" in err.str(), err
        assert modern.assignment() == []
    finally:
        modern.close()
        classic.close()


def test_static_member_restart_keeps_its_partitions(brokers, file_store) -> None:  # type: ignore[no-untyped-def]
    """KIP-848 static membership: a closed static member's partitions wait for its next incarnation."""
    b = brokers(file_store, *FAST_848)
    topic, group = name("ts848"), name("gs848")
    create_topic(b.bootstrap, topic, 4)
    g = Members()
    try:
        g.add("a", consumer(b.bootstrap, group, "a", **{"group.instance.id": "pod-a"}), [topic])
        g.add("b", consumer(b.bootstrap, group, "b", **{"group.instance.id": "pod-b"}), [topic])
        wait_until(lambda: g.spread({"a": 2, "b": 2}), 60, message="two partitions each")
        before = g.owned()["b"]
        g.remove("b")  # a static member's close leaves with epoch -2: its place is kept
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:
            g.pump(0.1)
            assert len(g.owned()["a"]) == 2, "the static member's partitions went to another member"
        g.add("b", consumer(b.bootstrap, group, "b-again", **{"group.instance.id": "pod-b"}), [topic])
        wait_until(lambda: (g.pump(0.1), g.owned().get("b") == before)[1], 60,
                   message="the next incarnation got the same partitions")
    finally:
        g.close()
