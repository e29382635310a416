"""Fetch sessions with real consumers of 1,000 partitions, seen through a recording proxy.

kafka-python (like the Java client) opens a session with its first full
fetch and then sends incremental ones: the requests stop naming every
partition and the answers stop carrying partitions with nothing new, while
every record still arrives, including across a partition moving to the other
broker in the middle of consumption. librdkafka (confluent-kafka 2.16) does not
implement KIP-227: it always fetches without a session, which keeps working.
"""

from __future__ import annotations

import statistics
import time
import uuid
from collections.abc import Callable, Iterator

import pytest
from confluent_kafka import Consumer, TopicPartition
from kafka import KafkaConsumer
from kafka import TopicPartition as KafkaTopicPartition

from tests.fetch_sessions.recording_proxy import FetchExchange, RecordingProxy
from tests.infra.broker import BrokerProcess, free_port, wait_until
from tests.test_clients import create_topic, produce_all
from tests.test_cluster import cluster_view, leaders, post

PARTITIONS = 1000


@pytest.fixture
def two_brokers_behind_proxies(brokers, file_store) -> Iterator[tuple[list[BrokerProcess], list[RecordingProxy]]]:  # type: ignore[no-untyped-def]
    """Two brokers, each advertising its own recording proxy, so a client only ever talks through them."""
    ports = [free_port(), free_port()]
    with RecordingProxy(ports[0]) as p0, RecordingProxy(ports[1]) as p1:
        procs = [brokers(file_store, "--advertise", f"127.0.0.1:{p.port}", kafka_port=port)
                 for p, port in zip((p0, p1), ports, strict=True)]
        wait_until(lambda: len(cluster_view(procs[0])["brokers"]) == 2, 60, message="2 brokers registered")
        yield procs, [p0, p1]


def node_of(procs: list[BrokerProcess], b: BrokerProcess) -> int:
    return next(x["node_id"] for x in cluster_view(procs[0])["brokers"] if x["http"] == b.http)


def consume(c: Consumer, want: set[tuple[int, int]], timeout: float) -> set[tuple[int, int]]:
    """Poll (librdkafka) until every (partition, offset) in ``want`` arrived; return what arrived."""
    got: set[tuple[int, int]] = set()
    deadline = time.monotonic() + timeout
    while not want <= got and time.monotonic() < deadline:
        for m in c.consume(500, 0.5):
            if m.error() is None:
                got.add((m.partition(), m.offset()))
    return got


class Polled:
    """A kafka-python consumer and what it has received; it fetches only while polled."""

    def __init__(self, consumer: KafkaConsumer) -> None:
        self.c = consumer
        self.got: set[tuple[int, int]] = set()

    def poll(self) -> None:
        for records in self.c.poll(timeout_ms=200).values():
            self.got.update((r.partition, r.offset) for r in records)

    def until(self, condition: Callable[[], bool], timeout: float, message: str) -> None:
        def polled() -> bool:
            self.poll()
            return condition()

        wait_until(polled, timeout, interval=0, message=message)


def incremental(fetches: list[FetchExchange]) -> list[FetchExchange]:
    return [f for f in fetches if f.session_id != 0 and f.session_epoch > 0 and f.response_error == 0]


def full(fetches: list[FetchExchange]) -> list[FetchExchange]:
    return [f for f in fetches if f.session_epoch == 0 and f.partitions > 0]


def test_a_consumer_of_1000_partitions_switches_to_small_incremental_fetches(two_brokers_behind_proxies) -> None:  # type: ignore[no-untyped-def]
    procs, proxies = two_brokers_behind_proxies
    topic = f"fs-{uuid.uuid4().hex[:6]}"
    create_topic(procs[0].bootstrap, topic, PARTITIONS)
    reports = produce_all(procs[0].bootstrap, [(topic, i % PARTITIONS, None, f"v{i}".encode(), None, None)
                                              for i in range(2 * PARTITIONS)])
    want = {(m.partition(), m.offset()) for m in reports}

    # kafka-python validates its position with OffsetForLeaderEpoch after the move below (KIP-320).
    c = Polled(KafkaConsumer(bootstrap_servers=f"127.0.0.1:{proxies[0].port}", enable_auto_commit=False,
                             fetch_max_wait_ms=100))
    try:
        c.c.assign([KafkaTopicPartition(topic, i) for i in range(PARTITIONS)])
        c.c.seek_to_beginning()
        c.until(lambda: want <= c.got, 180, "every record")

        # Idle polling: every broker sees incremental fetches that name nothing and answer nothing.
        def idle_incremental() -> bool:
            return all(len([f for f in incremental(p.snapshot()) if f.partitions == 0]) >= 5 for p in proxies)

        c.until(idle_incremental, 60, "idle incremental fetches on both brokers")
        for p in proxies:
            fetches = p.snapshot()
            first = full(fetches)[0]
            assert first.partitions > PARTITIONS // 4  # a broker leads about half of them
            assert first.response_session_id not in (None, 0)
            idle = [f for f in incremental(fetches) if f.partitions == 0]
            assert statistics.median(f.request_bytes for f in idle) * 10 < first.request_bytes
            assert statistics.median(f.response_bytes for f in idle) * 10 < first.response_bytes

        # A partition moves to the other broker mid-consumption: its records still arrive.
        moved = 3
        before = leaders(procs[0], topic)[moved]
        to = next(node_of(procs, b) for b in procs if node_of(procs, b) != before)
        controller = next(b for b in procs if node_of(procs, b) == cluster_view(procs[0])["controller"])
        reply = post(controller.http, "/v1/reassignments", {"moves": [{"topic": topic, "partition": moved, "to": to}]})
        assert reply["results"][0]["error"] is None, reply
        more = produce_all(procs[0].bootstrap, [(topic, p, None, b"after", None, None)
                                                for p in (moved, moved + 1, moved + 2) for _ in range(5)])
        after = {(m.partition(), m.offset()) for m in more}
        c.until(lambda: after <= c.got, 120, "the records produced after the move")
        # ... and the consumer keeps using sessions on both brokers afterwards.
        seen = [len(incremental(p.snapshot())) for p in proxies]
        c.until(lambda: all(len(incremental(p.snapshot())) > n + 3 for p, n in zip(proxies, seen, strict=True)),
                60, "incremental fetches after the move")
    finally:
        c.c.close()


