"""The object store fails for a while: no false acks, nothing acknowledged lost.

The broker talks to moto S3 through a fault-injecting proxy. While the proxy
answers 503 (or hangs), producers must not be acknowledged; once it heals,
the broker catches up by itself, and every record that *was* acknowledged
is readable at its offset.
"""

from __future__ import annotations

import threading
import time
import uuid

import pytest
from confluent_kafka import Producer

from tests.conftest import s3_spec
from tests.infra.broker import wait_until
from tests.test_clients import consume_exactly, create_topic


@pytest.mark.parametrize("mode", ["503", "hang"])
def test_outage_gives_no_false_acks_and_loses_nothing(brokers, moto_s3, mode: str) -> None:  # type: ignore[no-untyped-def]
    from tests.infra.s3_fault_proxy import S3FaultProxy

    with S3FaultProxy(moto_s3.endpoint) as proxy:
        spec = s3_spec(moto_s3, f"fault-{uuid.uuid4().hex[:6]}", endpoint=proxy.endpoint)
        broker = brokers(spec)
        topic = f"fault-{uuid.uuid4().hex[:6]}"
        create_topic(broker.bootstrap, topic)

        acked: list[tuple[int, bytes, float]] = []
        lock = threading.Lock()
        stop = threading.Event()

        def produce() -> None:
            p = Producer({"bootstrap.servers": broker.bootstrap, "acks": "all", "linger.ms": 5,
                          "message.timeout.ms": 60000})

            def on_delivery(err, msg):  # type: ignore[no-untyped-def]
                if err is None:
                    with lock:
                        acked.append((msg.offset(), msg.value(), time.monotonic()))

            i = 0
            while not stop.is_set():
                try:
                    p.produce(topic, value=f"v{i}".encode(), partition=0, on_delivery=on_delivery)
                    i += 1
                except BufferError:
                    pass
                p.poll(0.005)
                time.sleep(0.002)
            p.flush(60)

        t = threading.Thread(target=produce, daemon=True)
        t.start()
        wait_until(lambda: len(acked) > 200, 30, message="acks before the outage")

        if mode == "503":
            proxy.fail(status=503)
        else:
            proxy.hang()
        outage_start = time.monotonic()
        time.sleep(0.5)  # let requests that were already durable finish answering
        with lock:
            before = len(acked)
        time.sleep(3.0)  # the outage itself: a duration, not a synchronisation
        with lock:
            during = [a for a in acked[before:] if a[2] > outage_start + 0.5]
        assert not during, f"{len(during)} records acknowledged while the store was down"

        proxy.heal()
        wait_until(lambda: len(acked) > before + 200, 60, message="acks after the store healed")
        stop.set()
        t.join(90)

        with lock:
            ledger = {o: v for o, v, _ in acked}
        top = max(ledger)
        got = consume_exactly(broker.bootstrap, topic, 0, 0, top + 1, timeout=60)
        by_offset = {m.offset(): m.value() for m in got}
        missing = [o for o, v in ledger.items() if by_offset.get(o) != v]
        assert not missing, f"{len(missing)} acknowledged records lost, e.g. {missing[:5]}"
        assert "wal put failed, retrying" in broker.log_text()
