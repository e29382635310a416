"""Key compaction of a transactional topic through real clients against real broker processes.

confluent-kafka's transactional producers write committed and aborted
transactions, interleaved, to a compacted topic, with another transaction
left open; read_committed and read_uncommitted consumers read what a user
would. Then the leader is killed -9 right after the open transaction aborts
(a compaction round due or running), and its successor must serve, and go
on compacting, the same log. Brokers consolidate and compact every 200 ms.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition

from tests.compaction.test_clients import EAGER, FAST, produce, topic_name
from tests.infra.broker import BrokerProcess, wait_until
from tests.test_clients import create_topic

Log = list[tuple[int, bytes | None, bytes | None]]


def read(bootstrap: str, topic: str, isolation: str) -> Log:
    """Every record a consumer with this isolation level reads from offset 0 to the high watermark."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"g-{uuid.uuid4().hex[:6]}",
                  "enable.auto.commit": False, "isolation.level": isolation})
    try:
        _, high = c.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)
        c.assign([TopicPartition(topic, 0, 0)])
        got: Log = []
        deadline = time.monotonic() + 20
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


def transaction(producer: Producer, topic: str, pairs: list[tuple[bytes, bytes]], *, commit: bool | None) -> list[Any]:
    """One transaction of these records; committed, aborted, or (None) left open. (offset, key, value)s."""
    out: list[Any] = []
    producer.begin_transaction()
    for key, value in pairs:
        producer.produce(topic, key=key, value=value, partition=0,
                         on_delivery=lambda err, msg: out.append((err, msg.offset(), msg.key(), msg.value())))
    assert producer.flush(30) == 0
    assert all(err is None for err, *_ in out)
    if commit is True:
        producer.commit_transaction(30)
    elif commit is False:
        producer.abort_transaction(30)
    return [tuple(r[1:]) for r in out]


def txn_producer(bootstrap: str) -> Producer:
    p = Producer({"bootstrap.servers": bootstrap, "transactional.id": f"tx-{uuid.uuid4().hex[:8]}",
                  "linger.ms": 2, "transaction.timeout.ms": 60000})
    p.init_transactions(30)
    return p


def last_committed(*transactions: list[Any]) -> Log:
    last: dict[bytes, tuple[int, bytes]] = {}
    for txn in transactions:
        for offset, key, value in txn:
            last[key] = (offset, value)
    return sorted((o, k, v) for k, (o, v) in last.items())


def test_compaction_removes_aborted_transactions_and_spares_an_open_one(brokers, file_store) -> None:  # type: ignore[no-untyped-def]
    first: BrokerProcess = brokers(file_store, *FAST)
    topic = topic_name()
    create_topic(first.bootstrap, topic, 1, {**EAGER, "delete.retention.ms": "1000"})
    keys = [b"k%d" % i for i in range(10)]
    p = txn_producer(first.bootstrap)
    c1 = transaction(p, topic, [(k, b"commit-1") for k in keys], commit=True)
    transaction(p, topic, [(k, b"abort-2") for k in keys], commit=False)
    c3 = transaction(p, topic, [(k, b"commit-3") for k in keys[:5]], commit=True)
    transaction(p, topic, [(k, b"abort-4") for k in keys[5:]], commit=False)
    q = txn_producer(first.bootstrap)
    [opened] = transaction(q, topic, [(b"k0", b"open")], commit=None)
    [tail] = [tuple(r[1:]) for r in produce(first.bootstrap, topic, [(b"tail", b"t")])]
    committed = last_committed(c1, c3)

    # Below the open transaction: aborted records gone, the last committed value per key at its offset.
    # The open transaction's record and everything after it are untouched, so k0's committed value stays.
    wait_until(lambda: read(first.bootstrap, topic, "read_uncommitted") == [*committed, opened, tail], 60, 0.5,
               "aborted records compacted away below the open transaction")

    q.abort_transaction(30)
    [tail2] = [tuple(r[1:]) for r in produce(first.bootstrap, topic, [(b"tail", b"t2")])]
    expected = [*committed, tail2]
    first.kill9()  # a compaction round is due (or running) for the open transaction's abort
    second = brokers(file_store, *FAST, kafka_port=first.kafka_port)
    wait_until(lambda: read(second.bootstrap, topic, "read_uncommitted") == expected, 60, 0.5,
               "the successor compacted the aborted open transaction away")
    assert read(second.bootstrap, topic, "read_committed") == expected
    assert not any(v.startswith(b"abort") or v == b"open" for _, _, v in read(second.bootstrap, topic, "read_committed")
                   if v is not None)
    [(err, after, *_)] = produce(second.bootstrap, topic, [(b"k0", b"after")])
    assert err is None and after == tail2[0] + 1  # offsets continue: never reused
