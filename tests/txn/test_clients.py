"""Transactional producers and read_committed consumers (confluent-kafka, kafka-python, aiokafka) against
an in-process broker.

The broker listens on a free local port; client calls run in threads while the
event loop serves them. Everything asserted is what a user of the client sees.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka import TopicPartition as AioTopicPartition
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from kafka import KafkaProducer

from floe_broker.app import Broker
from tests.inprocess.harness import CONFIG, started_broker

TXN_CONFIG = dataclasses.replace(CONFIG, transaction_state_partitions=2)


@pytest.fixture
async def broker() -> AsyncIterator[Broker]:
    async with started_broker(TXN_CONFIG, listen=True) as b:
        yield b


def bootstrap(broker: Broker) -> str:
    assert broker.listener is not None
    return f"127.0.0.1:{broker.listener.port}"


def txn_producer(broker: Broker, txn_id: str, **extra: Any) -> Producer:
    return Producer({"bootstrap.servers": bootstrap(broker), "transactional.id": txn_id, "linger.ms": 5,
                     "transaction.timeout.ms": 60000, **extra})


def consume_all(broker: Broker, topic: str, isolation: str, expect: int, *, partitions: int = 1,
                timeout: float = 30.0, settle: float = 1.0) -> list[tuple[int, int, bytes]]:
    """Read the topic from the start until ``expect`` values arrived (and a quiet ``settle``), or timeout."""
    consumer = Consumer({"bootstrap.servers": bootstrap(broker), "group.id": f"g-{uuid.uuid4()}",
                         "isolation.level": isolation, "auto.offset.reset": "earliest",
                         "enable.auto.commit": False})
    consumer.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
    out: list[tuple[int, int, bytes]] = []
    deadline = time.monotonic() + timeout
    quiet_since: float | None = None
    try:
        while time.monotonic() < deadline:
            msg = consumer.poll(0.2)
            if msg is None:
                if len(out) >= expect:
                    quiet_since = quiet_since or time.monotonic()
                    if time.monotonic() - quiet_since >= settle:
                        break
                continue
            if msg.error():
                if msg.error().code() == KafkaError._PARTITION_EOF:
                    continue
                raise KafkaException(msg.error())
            out.append((msg.partition(), msg.offset(), msg.value()))
            quiet_since = None
    finally:
        consumer.close()
    return out


def run_interleaved(producer: Producer, topic: str, rounds: int) -> tuple[list[bytes], list[bytes]]:
    producer.init_transactions(30)
    committed: list[bytes] = []
    aborted: list[bytes] = []
    for r in range(rounds):
        producer.begin_transaction()
        values = [f"r{r}-{i}".encode() for i in range(5)]
        for i, v in enumerate(values):
            producer.produce(topic, value=v, partition=i % 2)
        if r % 2 == 0:
            producer.commit_transaction(30)
            committed.extend(values)
        else:
            producer.flush(30)  # the records are in the log before the abort
            producer.abort_transaction(30)
            aborted.extend(values)
    return committed, aborted


async def test_read_committed_sees_committed_only_and_uncommitted_sees_both(broker: Broker) -> None:
    await broker.serving.create_topic("t", 2, {})
    producer = txn_producer(broker, "tx-interleaved")
    committed, aborted = await asyncio.to_thread(run_interleaved, producer, "t", 6)
    rc = await asyncio.to_thread(consume_all, broker, "t", "read_committed", len(committed), partitions=2)
    ru = await asyncio.to_thread(consume_all, broker, "t", "read_uncommitted", len(committed) + len(aborted),
                                 partitions=2)
    rc_values = [v for _, _, v in rc]
    assert sorted(rc_values) == sorted(committed), "read_committed must see exactly the committed values"
    for p in (0, 1):  # in order per partition
        seen = [v for part, _, v in rc if part == p]
        assert seen == [v for v in committed if v in set(seen)]
    assert sorted(v for _, _, v in ru) == sorted(committed + aborted)
    del producer


def committed_offset(broker: Broker, group: str, topic: str, partition: int, *, isolation: str = "read_committed",
                     timeout: float = 20) -> int:
    """``committed()`` of a consumer in ``group``; read_committed asks for stable offsets (KIP-447)."""
    consumer = Consumer({"bootstrap.servers": bootstrap(broker), "group.id": group, "enable.auto.commit": False,
                         "isolation.level": isolation})
    try:
        got = consumer.committed([TopicPartition(topic, partition)], timeout=timeout)
        return int(got[0].offset)
    finally:
        consumer.close()


async def test_consume_transform_produce_commits_offsets_only_with_the_transaction(broker: Broker) -> None:
    await broker.serving.create_topic("in", 1, {})
    await broker.serving.create_topic("out", 1, {})
    seed = Producer({"bootstrap.servers": bootstrap(broker), "linger.ms": 0})
    for i in range(10):
        seed.produce("in", value=f"v{i}".encode())
    seed.flush(30)
    group = "ctp"

    def transform(commit: bool, start: int) -> None:
        consumer = Consumer({"bootstrap.servers": bootstrap(broker), "group.id": group,
                             "isolation.level": "read_committed", "auto.offset.reset": "earliest",
                             "enable.auto.commit": False})
        consumer.assign([TopicPartition("in", 0, start)])
        producer = txn_producer(broker, "tx-ctp")
        producer.init_transactions(30)
        producer.begin_transaction()
        got = 0
        deadline = time.monotonic() + 30
        last = None
        while got < 5 and time.monotonic() < deadline:
            msg = consumer.poll(0.2)
            if msg is None or msg.error():
                continue
            producer.produce("out", value=msg.value().upper())
            got += 1
            last = msg.offset()
        assert last is not None
        producer.send_offsets_to_transaction([TopicPartition("in", 0, last + 1)],
                                             consumer.consumer_group_metadata(), 30)
        producer.flush(30)
        # before the end, the offsets are pending: OffsetFetch does not show them, and a read_committed
        # consumer (require_stable) is told UNSTABLE_OFFSET_COMMIT and waits for the transaction's end
        assert committed_offset(broker, group, "in", 0, isolation="read_uncommitted") == (start if start else -1001)
        with pytest.raises(KafkaException, match="Timed out"):
            committed_offset(broker, group, "in", 0, timeout=2)
        if commit:
            producer.commit_transaction(30)
        else:
            producer.abort_transaction(30)
        consumer.close()

    await asyncio.to_thread(transform, False, 0)
    assert await asyncio.to_thread(committed_offset, broker, group, "in", 0) == -1001, "aborted offsets vanish"
    await asyncio.to_thread(transform, True, 0)
    assert await asyncio.to_thread(committed_offset, broker, group, "in", 0) == 5
    out = await asyncio.to_thread(consume_all, broker, "out", "read_committed", 5)
    assert [v for _, _, v in out] == [f"V{i}".encode() for i in range(5)]
    # the coordinator's state survives a reload from the journal: the next transaction starts from 5
    await asyncio.to_thread(transform, True, 5)
    assert await asyncio.to_thread(committed_offset, broker, group, "in", 0) == 10


def open_and_fence(broker: Broker, topic: str) -> tuple[list[bytes], KafkaException | None]:
    """An old incarnation writes inside a transaction; a new one with the same id starts and commits;
    the old one's commit must fail as fenced."""
    old = txn_producer(broker, "tx-fence")
    old.init_transactions(30)
    old.begin_transaction()
    old.produce(topic, value=b"old")
    old.flush(30)
    new = txn_producer(broker, "tx-fence")
    new.init_transactions(30)  # aborts the old incarnation's open transaction and fences it
    new.begin_transaction()
    new.produce(topic, value=b"new")
    new.commit_transaction(30)
    error: KafkaException | None = None
    try:
        old.produce(topic, value=b"old-2")
        old.commit_transaction(30)
    except KafkaException as exc:
        error = exc
    return [b"new"], error


