"""A real broker in this process, on the memory store, with no Kafka listener.

``app.Broker`` is built and started as in production (controller, WAL writer,
partition manager, group coordinator), except that its Kafka listener does
not bind: tests hand encoded requests to a :class:`Dispatcher` directly.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from floe_broker.app import Broker
from floe_broker.config import BrokerConfig
from floe_broker.dispatch import Dispatcher
from floe_broker.server.listener import KafkaListener
from floe_broker.storage.memory import MemoryStore

CONFIG = BrokerConfig(
    storage="memory://", cluster="inprocess", listen=("127.0.0.1", 0), http=("127.0.0.1", 0),
    flush_interval_ms=1, session_timeout_ms=3000, heartbeat_interval_ms=200,
    offsets_topic_partitions=2, group_initial_rebalance_delay_ms=0, auto_create_topics=False,
)


@pytest.fixture
async def broker(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Broker]:
    async def no_socket(self: KafkaListener) -> None:
        return None

    monkeypatch.setattr(KafkaListener, "start", no_socket)
    b = Broker(CONFIG, MemoryStore())
    await b.start()
    try:
        yield b
    finally:
        await b.stop()


@pytest.fixture
def dispatcher(broker: Broker) -> Dispatcher:
    return Dispatcher(broker)
