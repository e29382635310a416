"""Compacted topics and DeleteRecords through real clients against real broker processes.

confluent-kafka produces, consumes and administers; kafka-python reads the
keyless refusal's message; Kafka's own DeleteRecordsCommand deletes records.
Brokers consolidate and compact every 200 ms round (``--compact-after-ms 0``).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource

from tests.infra.broker import BrokerProcess, wait_until
from tests.test_clients import create_topic
from tests.test_cluster import cluster_view, leaders, post

FAST = ("--compact-after-ms", "0", "--checkpoint-interval-ms", "200")
# Compact whenever anything is dirty: these tests wait for a fully compacted log, and with Kafka's
# default ratio (0.5) a small last round may rightly stay uncompacted.
EAGER = {"cleanup.policy": "compact", "min.cleanable.dirty.ratio": "0.01"}
KAFKA_JARS = Path.home() / ".cache" / "floe" / "kafka-4.4.0"


def topic_name() -> str:
    return f"cmp-{uuid.uuid4().hex[:8]}"


def produce(bootstrap: str, topic: str, pairs: list[tuple[bytes | None, bytes | None]], **conf: Any) -> list[Any]:
    """Produce (key, value) pairs, one flush; return (error, offset, key, value) per record."""
    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 2, "acks": "all", **conf})
    out: list[Any] = []
    for key, value in pairs:
        p.produce(topic, key=key, value=value, partition=0,
                  on_delivery=lambda err, msg: out.append((err, msg.offset(), msg.key(), msg.value())))
    assert p.flush(60) == 0
    return out


def read_log(bootstrap: str, topic: str, start: int = 0, *, isolation: str = "read_committed",
             timeout: float = 30) -> list[tuple[int, bytes | None, bytes | None]]:
    """Everything a consumer with this isolation level reads from ``start`` up to the high watermark."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"g-{uuid.uuid4().hex[:6]}",
                  "enable.auto.commit": False, "auto.offset.reset": "error", "isolation.level": isolation})
    try:
        _, high = c.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)
        c.assign([TopicPartition(topic, 0, start)])
        got: list[tuple[int, bytes | None, bytes | None]] = []
        deadline = time.monotonic() + timeout
        while (not got or got[-1][0] < high - 1) and time.monotonic() < deadline:
            m = c.poll(0.2)
            if m is None:
                continue
            if m.error():
                raise KafkaException(m.error())
            got.append((m.offset(), m.key(), m.value()))
        return got
    finally:
        c.close()


def last_per_key(written: list[Any]) -> dict[bytes, tuple[int, bytes | None]]:
    out: dict[bytes, tuple[int, bytes | None]] = {}
    for err, offset, key, value in written:
        assert err is None
        out[key] = (offset, value)
    return out


def compacted_to(bootstrap: str, topic: str, expected: dict[bytes, tuple[int, bytes | None]]) -> bool:
    got = read_log(bootstrap, topic)
    return {k: (o, v) for o, k, v in got} == expected and len(got) == len(expected)


def test_after_compaction_every_key_reads_its_last_value_at_its_original_offset(brokers, file_store) -> None:  # type: ignore[no-untyped-def]
    b: BrokerProcess = brokers(file_store, *FAST)
    topic = topic_name()
    create_topic(b.bootstrap, topic, 1, EAGER)
    written: list[Any] = []
    for rnd in range(4):
        written += produce(b.bootstrap, topic, [(b"key-%d" % k, b"value-%d-%d" % (k, rnd)) for k in range(50)])
    written += produce(b.bootstrap, topic, [(b"tail", b"t")])
    expected = last_per_key(written)
    wait_until(lambda: compacted_to(b.bootstrap, topic, expected), 60, 0.5, "the log compacted to one record per key")
    by_offset = {o: (k, v) for _, o, k, v in written}
    assert all(by_offset[o] == (k, v) for o, k, v in read_log(b.bootstrap, topic))
    passes = re.search(r"^floe_key_compaction_passes_total (\S+)$", b.metrics_text(), re.M)
    assert passes is not None and float(passes.group(1)) >= 1


@pytest.mark.parametrize("codec", ["gzip", "snappy", "lz4", "zstd"])
def test_compressed_batches_compact_and_stay_readable(brokers, file_store, codec) -> None:  # type: ignore[no-untyped-def]
    b = brokers(file_store, *FAST)
    topic = topic_name()
    create_topic(b.bootstrap, topic, 1, EAGER)
    written: list[Any] = []
    for rnd in range(3):
        keys = range(rnd * 20, rnd * 20 + 40)  # half of each batch superseded by the next: batches rebuilt
        written += produce(b.bootstrap, topic, [(b"key-%d" % k, b"value-%d-%d" % (k, rnd) * 20) for k in keys],
                           **{"compression.type": codec})
    [(err, *_)] = produce(b.bootstrap, topic, [(None, b"x" * 100)], **{"compression.type": codec})
    assert err is not None and err.code() == KafkaError.INVALID_RECORD  # the key check reads compressed batches
    expected = last_per_key(written)
    wait_until(lambda: compacted_to(b.bootstrap, topic, expected), 60, 0.5, f"{codec} batches compacted")

