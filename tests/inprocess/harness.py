"""A real broker in this process, on the memory store, with no Kafka listener.

``app.Broker`` is built and started as in production (controller, WAL writer,
partition manager, log service, group coordinator), except that its Kafka
listener does not bind a socket: tests hand encoded requests to a
:class:`~floe_broker.dispatch.Dispatcher` over the same broker instead.
With ``listen=True`` it does listen (on a free local port, which it also
advertises), for the few tests that need a real client library on the other
end.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import AsyncIterator
from unittest import mock

from floe_broker.app import Broker
from floe_broker.config import BrokerConfig
from floe_broker.server.listener import KafkaListener
from floe_broker.storage.memory import MemoryStore
from tests.infra.broker import free_port

CONFIG = BrokerConfig(
    storage="memory://", cluster="inprocess", listen=("127.0.0.1", 0), http=("127.0.0.1", 0),
    flush_interval_ms=1, session_timeout_ms=3000, heartbeat_interval_ms=200,
    offsets_topic_partitions=2, group_initial_rebalance_delay_ms=0, auto_create_topics=False,
)


async def _no_socket(self: KafkaListener) -> None:
    return None


@contextlib.asynccontextmanager
async def started_broker(config: BrokerConfig = CONFIG, *, listen: bool = False) -> AsyncIterator[Broker]:
    if listen:
        config = dataclasses.replace(config, listen=("127.0.0.1", free_port()))
    broker = Broker(config, MemoryStore())
    with contextlib.ExitStack() as patches:
        if not listen:
            patches.enter_context(mock.patch.object(KafkaListener, "start", _no_socket))
        await broker.start()
    try:
        yield broker
    finally:
        await broker.stop()