def test_librdkafka_without_sessions_and_a_broker_with_sessions_off_both_fetch_in_full(brokers, file_store) -> None:  # type: ignore[no-untyped-def]
    port = free_port()
    with RecordingProxy(port) as proxy:
        b = brokers(file_store, "--advertise", f"127.0.0.1:{proxy.port}",
                    "--max-incremental-fetch-session-cache-slots", "0", kafka_port=port)
        topic = f"fs-{uuid.uuid4().hex[:6]}"
        create_topic(b.bootstrap, topic, 50)
        reports = produce_all(b.bootstrap, [(topic, i % 50, None, b"v", None, None) for i in range(100)])
        want = {(m.partition(), m.offset()) for m in reports}
        c = Consumer({"bootstrap.servers": f"127.0.0.1:{proxy.port}", "group.id": "g", "enable.auto.commit": False,
                      "fetch.wait.max.ms": 100})
        try:
            c.assign([TopicPartition(topic, i, 0) for i in range(50)])
            assert consume(c, want, 60) >= want
            wait_until(lambda: len(proxy.snapshot()) >= 5, 30, message="fetches")
        finally:
            c.close()
        fetches = proxy.snapshot()
        assert all(f.response_session_id == 0 for f in fetches)
        assert all(f.partitions == 50 for f in fetches)  # the client falls back to full fetches

        # kafka-python asks for a session on every fetch; with no slots it never gets one, so it
        # keeps fetching in full and still receives everything.
        asked = len(proxy.snapshot())
        k = Polled(KafkaConsumer(bootstrap_servers=f"127.0.0.1:{proxy.port}", enable_auto_commit=False,
                                 fetch_max_wait_ms=100, api_version=(2, 0, 0)))
        try:
            k.c.assign([KafkaTopicPartition(topic, i) for i in range(50)])
            k.c.seek_to_beginning()
            k.until(lambda: want <= k.got, 60, "every record through kafka-python")
            k.until(lambda: len(proxy.snapshot()) >= asked + 5, 30, "kafka-python fetches")
        finally:
            k.c.close()
        mine = proxy.snapshot()[asked:]
        assert any(f.session_epoch == 0 for f in mine), "kafka-python asked for a session"
        assert all(f.response_session_id == 0 and f.partitions == 50 for f in mine), "and fetched in full"


def test_the_java_consumer_opens_a_session_and_fetches_incrementally(brokers, file_store) -> None:  # type: ignore[no-untyped-def]
    from tests.infra.apache_kafka import KafkaUnavailable, kafka_jars, run_tool

    try:
        jars = kafka_jars()
    except KafkaUnavailable as exc:
        pytest.skip(str(exc))
    port = free_port()
    with RecordingProxy(port) as proxy:
        b = brokers(file_store, "--advertise", f"127.0.0.1:{proxy.port}", kafka_port=port)
        topic = f"fs-{uuid.uuid4().hex[:6]}"
        create_topic(b.bootstrap, topic, 200)
        produce_all(b.bootstrap, [(topic, i % 200, None, f"v{i}".encode(), None, None) for i in range(1000)])
        # Kafka's console consumer in a group; it stops after 20 s without records, polling all the while.
        out = run_tool("org.apache.kafka.tools.consumer.ConsoleConsumer", "--bootstrap-server",
                       f"127.0.0.1:{proxy.port}", "--topic", topic, "--group", f"g-{uuid.uuid4().hex[:6]}",
                       "--from-beginning", "--timeout-ms", "20000", jars=jars, timeout=180)
    values = {line for line in out.stdout.splitlines() if line.startswith("v")}
    assert values == {f"v{i}" for i in range(1000)}, out.stderr[-2000:]
    fetches = proxy.snapshot()
    opened = [f for f in full(fetches) if f.response_session_id]
    assert opened and opened[0].partitions == 200
    idle = [f for f in incremental(fetches) if f.partitions == 0]
    assert len(idle) >= 3
    assert statistics.median(f.request_bytes for f in idle) * 10 < opened[0].request_bytes
