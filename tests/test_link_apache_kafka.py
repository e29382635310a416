"""Migrating from Apache Kafka: topics linked at the same offsets, then promoted.

A real single-node KRaft Kafka (from Maven) is the source; two real Floe
brokers mirror it through a link made with ``floe link create``. Every check
is what a user sees through real clients: each offset holds the same record
on both clusters (a compressed batch, a transaction with an abort, a
compacted topic with gaps), produce to Floe is refused until promotion and
lands at the source's end offset after it, a group committed on Kafka resumes
on Floe at the same offset, and mirroring survives a kill -9 of the leader
and a move. Skipped, with the reason, where Kafka cannot run.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import (
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    NewPartitions,
    NewTopic,
)

from floe_broker.protocol.build import response_class
from tests.infra.apache_kafka import KafkaCluster, KafkaUnavailable, kafka_jars
from tests.infra.batches import record_batch
from tests.infra.broker import ROOT, BrokerProcess, wait_until
from tests.test_bad_input import connect, raw_request

pytestmark = pytest.mark.slow

Row = tuple[int, int, bytes | None, bytes | None, list[Any], int]  # partition, offset, key, value, headers, ts


@pytest.fixture(scope="module")
def kafka(tmp_path_factory: pytest.TempPathFactory) -> Any:
    try:
        jars = kafka_jars()
    except KafkaUnavailable as exc:
        pytest.skip(f"Apache Kafka unavailable: {exc}")
    cluster = KafkaCluster(tmp_path_factory.mktemp("kafka"), size=1, heap="512m", jars=jars,
                           extra_properties={"log.cleaner.backoff.ms": "200"}).start()
    yield cluster
    cluster.stop()


def floe_cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(str(ROOT / r) for r in ("api", "broker", "cli"))}
    return subprocess.run([sys.executable, "-m", "floe_cli", *args], capture_output=True, text=True, env=env,
                          timeout=120, check=False)


def produce(bootstrap: str, topic: str, values: list[tuple[bytes | None, bytes]], *, partition: int = 0,
            **conf: Any) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 50, **conf})
    for key, value in values:
        producer.produce(topic, value=value, key=key, partition=partition, headers=[("h", key or b"-")])
    assert producer.flush(60) == 0


def high_watermarks(bootstrap: str, topic: str, partitions: int) -> list[int]:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"hw-{uuid.uuid4().hex[:6]}"})
    try:
        return [consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in range(partitions)]
    finally:
        consumer.close()


def dump(bootstrap: str, topic: str, partitions: int, *, committed: bool = False) -> list[Row]:
    """Every record of the topic with its offset, read from the start to the high watermark."""
    ends = high_watermarks(bootstrap, topic, partitions)
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"dump-{uuid.uuid4().hex[:6]}",
                         "enable.auto.commit": False,
                         "isolation.level": "read_committed" if committed else "read_uncommitted"})
    consumer.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
    rows: list[Row] = []

    def at_end() -> bool:
        for m in consumer.consume(500, 0.5):
            if m.error() is None:
                rows.append((m.partition(), m.offset(), m.key(), m.value(), m.headers() or [], m.timestamp()[1]))
        positions = consumer.position([TopicPartition(topic, p) for p in range(partitions)])
        return all(tp.offset >= ends[tp.partition] or ends[tp.partition] == 0 for tp in positions)

    try:
        wait_until(at_end, 90, interval=0, message=f"{topic} read to its end at {bootstrap}")
    finally:
        consumer.close()
    return sorted(rows)


def produce_message(b: BrokerProcess, topic: str) -> str:
    """The error_message of a raw Produce v9 to partition 0 (librdkafka shows only the code's name)."""
    import datetime

    from kio.schema.produce.v9.request import PartitionProduceData, ProduceRequest, TopicProduceData
    from kio.serial import entity_reader
    from kio.static.primitive import Records, i16, i32

    req = ProduceRequest(acks=i16(-1), timeout=datetime.timedelta(seconds=5), topic_data=(
        TopicProduceData(name=topic, partition_data=(PartitionProduceData(index=i32(0), records=Records(
            record_batch())),)),))
    sock = connect(b)
    try:
        raw = raw_request(sock, 0, 9, req)
    finally:
        sock.close()
    cls = response_class(0, 9)
    _, off = entity_reader(cls.__header_schema__)(raw, 0)
    body, _ = entity_reader(cls)(raw, off)
    return str(body.responses[0].partition_responses[0].error_message)


def link_status(b: BrokerProcess) -> dict[str, Any]:
    code, body = b.get("/v1/links/mig")
    assert code == 200, body
    return body


def caught_up(b: BrokerProcess, kafka: KafkaCluster, topics: dict[str, int]) -> bool:
    status = link_status(b)
    ends = {(t["topic"], p["partition"]): p["floe_end"] for t in status["topics"] for p in t["partitions"]}
    return all(ends.get((t, i)) == hw for t, n in topics.items()
               for i, hw in enumerate(high_watermarks(kafka.bootstrap, t, n)))


def leader_of(b: BrokerProcess, topic: str, partition: int) -> int:
    _, view = b.get("/v1/cluster")
    return next(p["leader"] for p in view["partitions"] if p["topic"] == topic and p["partition"] == partition)


def node_of(b: BrokerProcess) -> int:
    return int(b.get("/readyz")[1]["node"])


def test_linked_topics_mirror_at_the_same_offsets_and_promote(kafka: KafkaCluster, brokers, file_store,  # type: ignore[no-untyped-def]
                                                              tmp_path: Path) -> None:
    src = kafka.bootstrap
    admin = AdminClient({"bootstrap.servers": src})
    compact = {"cleanup.policy": "compact", "segment.ms": "100", "min.cleanable.dirty.ratio": "0.01",
               "min.compaction.lag.ms": "0", "delete.retention.ms": "100"}
    for f in admin.create_topics([NewTopic("plain", 2, 1), NewTopic("txn", 1, 1),
                                  NewTopic("compacted", 1, 1, config=compact)]).values():
        f.result(60)
    # plain: a compressed batch and uncompressed ones, on both partitions
    produce(src, "plain", [(b"k%d" % i, b"lz4-%d" % i) for i in range(20)], **{"compression.type": "lz4"})
    produce(src, "plain", [(None, b"raw-%d" % i) for i in range(7)], partition=1)
    # txn: committed, aborted, committed
    tx = Producer({"bootstrap.servers": src, "transactional.id": "mig-tx"})
    tx.init_transactions(30)
    for values, commit in (([b"c1-a", b"c1-b"], True), ([b"aborted-a", b"aborted-b", b"aborted-c"], False),
                           ([b"c2-a"], True)):
        tx.begin_transaction()
        for v in values:
            tx.produce("txn", value=v, partition=0)
        tx.flush(30)
        (tx.commit_transaction if commit else tx.abort_transaction)(30)
    # compacted: overwrite five keys, roll the segment, and wait until the cleaner left gaps
    for round_ in range(4):
        produce(src, "compacted", [(b"key-%d" % k, b"v%d-%d" % (round_, k)) for k in range(5)])
    time.sleep(0.2)  # not a synchronisation: segment.ms must elapse before the next record rolls the segment
    produce(src, "compacted", [(b"key-0", b"last")])

    def compacted_has_gaps() -> bool:
        offsets = [r[1] for r in dump(src, "compacted", 1)]
        return len(offsets) < offsets[-1] + 1

    wait_until(compacted_has_gaps, 90, interval=0.5, message="Kafka's cleaner compacting the topic")
    # a group on Kafka: committed part-way
    group = Consumer({"bootstrap.servers": src, "group.id": "app", "enable.auto.commit": False})
    group.commit(offsets=[TopicPartition("plain", 0, 12), TopicPartition("plain", 1, 3)], asynchronous=False)
    group.close()

    a, b = brokers(file_store), brokers(file_store)
    done = floe_cli("link", "create", "mig", "--http", a.http, "--bootstrap", src, "--topic", "plain",
                    "--topic", "txn", "--topic-regex", "compact.*", "--group", "app")
    assert done.returncode == 0, done.stderr
    topics = {"plain": 2, "txn": 1, "compacted": 1}
    wait_until(lambda: caught_up(a, kafka, topics), 90, interval=0.5, message="the link caught up")
    for topic, n in topics.items():
        assert dump(a.bootstrap, topic, n) == dump(src, topic, n), topic
    mirrored = [p for t in link_status(a)["topics"] for p in t["partitions"] if p["node"] == node_of(a)]
    assert mirrored and all(p["lag_records"] == 0 and p["lag_seconds"] == 0 for p in mirrored)
    scraped = (a if leader_of(a, "plain", 0) == node_of(a) else b).metrics_text()
    assert 'floe_link_lag_records{link="mig",partition="0",topic="plain"} 0.0' in scraped
    assert 'floe_link_bytes_total{link="mig",topic="plain"}' in scraped
    assert dump(a.bootstrap, "txn", 1, committed=True) == dump(src, "txn", 1, committed=True)
    assert [r[3] for r in dump(a.bootstrap, "txn", 1, committed=True)] == [b"c1-a", b"c1-b", b"c2-a"]
    floe_admin = AdminClient({"bootstrap.servers": a.bootstrap})
    described = floe_admin.describe_configs([ConfigResource("TOPIC", "compacted")])[
        ConfigResource("TOPIC", "compacted")].result(30)
    assert described["cleanup.policy"].value == "compact"

    # a partition added at the source, and a config changed there, follow
    admin.create_partitions([NewPartitions("plain", 3)])["plain"].result(60)
    changed = ConfigResource("TOPIC", "plain", incremental_configs=[
        ConfigEntry("retention.ms", "86400000", incremental_operation=AlterConfigOpType.SET)])
    admin.incremental_alter_configs([changed])[changed].result(60)
    produce(src, "plain", [(b"p2-%d" % i, b"z%d" % i) for i in range(4)], partition=2)
    topics["plain"] = 3
    wait_until(lambda: caught_up(a, kafka, topics), 60, interval=0.5, message="the new source partition mirrored")

    def floe_retention() -> str:
        found = floe_admin.describe_configs([ConfigResource("TOPIC", "plain")])[ConfigResource("TOPIC", "plain")]
        return str(found.result(30)["retention.ms"].value)

    wait_until(lambda: floe_retention() == "86400000", 30, interval=0.5, message="the source's config change")

    # produce to a mirror is refused with a clear error
    errors: list[KafkaError] = []
    refused = Producer({"bootstrap.servers": a.bootstrap, "retries": 0})
    refused.produce("plain", value=b"too early", partition=0, on_delivery=lambda err, _m: errors.append(err))
    refused.flush(30)
    assert errors and errors[0] is not None and errors[0].code() == KafkaError.POLICY_VIOLATION
    assert "read-only mirror of" in produce_message(a, "plain")  # the reason, for clients that show it

    # the leader of plain-0 is killed (-9) while the source takes more; its successor resumes
    victim = a if leader_of(a, "plain", 0) == node_of(a) else b
    survivor = b if victim is a else a
    victim.kill9()
    produce(src, "plain", [(b"after-kill-%d" % i, b"x%d" % i) for i in range(15)])
    wait_until(lambda: leader_of(survivor, "plain", 0) == node_of(survivor), 30, message="plain-0 failed over")
    wait_until(lambda: caught_up(survivor, kafka, topics), 90, interval=0.5, message="caught up after kill -9")
    # a third broker joins and plain-1 moves to it while the source takes more
    c = brokers(file_store)
    moved = floe_cli("admin", "--http", survivor.http, "reassign", f"plain:1:{node_of(c)}")
    assert moved.returncode == 0, moved.stderr
    produce(src, "plain", [(b"after-move-%d" % i, b"y%d" % i) for i in range(9)], partition=1)
    wait_until(lambda: caught_up(survivor, kafka, topics), 90, interval=0.5, message="caught up after the move")
    assert dump(survivor.bootstrap, "plain", 3) == dump(src, "plain", 3)

    # the group's offsets followed
    def floe_committed() -> list[int]:
        consumer = Consumer({"bootstrap.servers": survivor.bootstrap, "group.id": "app"})
        try:
            return [tp.offset for tp in consumer.committed([TopicPartition("plain", 0), TopicPartition("plain", 1)],
                                                           timeout=10)]
        finally:
            consumer.close()

    wait_until(lambda: floe_committed() == [12, 3], 60, interval=0.5, message="group app's offsets copied")

    # promotion: producers stopped on Kafka, the link at lag 0
    source_end = high_watermarks(src, "plain", 3)
    promoted = floe_cli("link", "promote", "mig", "--http", survivor.http, "--wait", "60")
    assert promoted.returncode == 0, promoted.stdout + promoted.stderr
    status = json.loads(floe_cli("link", "status", "mig", "--http", survivor.http, "--json").stdout)
    assert {t["topic"]: t["state"] for t in status["topics"]} == {t: "promoted" for t in topics}
    landed: list[int] = []
    writer = Producer({"bootstrap.servers": survivor.bootstrap})
    writer.produce("plain", value=b"first on floe", partition=0,
                   on_delivery=lambda err, m: landed.append(-1 if err else m.offset()))
    writer.flush(30)
    assert landed == [source_end[0]]
    # the group resumes on Floe where it left Kafka
    resumed = Consumer({"bootstrap.servers": survivor.bootstrap, "group.id": "app", "enable.auto.commit": False,
                        "auto.offset.reset": "earliest"})
    resumed.assign([TopicPartition("plain", 0)])
    first: list[Any] = []
    wait_until(lambda: first.extend(m for m in resumed.consume(10, 0.5) if m.error() is None) or first, 60,
               interval=0, message="the group's first record on Floe")
    resumed.close()
    assert first[0].offset() == 12
    assert first[0].value() == dump(src, "plain", 3)[12][3]


def restart_kafka(kafka: KafkaCluster) -> None:
    """Stop the source's only node cleanly and start it again on the same data and ports."""
    import signal

    from tests.infra.apache_kafka import java_command

    (node,) = kafka.nodes
    assert node.proc is not None and kafka.jars is not None
    node.proc.send_signal(signal.SIGTERM)
    node.proc.wait(120)
    with open(node.log_path, "ab") as log:
        node.proc = subprocess.Popen(java_command(kafka.jars, "kafka.Kafka", str(node.properties), heap=kafka.heap,
                                                  log_level="INFO", log4j_dir=kafka.directory),
                                     stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    wait_until(kafka._all_brokers_up, 180, interval=0.5, message="the source Kafka back after its restart")


class Writer:
    """A producer writing continuously to topics (round robin over partitions), until stopped."""

    def __init__(self, bootstrap: str, topics: dict[str, int]) -> None:
        import threading

        self.producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5, "enable.idempotence": True,
                                  "message.timeout.ms": 300000})
        self.topics, self.sent = topics, 0
        self.failed: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _delivered(self, err: KafkaError | None, _msg: Any) -> None:
        if err is not None:
            self.failed.append(str(err))

    def _run(self) -> None:
        while not self._stop.is_set():
            for topic, n in self.topics.items():
                for p in range(n):
                    self.producer.produce(topic, value=b"%s-%d-%d" % (topic.encode(), p, self.sent), partition=p,
                                          on_delivery=self._delivered)
            self.sent += 1
            self.producer.poll(0.02)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(30)
        assert self.producer.flush(300) == 0
        assert not self.failed, self.failed[:3]