async def test_a_second_producer_with_the_same_id_fences_the_first(broker: Broker) -> None:
    await broker.serving.create_topic("f", 1, {})
    expected, error = await asyncio.to_thread(open_and_fence, broker, "f")
    assert error is not None, "the fenced producer's commit must fail"
    assert error.args[0].code() in (KafkaError._FENCED, KafkaError.PRODUCER_FENCED, KafkaError.INVALID_PRODUCER_EPOCH,
                                    KafkaError.INVALID_TXN_STATE), error
    seen = await asyncio.to_thread(consume_all, broker, "f", "read_committed", 1)
    assert [v for _, _, v in seen] == expected


def abandon(broker: Broker, topic: str) -> KafkaException | None:
    producer = txn_producer(broker, "tx-timeout", **{"transaction.timeout.ms": 1500})
    producer.init_transactions(30)
    producer.begin_transaction()
    producer.produce(topic, value=b"late")
    producer.flush(30)
    time.sleep(4)  # the client's own inaction IS the scenario: the coordinator must abort on its timeout
    try:
        producer.commit_transaction(30)
    except KafkaException as exc:
        return exc
    return None


async def test_a_transaction_past_its_timeout_is_aborted(broker: Broker) -> None:
    await broker.serving.create_topic("to", 1, {})
    error = await asyncio.to_thread(abandon, broker, "to")
    assert error is not None, "committing a timed-out transaction must fail"
    part = await broker.serving.leader_partition("to", 0)
    assert part is not None
    assert part.last_stable_offset == part.high_watermark, "the abort marker closed the transaction"
    ru = await asyncio.to_thread(consume_all, broker, "to", "read_uncommitted", 1)
    assert [v for _, _, v in ru] == [b"late"]
    rc = await asyncio.to_thread(consume_all, broker, "to", "read_committed", 0, settle=2.0)
    assert rc == []


