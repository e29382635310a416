"""confluent-kafka's transactional producer and read_committed consumers against an in-process broker.

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
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition

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