def test_tombstones_disappear_after_delete_retention(brokers, file_store) -> None:  # type: ignore[no-untyped-def]
    b = brokers(file_store, *FAST)
    topic = topic_name()
    create_topic(b.bootstrap, topic, 1, {**EAGER, "delete.retention.ms": "1500"})
    written = produce(b.bootstrap, topic, [(b"gone", b"1"), (b"stays", b"1")])
    written += produce(b.bootstrap, topic, [(b"gone", None)])
    written += produce(b.bootstrap, topic, [(b"tail", b"t")])
    wait_until(lambda: [k for _, k, _ in read_log(b.bootstrap, topic)] == [b"stays", b"tail"], 60, 0.5,
               "the tombstone and the value it deletes gone")
    assert [(o, k, v) for o, k, v in read_log(b.bootstrap, topic)] == [(1, b"stays", b"1"), (3, b"tail", b"t")]


def test_a_consumer_reading_during_compaction_sees_a_consistent_log(brokers, file_store) -> None:  # type: ignore[no-untyped-def]
    b = brokers(file_store, *FAST)
    topic = topic_name()
    create_topic(b.bootstrap, topic, 1, {"cleanup.policy": "compact", "min.cleanable.dirty.ratio": "0.01"})
    written: list[Any] = []
    seen: dict[int, tuple[bytes | None, bytes | None]] = {}
    stop = threading.Event()
    problems: list[str] = []

    def reader() -> None:
        while not stop.is_set():
            for offset, key, value in read_log(b.bootstrap, topic):
                if seen.setdefault(offset, (key, value)) != (key, value):
                    problems.append(f"offset {offset} read as {(key, value)} and {seen[offset]}")

    t = threading.Thread(target=reader, daemon=True)
    t.start()
    try:
        for rnd in range(30):
            written += produce(b.bootstrap, topic, [(b"k%d" % k, b"%d-%d" % (k, rnd)) for k in range(20)])
        written += produce(b.bootstrap, topic, [(b"tail", b"t")])
        expected = last_per_key(written)
        wait_until(lambda: compacted_to(b.bootstrap, topic, expected), 60, 0.5, "compacted to the last values")
    finally:
        stop.set()
        t.join(60)
    by_offset = {o: (k, v) for _, o, k, v in written}
    assert not problems, problems[:5]
    assert seen and all(by_offset[o] == kv for o, kv in seen.items())  # every offset: the one value written there


def test_keyless_produce_to_a_compacted_topic_is_refused(brokers, file_store) -> None:  # type: ignore[no-untyped-def]
    b = brokers(file_store)
    topic = topic_name()
    create_topic(b.bootstrap, topic, 1, EAGER)
    [(err, *_)] = produce(b.bootstrap, topic, [(None, b"no key")])
    assert err is not None and err.code() == KafkaError.INVALID_RECORD
    [(ok, offset, *_)] = produce(b.bootstrap, topic, [(b"k", b"keyed")])
    assert ok is None and offset == 0  # nothing of the refused record went in
    from kafka import KafkaProducer
    from kafka.errors import InvalidRecordError

    kp = KafkaProducer(bootstrap_servers=b.bootstrap, retries=0)
    try:
        with pytest.raises(InvalidRecordError, match="Compacted topic cannot accept message without key"):
            kp.send(topic, value=b"no key", partition=0).get(30)
    finally:
        kp.close()


def alter(bootstrap: str, topic: str, **configs: str) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    res = ConfigResource(ConfigResource.Type.TOPIC, topic, incremental_configs=[
        ConfigEntry(k.replace("_", "."), v, incremental_operation=AlterConfigOpType.SET) for k, v in configs.items()])
    for f in admin.incremental_alter_configs([res]).values():
        f.result(30)


def test_policy_switch_by_incremental_alter_configs_takes_effect_without_restart(brokers, file_store) -> None:  # type: ignore[no-untyped-def]
    b = brokers(file_store, *FAST)
    topic = topic_name()
    create_topic(b.bootstrap, topic, 1, {"cleanup.policy": "delete"})
    written = produce(b.bootstrap, topic, [(b"k", b"1")]) + produce(b.bootstrap, topic, [(b"k", b"2")])
    written += produce(b.bootstrap, topic, [(b"tail", b"t")])
    alter(b.bootstrap, topic, cleanup_policy="compact", min_cleanable_dirty_ratio="0.01")
    wait_until(lambda: compacted_to(b.bootstrap, topic, last_per_key(written)), 60, 0.5, "compacted after the switch")
    alter(b.bootstrap, topic, cleanup_policy="delete")
    more = produce(b.bootstrap, topic, [(b"z", b"1")]) + produce(b.bootstrap, topic, [(b"z", b"2")])
    more += produce(b.bootstrap, topic, [(b"tail", b"t2")])
    deadline = time.monotonic() + 3  # several 200 ms rounds: duplicates stay under cleanup.policy=delete
    while time.monotonic() < deadline:
        assert [k for _, k, _ in read_log(b.bootstrap, topic)].count(b"z") == 2


