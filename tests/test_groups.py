"""Consumer groups with real clients: rebalances, committed offsets, coordinator moves and restarts.

What a user sees: every record of the topic is consumed by the group while
members leave and join (eager and cooperative-sticky assignors), committed
offsets come back after the coordinator moves, crashes or the whole cluster
restarts, and a new member starts exactly at the committed offsets.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import time
import uuid
from collections import defaultdict

import pytest
from confluent_kafka import Consumer, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient

from floe_broker.groups.coordinator import OFFSETS_TOPIC, partition_for
from tests.infra.broker import BrokerProcess, wait_until
from tests.test_clients import create_topic, produce_all
from tests.test_cluster import cluster_view, post, start_cluster

FAST_GROUP = {"session.timeout.ms": 6000, "heartbeat.interval.ms": 300, "auto.offset.reset": "earliest",
              "enable.auto.commit": True, "auto.commit.interval.ms": 200, "topic.metadata.refresh.interval.ms": 1000}


def name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def fill(bootstrap: str, topic: str, partitions: int, per_partition: int, start: int = 0) -> None:
    produce_all(bootstrap, [(topic, p, None, f"{p}:{i}".encode(), None, None)
                            for i in range(start, start + per_partition) for p in range(partitions)])


class Group:
    """confluent-kafka members of one group, polled round-robin from the test thread."""

    def __init__(self, bootstrap: str, group: str, topic: str, **conf: object) -> None:
        self.bootstrap, self.group, self.topic, self.conf = bootstrap, group, topic, conf
        self.members: dict[str, Consumer] = {}
        self.seen: set[tuple[int, int]] = set()
        self.by_member: dict[str, int] = defaultdict(int)

    def add(self, label: str) -> Consumer:
        c = Consumer({"bootstrap.servers": self.bootstrap, "group.id": self.group, "client.id": label,
                      **FAST_GROUP, **self.conf})
        c.subscribe([self.topic])
        self.members[label] = c
        return c

    def remove(self, label: str) -> None:
        self.members.pop(label).close()  # LeaveGroup after a final commit

    def pump(self, seconds: float = 0.2) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            for label, c in self.members.items():
                m = c.poll(0.02)
                if m is None:
                    continue
                if m.error():
                    raise KafkaException(m.error())
                self.seen.add((m.partition(), m.offset()))
                self.by_member[label] += 1

    def owned(self) -> dict[str, set[int]]:
        return {label: {tp.partition for tp in c.assignment()} for label, c in self.members.items()}

    def balanced_over(self, partitions: int) -> bool:
        self.pump(0.1)
        owned = self.owned()
        union: set[int] = set()
        for parts in owned.values():
            if not parts or union & parts:
                return False
            union |= parts
        return union == set(range(partitions))

    def close(self) -> None:
        for label in list(self.members):
            self.remove(label)


def committed(bootstrap: str, group: str, topic: str, partitions: int) -> dict[int, int]:
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
    try:
        got = c.committed([TopicPartition(topic, p) for p in range(partitions)], timeout=30)
    finally:
        c.close()
    return {tp.partition: tp.offset for tp in got}


@pytest.mark.parametrize("assignor", ["range", "cooperative-sticky"])
def test_group_rebalances_as_members_leave_and_join_and_consumes_everything(
        brokers, file_store, assignor: str) -> None:  # type: ignore[no-untyped-def]
    procs = start_cluster(brokers, file_store, 2)
    boot = procs[0].bootstrap
    topic, group = name("grp"), name("g")
    create_topic(boot, topic, 12)
    fill(boot, topic, 12, 50)
    g = Group(boot, group, topic, **{"partition.assignment.strategy": assignor})
    try:
        for label in ("a", "b", "c"):
            g.add(label)
        wait_until(lambda: g.balanced_over(12) and all(len(p) == 4 for p in g.owned().values()), 60,
                   message="three members share 12 partitions")
        g.remove("b")
        wait_until(lambda: g.balanced_over(12) and set(g.owned()) == {"a", "c"}, 60,
                   message="two members take over the leaver's partitions")
        fill(boot, topic, 12, 50, start=50)
        g.add("d")
        wait_until(lambda: g.balanced_over(12) and all(g.owned().values()), 60,
                   message="the newcomer gets partitions")
        wait_until(lambda: (g.pump(0.2), len(g.seen) == 1200)[1], 60, message="every record consumed")
        assert g.by_member["d"] > 0 or g.owned()["d"], "the newcomer took part"
    finally:
        g.close()
    assert committed(boot, group, topic, 12) == {p: 100 for p in range(12)}
    # A new member of the group starts exactly at the committed offsets.
    fill(boot, topic, 12, 5, start=100)
    late = Group(boot, group, topic)
    late.add("late")
    try:
        wait_until(lambda: (late.pump(0.2), len(late.seen) == 60)[1], 60, message="only the new records")
        assert {off for _, off in late.seen} == set(range(100, 105))
    finally:
        late.close()


def coordinator_of(procs: list[BrokerProcess], group: str) -> tuple[int, int]:
    """(offsets partition, node id leading it)."""
    parts = {p["partition"]: p["leader"] for p in cluster_view(procs[0])["partitions"] if p["topic"] == OFFSETS_TOPIC}
    index = partition_for(group, len(parts))
    return index, parts[index]


def test_commits_survive_coordinator_move_crash_drain_and_full_restart(brokers, file_store) -> None:  # type: ignore[no-untyped-def]
    procs = start_cluster(brokers, file_store, 3)
    boot = ",".join(p.bootstrap for p in procs)
    topic, group = name("keep"), name("g")
    create_topic(boot, topic, 4)
    fill(boot, topic, 4, 40)
    g = Group(boot, group, topic)
    g.add("a")
    try:
        wait_until(lambda: (g.pump(0.2), len(g.seen) == 160)[1], 60, message="first 160 records")
        wait_until(lambda: committed(boot, group, topic, 4) == {p: 40 for p in range(4)}, 30,
                   message="auto-commit of the first records")
        before = g.owned()["a"]
        # Move the coordinator while the member is active: it finds the new one and keeps going.
        index, node = coordinator_of(procs, group)
        target = 1 + node % 3
        reply = post(procs[0].http, "/v1/reassignments",
                     {"moves": [{"topic": OFFSETS_TOPIC, "partition": index, "to": target}]})
        assert all(r["error"] is None for r in reply["results"]), reply
        assert coordinator_of(procs, group) == (index, target)
        fill(boot, topic, 4, 10, start=40)
        wait_until(lambda: (g.pump(0.2), len(g.seen) == 200)[1], 60, message="records after the move")
        wait_until(lambda: committed(boot, group, topic, 4) == {p: 50 for p in range(4)}, 30,
                   message="commits at the new coordinator")
        assert g.owned()["a"] == before, "the member kept its assignment across the move"
        # Drain the coordinator's broker (SIGTERM) while the member is active: the same.
        index, node = coordinator_of(procs, group)
        drained = next(p for p in procs if cluster_node(p) == node)
        assert drained.terminate(60) == 0, drained.log_tail()
        alive = [p for p in procs if p is not drained]
        fill(",".join(p.bootstrap for p in alive), topic, 4, 10, start=50)
        wait_until(lambda: (g.pump(0.2), len(g.seen) == 240)[1], 60, message="records after the drain")
        wait_until(lambda: committed(alive[0].bootstrap, group, topic, 4) == {p: 60 for p in range(4)}, 30,
                   message="commits after the drain")
        assert g.owned()["a"] == before, "the member kept its assignment across the drain"
    finally:
        g.close()
    # What the coordinator answers now is what it acknowledged last. That is usually 60, but
    # librdkafka may still deliver an older auto-commit it retried across the drain (seen: 50
    # committed after 60, just before its LeaveGroup); the broker must keep whichever came last.
    acknowledged = committed(alive[0].bootstrap, group, topic, 4)
    # Crash the coordinator (kill -9): the acknowledged commits are durable.
    index, node = coordinator_of(alive, group)
    victim = next(p for p in alive if cluster_node(p) == node)
    victim.kill9()
    last = next(p for p in alive if p is not victim)
    wait_until(lambda: coordinator_of([last], group)[1] == cluster_node(last), 30,
               message="offsets partition failed over")
    assert committed(last.bootstrap, group, topic, 4) == acknowledged
    # Stop everything, start one fresh broker on the same bucket: still there.
    assert last.terminate(60) == 0, last.log_tail()
    fresh = brokers(file_store)
    assert committed(fresh.bootstrap, group, topic, 4) == acknowledged


def cluster_node(p: BrokerProcess) -> int:
    status, body = p.get("/readyz")
    assert status == 200, body
    return int(body["node"])


def test_kafka_python_and_aiokafka_groups_and_kcat_member(brokers, file_store) -> None:  # type: ignore[no-untyped-def]
    from kafka import KafkaConsumer

    b = brokers(file_store)
    topic = name("libs")
    create_topic(b.bootstrap, topic, 4)
    fill(b.bootstrap, topic, 4, 25)

    kp_group = name("kp")
    kc = KafkaConsumer(topic, bootstrap_servers=b.bootstrap, group_id=kp_group, auto_offset_reset="earliest",
                       enable_auto_commit=False, consumer_timeout_ms=20000)
    got = []
    for msg in kc:
        got.append((msg.partition, msg.offset))
        if len(got) == 100:
            break
    kc.commit()
    kc.close()
    assert len(set(got)) == 100
    assert committed(b.bootstrap, kp_group, topic, 4) == {p: 25 for p in range(4)}

    aio_group = name("aio")

    async def aio() -> int:
        from aiokafka import AIOKafkaConsumer

        c = AIOKafkaConsumer(topic, bootstrap_servers=b.bootstrap, group_id=aio_group,
                             auto_offset_reset="earliest", enable_auto_commit=False)
        await c.start()
        n = 0
        try:
            while n < 100:
                batch = await c.getmany(timeout_ms=1000)
                n += sum(len(v) for v in batch.values())
            await c.commit()
        finally:
            await c.stop()
        return n

    assert asyncio.run(asyncio.wait_for(aio(), 60)) == 100
    assert committed(b.bootstrap, aio_group, topic, 4) == {p: 25 for p in range(4)}

    kcat = shutil.which("kcat") or shutil.which("kafkacat")
    if kcat is None:
        pytest.skip("kcat not installed")
    kc_group = name("kcat")
    out = subprocess.run([kcat, "-b", b.bootstrap, "-G", kc_group, "-o", "beginning", "-e", "-q",
                          "-X", "session.timeout.ms=6000", "-f", "%p:%o\\n", topic],
                         capture_output=True, timeout=90, check=True)
    lines = out.stdout.decode().split()
    assert len(set(lines)) == 100, out.stderr.decode()[-2000:]
    assert committed(b.bootstrap, kc_group, topic, 4) == {p: 25 for p in range(4)}


def test_lag_admin_apis_and_group_deletion(brokers, file_store) -> None:  # type: ignore[no-untyped-def]
    b = brokers(file_store)
    topic, group = name("lag"), name("g")
    create_topic(b.bootstrap, topic, 2)
    fill(b.bootstrap, topic, 2, 30)
    c = Consumer({"bootstrap.servers": b.bootstrap, "group.id": group, "client.id": "lagger",
                  **FAST_GROUP, "enable.auto.commit": False})
    c.subscribe([topic])
    admin = AdminClient({"bootstrap.servers": b.bootstrap})
    try:
        n = 0
        deadline = time.monotonic() + 30
        while n < 60 and time.monotonic() < deadline:
            if (m := c.poll(0.2)) is not None and not m.error():
                n += 1
        c.commit(offsets=[TopicPartition(topic, 0, 10), TopicPartition(topic, 1, 20)], asynchronous=False)
        # Lag through the Kafka APIs: committed offsets and high watermarks.
        listed = admin.list_consumer_group_offsets(
            [__import__("confluent_kafka").ConsumerGroupTopicPartitions(group)])[group].result(30)
        offsets = {tp.partition: tp.offset for tp in listed.topic_partitions if tp.topic == topic}
        assert offsets == {0: 10, 1: 20}
        assert c.get_watermark_offsets(TopicPartition(topic, 0), timeout=10) == (0, 30)
        # ... and on /metrics.
        text = b.metrics_text()
        assert f'floe_group_committed_offset{{group="{group}",partition="1",topic="{topic}"}} 20.0' in text
        assert f'floe_group_lag{{group="{group}",partition="0",topic="{topic}"}} 20.0' in text
        # Describe and list show the live member.
        desc = admin.describe_consumer_groups([group])[group].result(30)
        assert desc.state.name == "STABLE" and [m.client_id for m in desc.members] == ["lagger"]
        assert {tp.partition for tp in desc.members[0].assignment.topic_partitions} == {0, 1}
        listed_groups = admin.list_consumer_groups().result(30)
        assert group in {g.group_id for g in listed_groups.valid}
        # A group with members cannot be deleted.
        with pytest.raises(KafkaException, match="NON_EMPTY_GROUP"):
            admin.delete_consumer_groups([group])[group].result(30)
    finally:
        c.close()
    wait_until(lambda: admin.describe_consumer_groups([group])[group].result(30).state.name == "EMPTY", 30,
               message="group empty after close")
    admin.delete_consumer_groups([group])[group].result(30)
    assert committed(b.bootstrap, group, topic, 2) == {0: -1001, 1: -1001}
    with pytest.raises(KafkaException, match="GROUP_ID_NOT_FOUND"):
        admin.delete_consumer_groups([group])[group].result(30)


def test_static_member_restart_keeps_assignment_without_rebalance(brokers, file_store) -> None:  # type: ignore[no-untyped-def]
    b = brokers(file_store)
    topic, group = name("static"), name("g")
    create_topic(b.bootstrap, topic, 4)
    revocations: list[str] = []

    def member(instance: str) -> Consumer:
        c = Consumer({"bootstrap.servers": b.bootstrap, "group.id": group, "group.instance.id": instance,
                      **FAST_GROUP, "session.timeout.ms": 20000})
        c.subscribe([topic], on_revoke=lambda _c, parts: revocations.append(instance) if parts else None)
        return c

    a, c = member("pod-a"), member("pod-b")
    admin = AdminClient({"bootstrap.servers": b.bootstrap})

    def stable() -> bool:
        a.poll(0.05)
        c.poll(0.05)
        return len(a.assignment()) + len(c.assignment()) == 4 and bool(a.assignment()) and bool(c.assignment())

    try:
        wait_until(stable, 60, message="two static members share the partitions")
        before = {tp.partition for tp in c.assignment()}
        revocations.clear()
        c.close()  # a static member leaves no LeaveGroup behind: its partitions wait for it
        c = member("pod-b")
        wait_until(lambda: (c.poll(0.05), a.poll(0.05), {tp.partition for tp in c.assignment()} == before)[2], 30,
                   message="the restarted member gets its old partitions back")
        desc = admin.describe_consumer_groups([group])[group].result(30)
        assert desc.state.name == "STABLE" and len(desc.members) == 2
        assert "pod-a" not in revocations, "the other member was not rebalanced"
    finally:
        a.close()
        c.close()


def test_offsets_partition_is_trimmed_by_snapshots_and_reloads_exactly(brokers, file_store) -> None:  # type: ignore[no-untyped-def]
    """Thousands of commits leave a short partition behind; after a restart a group that committed
    once, long before, still has its offsets, busy groups have their last ones, and a deleted
    group stays deleted."""
    flags = ("--offsets-snapshot-records", "200", "--offsets-topic-partitions", "1")
    b = brokers(file_store, *flags)
    topic = name("snap")
    create_topic(b.bootstrap, topic, 3)
    admin = AdminClient({"bootstrap.servers": b.bootstrap})  # kept alive until its results are in

    def simple_commit(group: str, offsets: dict[int, int]) -> None:
        c = Consumer({"bootstrap.servers": b.bootstrap, "group.id": group, "enable.auto.commit": False})
        c.commit(offsets=[TopicPartition(topic, p, o) for p, o in offsets.items()], asynchronous=False)
        c.close()

    cold, gone = name("cold"), name("gone")
    simple_commit(cold, {0: 7, 1: 8, 2: 9})
    simple_commit(gone, {0: 1})
    admin.delete_consumer_groups([gone])[gone].result(30)
    hot = [name("hot") for _ in range(3)]
    consumers = {g: Consumer({"bootstrap.servers": b.bootstrap, "group.id": g, "enable.auto.commit": False})
                 for g in hot}
    expected: dict[str, dict[int, int]] = {}
    try:
        for i in range(400):
            for g, c in consumers.items():
                c.commit(offsets=[TopicPartition(topic, i % 3, i)], asynchronous=False)
                expected.setdefault(g, {})[i % 3] = i
    finally:
        for c in consumers.values():
            c.close()
    probe = Consumer({"bootstrap.servers": b.bootstrap, "group.id": name("probe")})
    try:
        low, high = probe.get_watermark_offsets(TopicPartition(OFFSETS_TOPIC, 0), timeout=10)
    finally:
        probe.close()
    assert high >= 1200 and low > 800, f"offsets partition not trimmed: [{low}, {high})"
    assert b.terminate(60) == 0, b.log_tail()
    fresh = brokers(file_store, *flags)
    assert committed(fresh.bootstrap, cold, topic, 3) == {0: 7, 1: 8, 2: 9}
    for g in hot:
        assert committed(fresh.bootstrap, g, topic, 3) == expected[g]
    assert committed(fresh.bootstrap, gone, topic, 3) == {0: -1001, 1: -1001, 2: -1001}
