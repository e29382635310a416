"""Key compaction of a transactional topic through real clients against real broker processes.

confluent-kafka's transactional producers write committed and aborted
transactions, interleaved, to a compacted topic, with another transaction
left open; read_committed and read_uncommitted consumers read what a user
would. Then the leader is killed -9 right after the open transaction aborts
(a compaction round due or running), and its successor must serve, and go
on compacting, the same log. Brokers consolidate and compact every 200 ms.
"""

from __future__ import annotations

import threading
import time
import uuid
from typing import Any

from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition

from tests.compaction.test_clients import EAGER, FAST, produce, read_log, topic_name
from tests.infra.broker import BrokerProcess, wait_until
from tests.test_clients import create_topic

Log = list[tuple[int, bytes | None, bytes | None]]


def read(bootstrap: str, topic: str, isolation: str) -> Log:
    """Every record a consumer with this isolation level reads from offset 0 to the high watermark."""
    return read_log(bootstrap, topic, isolation=isolation, timeout=20)


def read_kafka_python(bootstrap: str, topic: str, count: int) -> Log:
    """The first ``count`` records kafka-python's read_committed consumer reads from offset 0."""
    from kafka import KafkaConsumer
    from kafka import TopicPartition as KTopicPartition

    c = KafkaConsumer(bootstrap_servers=bootstrap, isolation_level="read_committed", enable_auto_commit=False,
                      group_id=None, consumer_timeout_ms=10_000)
    try:
        tp = KTopicPartition(topic, 0)
        c.assign([tp])
        c.seek(tp, 0)
        got: Log = []
        for m in c:
            got.append((m.offset, m.key, m.value))
            if len(got) >= count:
                break
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


def txn_producer(bootstrap: str, **conf: Any) -> Producer:
    p = Producer({"bootstrap.servers": bootstrap, "transactional.id": f"tx-{uuid.uuid4().hex[:8]}",
                  "linger.ms": 2, "transaction.timeout.ms": 60000, **conf})
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
    committed = last_committed(c1, c3)
    # Aborted records gone, the last committed value per key at its offset. Wait for it before the
    # next transaction opens: compaction works on whole consolidated segments below the last stable
    # offset, so a segment that also holds an open transaction waits for it to end (on a busy machine
    # consolidation can put both in one segment).
    wait_until(lambda: read(first.bootstrap, topic, "read_uncommitted") == committed, 180, 0.5,
               "aborted records compacted away")
    q = txn_producer(first.bootstrap)
    [opened] = transaction(q, topic, [(b"k0", b"open")], commit=None)
    [tail] = [tuple(r[1:]) for r in produce(first.bootstrap, topic, [(b"tail", b"t")])]

    # The open transaction's record and everything after it are untouched by the passes that follow,
    # so k0's committed value stays beside it.
    for _ in range(3):
        assert read(first.bootstrap, topic, "read_uncommitted") == [*committed, opened, tail]
        time.sleep(0.5)  # not a wait for something: a window of maintenance rounds that must change nothing

    q.abort_transaction(30)
    del p, q  # librdkafka would keep reconnecting to the killed broker
    [tail2] = [tuple(r[1:]) for r in produce(first.bootstrap, topic, [(b"tail", b"t2")])]
    expected = [*committed, tail2]
    first.kill9()  # a compaction round is due (or running) for the open transaction's abort
    second = brokers(file_store, *FAST, kafka_port=first.kafka_port)
    wait_until(lambda: read(second.bootstrap, topic, "read_uncommitted") == expected, 180, 0.5,
               "the successor compacted the aborted open transaction away")
    assert read(second.bootstrap, topic, "read_committed") == expected
    assert not any(v.startswith(b"abort") or v == b"open" for _, _, v in read(second.bootstrap, topic, "read_committed")
                   if v is not None)
    assert read_kafka_python(second.bootstrap, topic, len(expected)) == expected  # another client's reading
    [(err, after, *_)] = produce(second.bootstrap, topic, [(b"k0", b"after")])
    assert err is None and after == tail2[0] + 1  # offsets continue: never reused


def read_until_quiet(bootstrap: str, topic: str, isolation: str, quiet_s: float = 1.0) -> Log:
    """What a consumer reads from offset 0 until nothing more arrives for ``quiet_s``."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"g-{uuid.uuid4().hex[:6]}",
                  "enable.auto.commit": False, "isolation.level": isolation})
    try:
        c.assign([TopicPartition(topic, 0, 0)])
        got: Log = []
        last = time.monotonic()
        while time.monotonic() - last < quiet_s:
            m = c.poll(0.1)
            if m is None:
                continue
            if m.error():
                raise KafkaException(m.error())
            got.append((m.offset(), m.key(), m.value()))
            last = time.monotonic()
        return got
    finally:
        c.close()


def test_read_committed_through_compaction_and_marker_removal_stays_consistent(brokers, file_store) -> None:  # type: ignore[no-untyped-def]
    b: BrokerProcess = brokers(file_store, *FAST)
    topic = topic_name()
    create_topic(b.bootstrap, topic, 1, {**EAGER, "delete.retention.ms": "300"})  # markers go quickly
    seen: dict[int, tuple[bytes | None, bytes | None]] = {}
    problems: list[str] = []
    stop = threading.Event()
    rounds = [0]

    def reader() -> None:
        while not stop.is_set():
            for offset, key, value in read_until_quiet(b.bootstrap, topic, "read_committed", 0.5):
                if value is not None and value.startswith(b"abort"):
                    problems.append(f"aborted {key!r}={value!r} read at {offset}")
                if seen.setdefault(offset, (key, value)) != (key, value):
                    problems.append(f"offset {offset} read as {(key, value)} and {seen[offset]}")
            rounds[0] += 1

    t = threading.Thread(target=reader, daemon=True)
    t.start()
    committed: list[Any] = []
    try:
        p = txn_producer(b.bootstrap, **{"compression.type": "zstd"})  # compressed transactional batches
        for rnd in range(12):
            committed.append(transaction(p, topic, [(b"k%d" % k, b"commit-%d" % rnd) for k in range(8)], commit=True))
            transaction(p, topic, [(b"k%d" % k, b"abort-%d" % rnd) for k in range(8)], commit=False)
        del p
        [tail] = [tuple(r[1:]) for r in produce(b.bootstrap, topic, [(b"tail", b"t")])]
        expected = [*last_committed(*committed), tail]
        wait_until(lambda: read(b.bootstrap, topic, "read_uncommitted") == expected, 180, 0.5, "compacted")
        done = rounds[0]
        wait_until(lambda: rounds[0] >= done + 2, 180, 0.2, "the reader read the compacted log")  # markers gone too
    finally:
        stop.set()
        t.join(60)
    assert not problems, problems[:5]
    assert read(b.bootstrap, topic, "read_committed") == expected
