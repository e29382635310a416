"""A real client (librdkafka) reads the error a failing handler answers, and keeps its connection.

The only tests here with a socket: the in-process broker listens on a free
local port so confluent-kafka can talk to it; client calls run in a thread
while the event loop serves them.
"""

from __future__ import annotations

import asyncio
from typing import Any

from confluent_kafka import KafkaError, Producer

from floe_broker.dispatch import Dispatcher
from tests.inprocess.harness import started_broker

PRODUCE = 0


def produce_one(producer: Producer, topic: str) -> KafkaError | None:
    outcome: list[KafkaError | None] = []
    producer.produce(topic, value=b"v", on_delivery=lambda err, _msg: outcome.append(err))
    producer.flush(30)
    assert outcome, "no delivery report"
    return outcome[0]


async def test_librdkafka_gets_unknown_server_error_and_the_connection_survives() -> None:
    async with started_broker(listen=True) as broker:
        await broker.serving.create_topic("t", 1, {})
        assert broker.listener is not None
        dispatcher: Dispatcher = broker.listener.dispatch  # type: ignore[assignment]
        lo, hi, real = dispatcher.table[PRODUCE]

        async def broken(ctx: Any, version: int, req: Any) -> Any:
            raise RuntimeError("bug")

        dispatcher.table[PRODUCE] = (lo, hi, broken)
        producer = Producer({"bootstrap.servers": f"127.0.0.1:{broker.listener.port}", "linger.ms": 0,
                             "retries": 0, "message.timeout.ms": 10000, "enable.idempotence": False})
        err = await asyncio.to_thread(produce_one, producer, "t")
        assert err is not None and err.code() == KafkaError.UNKNOWN, err
        connections = len(broker.listener.connections)
        dispatcher.table[PRODUCE] = (lo, hi, real)
        assert await asyncio.to_thread(produce_one, producer, "t") is None
        assert len(broker.listener.connections) == connections, "the client did not have to reconnect"
        del producer  # closes the client before the broker goes away
