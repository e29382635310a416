"""kill -9 in the middle of a produce stream, restart, and check the ledger.

Invariants exercised: I2 (ack = durable: every acknowledged record survives),
I4 (no offset reuse: new records continue after the old ones), I5 (nothing
beyond the high watermark was ever visible).
"""

from __future__ import annotations

import threading
import time
import uuid

from confluent_kafka import Producer

from tests.infra.broker import BrokerProcess, wait_until
from tests.test_clients import consume_exactly, create_topic, produce_all


def test_kill9_mid_stream_loses_no_acknowledged_record(brokers, store) -> None:  # type: ignore[no-untyped-def]
    first: BrokerProcess = brokers(store)
    topic = f"crash-{uuid.uuid4().hex[:6]}"
    create_topic(first.bootstrap, topic, 4)

    acked: dict[tuple[int, int], bytes] = {}
    lock = threading.Lock()
    stop = threading.Event()

    def produce_forever() -> None:
        p = Producer({"bootstrap.servers": first.bootstrap, "acks": "all", "linger.ms": 2,
                      "message.timeout.ms": 5000, "retries": 0})

        def on_delivery(err, msg):  # type: ignore[no-untyped-def]
            if err is None:
                with lock:
                    key = (msg.partition(), msg.offset())
                    assert key not in acked, f"offset {key} acknowledged twice"
                    acked[key] = msg.value()

        i = 0
        while not stop.is_set():
            try:
                p.produce(topic, value=f"value-{i}".encode(), partition=i % 4, on_delivery=on_delivery)
                i += 1
            except BufferError:
                pass
            p.poll(0.001)
        p.flush(10)

    t = threading.Thread(target=produce_forever, daemon=True)
    t.start()
    wait_until(lambda: len(acked) > 2000, 60, message="2000 acknowledged records")
    first.kill9()
    stop.set()
    t.join(30)
    with lock:
        snapshot = dict(acked)
    assert snapshot, "nothing was acknowledged before the crash"

    second = brokers(store, kafka_port=first.kafka_port)
    for part in range(4):
        offsets = sorted(o for p, o in snapshot if p == part)
        if not offsets:
            continue
        got = consume_exactly(second.bootstrap, topic, part, 0, offsets[-1] + 1)
        by_offset = {m.offset(): m.value() for m in got}
        assert len(by_offset) == len(got), "an offset was returned twice"
        for o in offsets:
            assert by_offset.get(o) == snapshot[(part, o)], f"acknowledged record {part}/{o} lost or changed"

    # New records continue after everything that existed (no offset reuse).
    reports = produce_all(second.bootstrap, [(topic, p, None, b"after", None, None) for p in range(4)])
    for m in reports:
        before = max((o for p, o in snapshot if p == m.partition()), default=-1)
        assert m.offset() > before, f"partition {m.partition()} reused offset {m.offset()}"


def test_restart_after_clean_stop_keeps_everything(brokers, file_store) -> None:  # type: ignore[no-untyped-def]
    b1 = brokers(file_store)
    topic = f"clean-{uuid.uuid4().hex[:6]}"
    create_topic(b1.bootstrap, topic)
    produce_all(b1.bootstrap, [(topic, 0, None, f"v{i}".encode(), None, None) for i in range(100)])
    assert b1.terminate() == 0, "SIGTERM should drain and exit 0"
    t0 = time.monotonic()
    b2 = brokers(file_store, kafka_port=b1.kafka_port)
    got = consume_exactly(b2.bootstrap, topic, 0, 0, 100)
    assert [m.value() for m in got] == [f"v{i}".encode() for i in range(100)]
    assert time.monotonic() - t0 < 30