def test_compacted_topic_survives_kill9_of_its_leader_and_a_move(brokers, file_store) -> None:  # type: ignore[no-untyped-def]
    first = brokers(file_store, *FAST)
    topic = topic_name()
    create_topic(first.bootstrap, topic, 1, EAGER)
    written: list[Any] = []
    for rnd in range(3):
        written += produce(first.bootstrap, topic, [(b"k%d" % k, b"%d" % rnd) for k in range(30)])
    written += produce(first.bootstrap, topic, [(b"tail", b"t")])
    expected = last_per_key(written)
    wait_until(lambda: compacted_to(first.bootstrap, topic, expected), 60, 0.5, "compacted before the crash")
    # Checkpoint batches every 200 ms: the next one names the compacted pieces.
    wait_until(lambda: "key compaction pass" in first.log_text(), 30, message="a compaction pass logged")
    time.sleep(0.5)  # noqa: ASYNC251 - let a checkpoint round pass so the crash lands after one
    first.kill9()
    second = brokers(file_store, *FAST, kafka_port=first.kafka_port)
    wait_until(lambda: compacted_to(second.bootstrap, topic, expected), 60, 0.5, "compacted log after kill -9")
    third = brokers(file_store, *FAST)
    wait_until(lambda: len(cluster_view(second)["brokers"]) == 2, 30, message="two brokers")
    leader = leaders(second, topic)[0]
    other = third if leader == _node(second) else second
    reply = post(second.http, "/v1/reassignments", {"moves": [{"topic": topic, "partition": 0, "to": _node(other)}]})
    assert all(r["error"] is None for r in reply["results"]), reply
    wait_until(lambda: compacted_to(other.bootstrap, topic, expected), 60, 0.5, "compacted log after the move")
    written += produce(other.bootstrap, topic, [(b"k0", b"after")])
    assert written[-1][1] == expected[b"tail"][0] + 1  # offsets continue: never reused


def _node(b: BrokerProcess) -> int:
    status, view = b.get("/readyz")
    assert status == 200
    return int(view["node"])


def test_delete_records_with_a_real_admin_client_is_durable(brokers, file_store) -> None:  # type: ignore[no-untyped-def]
    first = brokers(file_store)
    topic = topic_name()
    create_topic(first.bootstrap, topic, 1)
    produce(first.bootstrap, topic, [(b"k", b"%d" % i) for i in range(100)])
    admin = AdminClient({"bootstrap.servers": first.bootstrap})
    [result] = admin.delete_records([TopicPartition(topic, 0, 40)]).values()
    assert result.result(30).low_watermark == 40
    assert [o for o, _, _ in read_log(first.bootstrap, topic, 40)][:1] == [40]
    with pytest.raises(KafkaException) as refused:
        read_log(first.bootstrap, topic, 10)
    assert refused.value.args[0].code() == KafkaError._AUTO_OFFSET_RESET  # OFFSET_OUT_OF_RANGE, no reset
    beyond = admin.delete_records([TopicPartition(topic, 0, 500)])
    with pytest.raises(KafkaException) as out_of_range:
        list(beyond.values())[0].result(30)
    assert out_of_range.value.args[0].code() == KafkaError.OFFSET_OUT_OF_RANGE
    del admin
    first.kill9()  # the new log start is in a checkpoint batch: a successor starts there
    second = brokers(file_store, kafka_port=first.kafka_port)
    c = Consumer({"bootstrap.servers": second.bootstrap, "group.id": "w"})
    try:
        assert wait_until(lambda: c.get_watermark_offsets(TopicPartition(topic, 0), timeout=5), 30) == (40, 100)
    finally:
        c.close()


@pytest.mark.skipif(not KAFKA_JARS.is_dir(), reason="Kafka 4.4 jars not cached (tests/infra/apache_kafka.py)")
def test_delete_records_with_kafkas_tool(brokers, file_store, tmp_path) -> None:  # type: ignore[no-untyped-def]
    b = brokers(file_store)
    topic = topic_name()
    create_topic(b.bootstrap, topic, 1)
    produce(b.bootstrap, topic, [(b"k", b"%d" % i) for i in range(80)])
    spec = tmp_path / "offsets.json"
    spec.write_text(json.dumps({"version": 1, "partitions": [{"topic": topic, "partition": 0, "offset": 60}]}))
    out = subprocess.run(
        ["java", "-cp", f"{KAFKA_JARS}/*", "org.apache.kafka.tools.DeleteRecordsCommand",
         "--bootstrap-server", b.bootstrap, "--offset-json-file", str(spec)],
        capture_output=True, text=True, timeout=180, env={**os.environ},
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert "low_watermark: 60" in out.stdout, out.stdout
    assert read_log(b.bootstrap, topic, 60)[0][0] == 60
