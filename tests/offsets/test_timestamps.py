"""ListOffsets by timestamp answers the record, not the batch, whatever the batch's codec.

Each partition holds ONE batch (a long linger, then a flush) whose record
timestamps are out of order, written by confluent-kafka (librdkafka) or
kafka-python with each codec. Kafka's answer for a target timestamp is the
first record in offset order whose own timestamp is at or after it, with
that record's timestamp; MAX_TIMESTAMP names the first record carrying the
largest one. Both clients ask: ``offsets_for_times`` and, for timestamps and
MAX_TIMESTAMP, the admin client's ``list_offsets``.
"""

from __future__ import annotations

import time
import uuid

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, OffsetSpec
from kafka import KafkaConsumer, KafkaProducer
from kafka import TopicPartition as KafkaTopicPartition

from tests.infra.broker import BrokerProcess
from tests.test_clients import create_topic

# Offsets 0..7 of one batch, in this order: record 1 is far newer than record 0, record 5 the newest.
DELTAS = [1000, 5000, 2000, 3000, 4000, 8000, 6000, 7000]
# target delta -> (offset, record's delta) of Kafka's answer
EXPECTED = {0: (0, 1000), 1500: (1, 5000), 4500: (1, 5000), 5500: (5, 8000), 8000: (5, 8000)}
CODECS = ["none", "gzip", "snappy", "lz4", "zstd"]
# partition -> (producing client, codec)
LAYOUT = [("confluent", c) for c in CODECS] + [("kafka-python", c) for c in CODECS]


def produce_one_batch(bootstrap: str, topic: str, partition: int, client: str, codec: str, base: int) -> None:
    if client == "confluent":
        p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 60_000, "acks": "all",
                      "compression.type": codec, "enable.idempotence": False})
        for d in DELTAS:
            p.produce(topic, value=f"v{d}".encode(), partition=partition, timestamp=base + d)
        assert p.flush(30) == 0
        return
    kp = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=60_000, acks="all",
                       compression_type=None if codec == "none" else codec)
    try:
        futures = [kp.send(topic, value=f"v{d}".encode(), partition=partition, timestamp_ms=base + d)
                   for d in DELTAS]
        kp.flush(30)
        assert [f.get(10).offset for f in futures] == list(range(len(DELTAS)))
    finally:
        kp.close()


@pytest.fixture(scope="module")
def loaded(module_broker: BrokerProcess) -> tuple[BrokerProcess, str, int]:
    b = module_broker
    topic = f"ts-{uuid.uuid4().hex[:6]}"
    create_topic(b.bootstrap, topic, len(LAYOUT))
    base = int(time.time() * 1000) - 3_600_000
    for partition, (client, codec) in enumerate(LAYOUT):
        produce_one_batch(b.bootstrap, topic, partition, client, codec, base)
    return b, topic, base


def test_confluent_offsets_for_times_finds_the_first_record_at_or_after_the_target(loaded) -> None:  # type: ignore[no-untyped-def]
    b, topic, base = loaded
    c = Consumer({"bootstrap.servers": b.bootstrap, "group.id": f"g-{uuid.uuid4().hex[:6]}"})
    try:
        for target, (offset, _) in EXPECTED.items():
            asked = [TopicPartition(topic, p, base + target) for p in range(len(LAYOUT))]
            got = {tp.partition: tp.offset for tp in c.offsets_for_times(asked, 30)}
            assert got == dict.fromkeys(range(len(LAYOUT)), offset), (target, LAYOUT)
        beyond = c.offsets_for_times([TopicPartition(topic, 0, base + 8001)], 30)
        assert beyond[0].offset == -1
    finally:
        c.close()


def test_confluent_list_offsets_gives_the_records_own_timestamp_and_max_timestamp(loaded) -> None:  # type: ignore[no-untyped-def]
    b, topic, base = loaded
    admin = AdminClient({"bootstrap.servers": b.bootstrap})
    for target, (offset, delta) in [*EXPECTED.items(), ("max", (5, 8000))]:
        spec = OffsetSpec.max_timestamp() if target == "max" else OffsetSpec.for_timestamp(base + int(target))
        asked = {TopicPartition(topic, p): spec for p in range(len(LAYOUT))}
        got = {tp.partition: (f.result(30).offset, f.result(30).timestamp)
               for tp, f in admin.list_offsets(asked).items()}
        assert got == dict.fromkeys(range(len(LAYOUT)), (offset, base + delta)), (target, LAYOUT)


def test_kafka_python_offsets_for_times_gives_offset_and_timestamp(loaded) -> None:  # type: ignore[no-untyped-def]
    b, topic, base = loaded
    c = KafkaConsumer(bootstrap_servers=b.bootstrap)
    try:
        parts = [KafkaTopicPartition(topic, p) for p in range(len(LAYOUT))]
        for target, (offset, delta) in EXPECTED.items():
            got = c.offsets_for_times(dict.fromkeys(parts, base + target))
            assert {tp.partition: (v.offset, v.timestamp) for tp, v in got.items()} == dict.fromkeys(
                range(len(LAYOUT)), (offset, base + delta)), (target, LAYOUT)
        assert c.offsets_for_times({parts[0]: base + 8001}) == {parts[0]: None}
    finally:
        c.close()