async def test_read_committed_waits_at_the_last_stable_offset(broker: Broker) -> None:
    """Data behind an open transaction is held back from read_committed, even non-transactional data."""
    await broker.serving.create_topic("lso", 1, {})

    def scenario() -> tuple[list[bytes], list[bytes], list[bytes]]:
        producer = txn_producer(broker, "tx-lso")
        producer.init_transactions(30)
        producer.begin_transaction()
        producer.produce("lso", value=b"in-txn")
        producer.flush(30)
        plain = Producer({"bootstrap.servers": bootstrap(broker), "linger.ms": 0})
        plain.produce("lso", value=b"after")
        plain.flush(30)
        held = [v for _, _, v in consume_all(broker, "lso", "read_committed", 0, settle=1.5)]
        producer.commit_transaction(30)
        released = [v for _, _, v in consume_all(broker, "lso", "read_committed", 2)]
        uncommitted = [v for _, _, v in consume_all(broker, "lso", "read_uncommitted", 2)]
        return held, released, uncommitted

    held, released, uncommitted = await asyncio.to_thread(scenario)
    assert held == []
    assert released == [b"in-txn", b"after"]
    assert uncommitted == [b"in-txn", b"after"]


async def test_kafka_python_and_aiokafka_transactions(broker: Broker) -> None:
    """kafka-python 3's transactional producer commits and aborts; aiokafka's read_committed consumer
    and transactional producer see and write the same thing librdkafka does."""
    await broker.serving.create_topic("kp", 1, {})

    def kafka_python() -> None:
        producer = KafkaProducer(bootstrap_servers=bootstrap(broker), transactional_id="tx-kafka-python")
        producer.init_transactions()
        producer.begin_transaction()
        producer.send("kp", b"kp-committed")
        producer.commit_transaction()
        producer.begin_transaction()
        producer.send("kp", b"kp-aborted").get(30)
        producer.abort_transaction()
        producer.close(10)

    await asyncio.to_thread(kafka_python)
    aio = AIOKafkaProducer(bootstrap_servers=bootstrap(broker), transactional_id="tx-aiokafka")
    await aio.start()
    try:
        async with aio.transaction():
            await aio.send_and_wait("kp", b"aio-committed")
        await aio.begin_transaction()
        await aio.send_and_wait("kp", b"aio-aborted")
        await aio.abort_transaction()
    finally:
        await aio.stop()
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap(broker), isolation_level="read_committed",
                                enable_auto_commit=False, auto_offset_reset="earliest")
    await consumer.start()
    try:
        tp = AioTopicPartition("kp", 0)
        consumer.assign([tp])
        await consumer.seek_to_beginning(tp)
        seen: list[bytes] = []
        deadline = time.monotonic() + 30
        while len(seen) < 2 and time.monotonic() < deadline:
            batch = await consumer.getmany(tp, timeout_ms=500)
            seen.extend(m.value for m in batch.get(tp, []))
        end = await consumer.end_offsets([tp])
    finally:
        await consumer.stop()
    assert seen == [b"kp-committed", b"aio-committed"]
    part = await broker.serving.leader_partition("kp", 0)
    assert part is not None and end[tp] == part.last_stable_offset == part.high_watermark
