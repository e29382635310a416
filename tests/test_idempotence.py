"""Idempotent producers: retried batches are not appended twice.

The proxy cuts the connection after the broker wrote a batch but before the
client saw the answer; the client retries; every record must end up in the
log exactly once, in order, at the offset it was acknowledged at.
"""

from __future__ import annotations

import asyncio
import uuid

from confluent_kafka import Producer

from tests.infra.broker import free_port
from tests.infra.kafka_proxy import CuttingProxy
from tests.test_clients import consume_exactly, create_topic


def test_retries_after_lost_responses_leave_every_record_once(brokers, file_store) -> None:  # type: ignore[no-untyped-def]
    kafka_port = free_port()
    with CuttingProxy(kafka_port, cut_every=5, max_cuts=15) as proxy:
        broker = brokers(file_store, "--advertise", f"127.0.0.1:{proxy.port}", kafka_port=kafka_port)
        bootstrap = f"127.0.0.1:{proxy.port}"
        topic = f"idem-{uuid.uuid4().hex[:6]}"
        create_topic(broker.bootstrap, topic, 2)
        p = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "acks": "all",
                      "linger.ms": 0, "batch.num.messages": 20, "message.timeout.ms": 60000})
        acked: dict[tuple[int, int], bytes] = {}
        errors: list[str] = []

        def on_delivery(err, msg):  # type: ignore[no-untyped-def]
            if err is not None:
                errors.append(str(err))
            else:
                assert (msg.partition(), msg.offset()) not in acked, "offset acknowledged twice"
                acked[(msg.partition(), msg.offset())] = msg.value()

        values = [f"r{i:05d}".encode() for i in range(3000)]
        for i, v in enumerate(values):
            while True:
                try:
                    p.produce(topic, value=v, partition=i % 2, on_delivery=on_delivery)
                    break
                except BufferError:
                    p.poll(0.05)
            if i % 50 == 0:
                p.poll(0.01)
        assert p.flush(90) == 0
        assert not errors, errors[:3]
        assert proxy.cuts >= 5, f"the proxy only cut {proxy.cuts} connections: retries were not exercised"
        for part in range(2):
            sent = values[part::2]
            got = consume_exactly(broker.bootstrap, topic, part, 0, len(sent), timeout=60)
            assert [m.value() for m in got] == sent, "a record is missing, duplicated or out of order"
            assert all(acked[(part, m.offset())] == m.value() for m in got)


def test_default_clients_with_idempotence_round_trip(brokers, file_store) -> None:  # type: ignore[no-untyped-def]
    """kafka-python 3 and aiokafka with idempotence on (kafka-python's default)."""
    from aiokafka import AIOKafkaProducer
    from kafka import KafkaProducer

    broker = brokers(file_store)
    topic = f"def-{uuid.uuid4().hex[:6]}"
    create_topic(broker.bootstrap, topic)
    kp = KafkaProducer(bootstrap_servers=broker.bootstrap)  # idempotence on by default in kafka-python 3
    metas = [kp.send(topic, value=f"kp{i}".encode(), partition=0).get(timeout=30) for i in range(50)]
    kp.close()
    assert [m.offset for m in metas] == list(range(50))

    async def aio() -> list[int]:
        prod = AIOKafkaProducer(bootstrap_servers=broker.bootstrap, enable_idempotence=True)
        await prod.start()
        try:
            return [(await prod.send_and_wait(topic, f"aio{i}".encode(), partition=0)).offset for i in range(50)]
        finally:
            await prod.stop()

    assert asyncio.run(aio()) == list(range(50, 100))
    got = consume_exactly(broker.bootstrap, topic, 0, 0, 100)
    assert [m.value() for m in got] == [f"kp{i}".encode() for i in range(50)] + [f"aio{i}".encode() for i in range(50)]