class Reader:
    """A consumer group member committing as it goes (auto-commit of what it consumed), until stopped."""

    def __init__(self, bootstrap: str, group: str, topics: list[str]) -> None:
        import threading

        self.consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "auto.offset.reset": "earliest",
                                  "enable.auto.commit": True, "auto.commit.interval.ms": 200})
        self.consumer.subscribe(topics)
        self.seen: list[tuple[Any, ...]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            for m in self.consumer.consume(100, 0.2):
                if m.error() is None:
                    self.seen.append((m.topic(), m.partition(), m.offset(), m.value()))

    def stop(self) -> None:
        """Stop reading; closing commits the position after the last record consumed."""
        self._stop.set()
        self._thread.join(30)
        self.consumer.close()


def test_cut_over_under_continuous_production_reads_every_record_exactly_once(  # type: ignore[no-untyped-def]
        kafka: KafkaCluster, brokers, file_store) -> None:
    """Three topics written continuously on Kafka while Floe links them, a group committing as it goes, the
    source restarted in between; then the cut-over: the group restarted on Floe reads on from its commit, each
    record exactly once across the switch, and a producer moved to Floe continues at the next offset."""
    src = kafka.bootstrap
    topics = {"live-a": 2, "live-b": 1, "live-c": 3}
    admin = AdminClient({"bootstrap.servers": src})
    for f in admin.create_topics([NewTopic(t, n, 1) for t, n in topics.items()]).values():
        f.result(60)
    writer = Writer(src, topics)
    reader = Reader(src, "live", sorted(topics))
    a, b = brokers(file_store), brokers(file_store)
    done = floe_cli("link", "create", "live", "--http", a.http, "--bootstrap", src, "--topic-regex", "live-.*",
                    "--group", "live")
    assert done.returncode == 0, done.stderr

    def linked() -> bool:
        status = b.get("/v1/links/live")[1]
        return {t["topic"] for t in status.get("topics", [])} == set(topics)

    wait_until(linked, 60, interval=0.5, message="the three topics linked")
    wait_until(lambda: writer.sent > 200, 60, interval=0.2, message="the writer under way")
    restart_kafka(kafka)  # the source goes away and comes back while the link runs
    wait_until(lambda: writer.sent > 600 and len(reader.seen) > 300, 120, interval=0.2,
               message="writing and reading again after the source's restart")

    # the cut-over: consumers first, then the producers stop on Kafka, and the topics are promoted
    reader.stop()
    writer.stop()
    source_end = {t: high_watermarks(src, t, n) for t, n in topics.items()}

    def status_of(b_: BrokerProcess) -> dict[str, Any]:
        code, body = b_.get("/v1/links/live")
        assert code == 200, body
        return body

    def mirrored() -> bool:
        ends = {(t["topic"], p["partition"]): p["floe_end"] for t in status_of(a)["topics"] for p in t["partitions"]}
        return all(ends.get((t, i)) == hw for t, hws in source_end.items() for i, hw in enumerate(hws))

    wait_until(mirrored, 120, interval=0.5, message="the link caught up with the stopped source")
    committed_on_kafka = Consumer({"bootstrap.servers": src, "group.id": "live"}).committed(
        [TopicPartition(t, p) for t, n in topics.items() for p in range(n)], timeout=10)
    kafka_commit = {(tp.topic, tp.partition): tp.offset for tp in committed_on_kafka}
    start = {k: max(o, 0) for k, o in kafka_commit.items()}  # no commit yet: the group starts at the beginning

    def floe_commit() -> dict[tuple[str, int], int]:
        consumer = Consumer({"bootstrap.servers": a.bootstrap, "group.id": "live"})
        try:
            found = consumer.committed([TopicPartition(t, p) for t, n in topics.items() for p in range(n)], timeout=10)
            return {(tp.topic, tp.partition): tp.offset for tp in found}
        finally:
            consumer.close()

    wait_until(lambda: floe_commit() == kafka_commit, 60, interval=0.5, message="the group's final offsets copied")
    promoted = floe_cli("link", "promote", "live", "--http", a.http, "--wait", "120")
    assert promoted.returncode == 0, promoted.stdout + promoted.stderr

    # every offset holds the same record on both clusters
    for t, n in topics.items():
        assert dump(a.bootstrap, t, n) == dump(src, t, n), t
    # the group on Floe reads on from its commit: with what it read on Kafka, every record exactly once
    resumed = Consumer({"bootstrap.servers": a.bootstrap, "group.id": "live", "auto.offset.reset": "earliest",
                        "enable.auto.commit": False})
    resumed.subscribe(sorted(topics))
    after: list[tuple[Any, ...]] = []

    def read_to_the_end() -> bool:
        after.extend((m.topic(), m.partition(), m.offset(), m.value()) for m in resumed.consume(500, 0.5)
                     if m.error() is None)
        return len(after) >= sum(hw - start[(t, p)] for t, hws in source_end.items() for p, hw in enumerate(hws))

    try:
        wait_until(read_to_the_end, 120, interval=0, message="the group read Floe to the end")
    finally:
        resumed.close()
    # What the group consumed on Kafka is what it committed there: a Kafka consumer may read past its last
    # commit (its own at-least-once), and those records are Kafka's to redeliver, on either cluster.
    on_kafka = {(t, p, o): v for t, p, o, v in reader.seen if o < start[(t, p)]}
    on_floe = {(t, p, o): v for t, p, o, v in after}
    assert len(on_floe) == len(after), "a record read twice on Floe"
    first_on_floe: dict[tuple[str, int], int] = {}
    for t, p, o in on_floe:
        first_on_floe[(t, p)] = min(o, first_on_floe.get((t, p), o))
    assert all(first_on_floe.get(k, start[k]) == start[k] for k in start)  # each partition resumed at the commit
    assert not on_kafka.keys() & on_floe.keys(), "a record read on both clusters"
    every = {(t, p, o) for t, hws in source_end.items() for p, hw in enumerate(hws) for o in range(hw)}
    assert on_kafka.keys() | on_floe.keys() == every
    truth = {(t, r[0], r[1]): r[3] for t, n in topics.items() for r in dump(src, t, n)}
    assert {**on_kafka, **on_floe} == truth  # values compared by offset with the source
    # a producer moved to Floe continues at the next offset of every partition
    landed: dict[Any, Any] = {}
    moved = Producer({"bootstrap.servers": a.bootstrap, "enable.idempotence": True})
    for t, n in topics.items():
        for p in range(n):
            moved.produce(t, value=b"first on floe", partition=p,
                          on_delivery=lambda err, m: landed.__setitem__((m.topic(), m.partition()),
                                                                        -1 if err else m.offset()))
    assert moved.flush(60) == 0
    assert landed == {(t, p): hw for t, hws in source_end.items() for p, hw in enumerate(hws)}


def test_promotion_is_refused_while_the_link_lags_unless_forced(kafka: KafkaCluster, brokers,  # type: ignore[no-untyped-def]
                                                                 file_store) -> None:
    """The source throttles the link (a Kafka fetch quota on its client id), so it lags for certain: promotion
    is refused with the lag named; forced, the topic is writable at once, at Floe's end, and what the link had
    not copied stays on Kafka."""
    from tests.infra.apache_kafka import run_tool

    src = kafka.bootstrap
    admin = AdminClient({"bootstrap.servers": src})  # kept: the futures fail once their client is collected
    admin.create_topics([NewTopic("slow", 1, 1)])["slow"].result(60)
    produce(src, "slow", [(None, os.urandom(1024)) for _ in range(12_000)], **{"batch.size": 1 << 20})
    quota = ("--bootstrap-server", src, "--alter", "--entity-type", "clients", "--entity-name", "floe-link")
    throttled = run_tool("org.apache.kafka.tools.ConfigCommand", *quota, "--add-config", "consumer_byte_rate=20000")
    assert throttled.returncode == 0, throttled.stderr
    try:
        a = brokers(file_store)
        done = floe_cli("link", "create", "slow", "--http", a.http, "--bootstrap", src, "--topic", "slow")
        assert done.returncode == 0, done.stderr
        wait_until(lambda: any(t["topic"] == "slow" for t in a.get("/v1/links/slow")[1].get("topics", [])), 60,
                   interval=0.5, message="the topic linked")
        refused = floe_cli("link", "promote", "slow", "--http", a.http)
        assert refused.returncode == 1 and "still lags the source at slow-0" in refused.stderr, refused.stderr
        assert "force" in refused.stderr
        assert a.get("/v1/links/slow")[1]["topics"][0]["state"] == "mirroring"  # nothing changed
        forced = floe_cli("link", "promote", "slow", "--http", a.http, "--force", "--wait", "90")
        assert forced.returncode == 0, forced.stdout + forced.stderr
        floe_end = high_watermarks(a.bootstrap, "slow", 1)[0]
        assert floe_end < high_watermarks(src, "slow", 1)[0]  # the rest stays behind on Kafka
        landed: list[int] = []
        writer = Producer({"bootstrap.servers": a.bootstrap})
        writer.produce("slow", value=b"first on floe",
                       on_delivery=lambda err, m: landed.append(-1 if err else m.offset()))
        writer.flush(30)
        assert landed == [floe_end]
    finally:
        run_tool("org.apache.kafka.tools.ConfigCommand", *quota, "--delete-config", "consumer_byte_rate")


def test_a_topic_deleted_at_the_source_is_kept_on_floe_and_the_status_says_so(  # type: ignore[no-untyped-def]
        kafka: KafkaCluster, brokers, file_store) -> None:
    src = kafka.bootstrap
    admin = AdminClient({"bootstrap.servers": src})
    admin.create_topics([NewTopic("gone", 1, 1)])["gone"].result(60)
    produce(src, "gone", [(b"k%d" % i, b"v%d" % i) for i in range(10)])
    a = brokers(file_store)
    done = floe_cli("link", "create", "gone", "--http", a.http, "--bootstrap", src, "--topic", "gone")
    assert done.returncode == 0, done.stderr
    wait_until(lambda: caught_up_link(a, "gone", {"gone": [10]}), 60, interval=0.5, message="the link caught up")
    admin.delete_topics(["gone"])["gone"].result(60)

    def reported() -> str:
        status = a.get("/v1/links/gone")[1]
        return " ".join(str(p.get("error")) for t in status.get("topics", []) for p in t["partitions"])

    wait_until(lambda: "does not exist at the source" in reported(), 60, interval=0.5,
               message="the mirror reporting the deleted source topic")
    assert len(dump(a.bootstrap, "gone", 1)) == 10  # what was mirrored stays
    forced = floe_cli("link", "promote", "gone", "--http", a.http, "--force", "--wait", "60")
    assert forced.returncode == 0, forced.stdout + forced.stderr
    landed: list[Any] = []
    writer = Producer({"bootstrap.servers": a.bootstrap})
    writer.produce("gone", value=b"on floe", on_delivery=lambda err, m: landed.append(err or m.offset()))
    writer.flush(30)
    assert landed == [10]


def caught_up_link(b: BrokerProcess, name: str, ends: dict[str, list[int]]) -> bool:
    status = b.get(f"/v1/links/{name}")[1]
    found = {(t["topic"], p["partition"]): p["floe_end"] for t in status.get("topics", []) for p in t["partitions"]}
    return all(found.get((t, i)) == hw for t, hws in ends.items() for i, hw in enumerate(hws))
