"""Round trips with real Kafka clients against a real broker process.

Runs against both stores (``file://`` and boto3 on a moto S3 server). Each
test checks what a user sees: what was produced comes back, byte for byte,
at the offsets the producer was told.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import time
import uuid

import pytest
from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from tests.infra.broker import BrokerProcess, wait_until


def topic_name() -> str:
    return f"t-{uuid.uuid4().hex[:10]}"


def create_topic(bootstrap: str, name: str, partitions: int = 1, config: dict[str, str] | None = None) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    futures = admin.create_topics([NewTopic(name, partitions, replication_factor=1, config=config or {})])
    futures[name].result(30)


def produce_all(bootstrap: str, messages, **conf):  # type: ignore[no-untyped-def]
    """Produce (topic, partition, key, value, headers, timestamp) tuples; return delivery reports."""
    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5, "acks": "all", **conf})
    reports: list = []

    def on_delivery(err, msg):  # type: ignore[no-untyped-def]
        reports.append((err, msg))

    for topic, partition, key, value, headers, ts in messages:
        kwargs = {"key": key, "value": value, "headers": headers, "on_delivery": on_delivery}
        if partition is not None:
            kwargs["partition"] = partition
        if ts is not None:
            kwargs["timestamp"] = ts
        while True:
            try:
                p.produce(topic, **kwargs)
                break
            except BufferError:
                p.poll(0.1)
        p.poll(0)
    assert p.flush(60) == 0, "producer did not flush"
    errors = [err for err, _ in reports if err is not None]
    assert not errors, errors[:3]
    return [msg for _, msg in reports]


def consume_exactly(bootstrap: str, topic: str, partition: int, start: int, count: int, timeout: float = 30):  # type: ignore[no-untyped-def]
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"g-{uuid.uuid4().hex[:6]}",
                  "enable.auto.commit": False, "fetch.max.bytes": 8 * 1024 * 1024,
                  "max.partition.fetch.bytes": 4 * 1024 * 1024})
    c.assign([TopicPartition(topic, partition, start)])
    got = []
    deadline = time.monotonic() + timeout
    try:
        while len(got) < count and time.monotonic() < deadline:
            m = c.poll(0.5)
            if m is None:
                continue
            if m.error():
                raise KafkaException(m.error())
            got.append(m)
    finally:
        c.close()
    assert len(got) == count, f"consumed {len(got)} of {count}"
    return got


def test_confluent_round_trip_keys_nulls_headers(broker: BrokerProcess) -> None:
    topic = topic_name()
    create_topic(broker.bootstrap, topic, 3)
    msgs = []
    for i in range(300):
        key = None if i % 7 == 0 else f"k{i}".encode()
        value = None if i % 11 == 0 else f"value-{i}".encode() * (1 + i % 5)
        headers = [("h1", f"{i}".encode()), ("empty", b"")] if i % 3 == 0 else None
        msgs.append((topic, i % 3, key, value, headers, None))
    reports = produce_all(broker.bootstrap, msgs)
    by_offset = {(m.partition(), m.offset()): m for m in reports}
    assert len(by_offset) == 300, "two records were acknowledged at the same offset"
    for part in range(3):
        sent = [m for m in msgs if m[1] == part]
        got = consume_exactly(broker.bootstrap, topic, part, 0, len(sent))
        assert [m.offset() for m in got] == list(range(len(sent)))
        for s, g in zip(sent, got, strict=True):
            assert g.key() == s[2]
            assert g.value() == s[3]
            assert (g.headers() or None) == (s[4] or None)


@pytest.mark.parametrize("codec", ["gzip", "snappy", "lz4", "zstd"])
def test_compressed_batches_pass_through(broker: BrokerProcess, codec: str) -> None:
    topic = topic_name()
    create_topic(broker.bootstrap, topic)
    values = [f"{codec}-{i}-".encode() * 50 for i in range(500)]
    produce_all(broker.bootstrap, [(topic, 0, None, v, None, None) for v in values], **{"compression.codec": codec})
    got = consume_exactly(broker.bootstrap, topic, 0, 0, len(values))
    assert [m.value() for m in got] == values


def test_large_records(broker: BrokerProcess) -> None:
    topic = topic_name()
    create_topic(broker.bootstrap, topic, config={"max.message.bytes": str(8 * 1024 * 1024)})
    big = [os.urandom(1024 * 1024 + 17 * i) for i in range(1, 6)]
    produce_all(broker.bootstrap, [(topic, 0, b"k", v, None, None) for v in big],
                **{"message.max.bytes": 10 * 1024 * 1024})
    got = consume_exactly(broker.bootstrap, topic, 0, 0, len(big))
    assert [m.value() for m in got] == big


def test_thousand_partitions(broker: BrokerProcess) -> None:
    topic = topic_name()
    create_topic(broker.bootstrap, topic, 1000)
    msgs = [(topic, p, None, f"p{p}".encode(), None, None) for p in range(1000)]
    reports = produce_all(broker.bootstrap, msgs)
    assert {(m.partition(), m.offset()) for m in reports} == {(p, 0) for p in range(1000)}
    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "x", "enable.auto.commit": False})
    c.assign([TopicPartition(topic, p, 0) for p in range(1000)])
    seen = {}
    deadline = time.monotonic() + 60
    while len(seen) < 1000 and time.monotonic() < deadline:
        for m in c.consume(500, 0.5):
            assert not m.error(), m.error()
            seen[m.partition()] = m.value()
    c.close()
    assert seen == {p: f"p{p}".encode() for p in range(1000)}


def test_seek_by_offset_and_timestamp(broker: BrokerProcess) -> None:
    topic = topic_name()
    create_topic(broker.bootstrap, topic)
    base_ts = int(time.time() * 1000) - 100_000
    msgs = [(topic, 0, None, f"v{i}".encode(), None, base_ts + i * 1000) for i in range(50)]
    produce_all(broker.bootstrap, msgs, **{"linger.ms": 0, "batch.num.messages": 1})
    # by offset
    got = consume_exactly(broker.bootstrap, topic, 0, 42, 8)
    assert [m.value() for m in got] == [f"v{i}".encode() for i in range(42, 50)]
    # by timestamp: exactly the first record at or after the target
    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "ts"})
    found = c.offsets_for_times([TopicPartition(topic, 0, base_ts + 17_500)], 10)
    assert found[0].offset == 18
    found = c.offsets_for_times([TopicPartition(topic, 0, base_ts + 10_000_000)], 10)
    assert found[0].offset == -1  # no such record: end
    low, high = c.get_watermark_offsets(TopicPartition(topic, 0), 10)
    assert (low, high) == (0, 50)
    c.close()


def test_kafka_python_round_trip(broker: BrokerProcess) -> None:
    from kafka import KafkaConsumer, KafkaProducer
    from kafka import TopicPartition as KTP

    topic = topic_name()
    create_topic(broker.bootstrap, topic, 2)
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap, acks="all", compression_type="gzip")
    futures = [producer.send(topic, key=f"k{i}".encode(), value=f"v{i}".encode(), partition=i % 2,
                             headers=[("n", str(i).encode())]) for i in range(200)]
    metas = [f.get(timeout=30) for f in futures]
    producer.close()
    assert sorted((m.partition, m.offset) for m in metas) == sorted(
        [(0, i) for i in range(100)] + [(1, i) for i in range(100)])
    consumer = KafkaConsumer(bootstrap_servers=broker.bootstrap, enable_auto_commit=False,
                             consumer_timeout_ms=10_000)
    consumer.assign([KTP(topic, 0), KTP(topic, 1)])
    consumer.seek_to_beginning()
    got = []
    for msg in consumer:
        got.append((msg.partition, msg.offset, msg.key, msg.value, msg.headers))
        if len(got) == 200:
            break
    consumer.close()
    assert len(got) == 200
    assert {(p, o) for p, o, *_ in got} == {(m.partition, m.offset) for m in metas}
    assert all(v == b"v" + k[1:] for _, _, k, v, _ in got)


def test_aiokafka_round_trip(broker: BrokerProcess) -> None:
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
    from aiokafka import TopicPartition as ATP

    topic = topic_name()
    create_topic(broker.bootstrap, topic)

    async def run() -> list[tuple[int, bytes | None, bytes | None]]:
        producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap, acks="all", compression_type="lz4",
                                    enable_idempotence=True)
        await producer.start()
        try:
            for i in range(100):
                await producer.send_and_wait(topic, key=f"k{i}".encode() if i % 2 else None,
                                             value=f"v{i}".encode(), partition=0)
        finally:
            await producer.stop()
        consumer = AIOKafkaConsumer(bootstrap_servers=broker.bootstrap, enable_auto_commit=False)
        await consumer.start()
        try:
            consumer.assign([ATP(topic, 0)])
            await consumer.seek_to_beginning()
            out = []
            while len(out) < 100:
                batch = await asyncio.wait_for(consumer.getmany(timeout_ms=1000), 15)
                for msgs in batch.values():
                    out.extend((m.offset, m.key, m.value) for m in msgs)
            return out
        finally:
            await consumer.stop()

    got = asyncio.run(run())
    assert [o for o, _, _ in got] == list(range(100))
    assert [v for _, _, v in got] == [f"v{i}".encode() for i in range(100)]
    assert [k for _, k, _ in got][:2] == [None, b"k1"]


@pytest.mark.skipif(shutil.which("kcat") is None, reason="kcat is not installed (apt-get install kcat)")
def test_kcat_round_trip(broker: BrokerProcess) -> None:
    topic = topic_name()
    lines = "".join(f"key{i}:line {i}\n" for i in range(100))
    subprocess.run(["kcat", "-P", "-b", broker.bootstrap, "-t", topic, "-K:", "-X", "acks=all"],
                   input=lines.encode(), check=True, timeout=60)
    out = subprocess.run(["kcat", "-C", "-b", broker.bootstrap, "-t", topic, "-o", "beginning", "-e",
                          "-f", "%k=%s@%o\n"], capture_output=True, check=True, timeout=60)
    assert out.stdout.decode().splitlines() == [f"key{i}=line {i}@{i}" for i in range(100)]


def test_long_poll_returns_when_data_arrives(broker: BrokerProcess) -> None:
    """A consumer waiting at the end gets new data promptly, not after fetch.wait.max.ms."""
    topic = topic_name()
    create_topic(broker.bootstrap, topic)
    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "lp", "fetch.wait.max.ms": 5000,
                  "enable.auto.commit": False})
    c.assign([TopicPartition(topic, 0, 0)])
    assert c.poll(1.0) is None
    t0 = time.monotonic()
    produce_all(broker.bootstrap, [(topic, 0, None, b"x", None, None)], **{"linger.ms": 0})
    msg = wait_until(lambda: c.poll(0.2), 10, message="message delivered")
    latency = time.monotonic() - t0
    c.close()
    assert msg.value() == b"x"
    assert latency < 3.0, f"long poll held the fetch for {latency:.1f}s"


def test_pipelined_requests_keep_their_order(broker: BrokerProcess) -> None:
    """Kafka orders requests per connection: five in flight must still append in order."""
    topic = topic_name()
    values = [f"{i:06d}".encode() for i in range(3000)]
    # No explicit topic creation: the first requests race with auto-creation and opening.
    reports = produce_all(broker.bootstrap, [(topic, 0, None, v, None, None) for v in values],
                          **{"linger.ms": 0, "batch.num.messages": 1, "max.in.flight.requests.per.connection": 5,
                             "retries": 0})
    assert sorted(m.offset() for m in reports) == list(range(len(values)))
    got = consume_exactly(broker.bootstrap, topic, 0, 0, len(values))
    assert [m.value() for m in got] == values


def test_acks_zero_gets_no_answer_but_is_stored(broker: BrokerProcess) -> None:
    topic = topic_name()
    create_topic(broker.bootstrap, topic)
    reports = produce_all(broker.bootstrap, [(topic, 0, None, f"z{i}".encode(), None, None) for i in range(50)],
                          **{"acks": 0})
    # librdkafka reports acks=0 deliveries without an offset: the broker sent no response
    assert all(m.offset() is None or m.offset() < 0 for m in reports)
    got = consume_exactly(broker.bootstrap, topic, 0, 0, 50)
    assert [m.value() for m in got] == [f"z{i}".encode() for i in range(50)]
