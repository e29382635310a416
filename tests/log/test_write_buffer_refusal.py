"""A full WAL buffer refuses a write after a bounded wait, and nothing pipelined behind it overtakes it.

In-process, against the reference store with WAL PUTs held back: the order
rule itself, which a real client cannot make happen on purpose.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from floe_broker.errors import WriteBufferFull
from floe_broker.ordering import CURRENT_TURN, Turn
from floe_broker.protocol import records
from floe_broker.storage.memory import MemoryStore
from tests.infra.batches import record_batch
from tests.test_log_invariants import Node, topic_state


class HeldPuts(MemoryStore):
    """A memory store whose PUTs wait while ``released`` is cleared."""

    def __init__(self) -> None:
        super().__init__()
        self.released = asyncio.Event()
        self.released.set()

    async def put(self, key: str, data: Any, **kwargs: Any) -> str:
        await self.released.wait()
        return await super().put(key, data, **kwargs)


async def append_as(turn: Turn, node: Node, part: Any, data: bytes, room_timeout: float) -> int:
    """One produce-like write on a connection: take ``turn``, wait for room, append."""
    token = CURRENT_TURN.set(turn)
    try:
        async with node.log.appending(len(data), room_timeout=room_timeout) as log:
            return log.append(part, data, records.scan_batches(data, max_batch_bytes=1 << 20)).base
    finally:
        CURRENT_TURN.reset(token)
        turn.release()


async def test_a_refused_write_is_not_overtaken_by_one_pipelined_behind_it() -> None:
    store = HeldPuts()
    node = Node(store, 1, "sess")
    node.wal.max_pending_bytes = 4096
    _, topic = topic_state()
    part = await node.pm.open(topic.name, topic.topic_id, 0, epoch=1)
    big = record_batch(b"v" * 3000)

    store.released.clear()
    first = Turn(None)
    assert await append_as(first, node, part, big, room_timeout=1.0) == 0  # an empty buffer always has room
    refused = Turn(first.mine)
    behind = Turn(refused.mine)  # pipelined before the refusal
    with pytest.raises(WriteBufferFull, match="write buffer full"):
        await append_as(refused, node, part, big, room_timeout=0.2)

    store.released.set()  # the store takes writes again: there is room now
    await asyncio.wait_for(node.wal.barrier(), 10)
    with pytest.raises(WriteBufferFull, match="earlier request on this connection was refused"):
        await append_as(behind, node, part, record_batch(b"small"), room_timeout=5.0)
    after = Turn(behind.mine)  # sent after the client heard of the refusal
    assert await append_as(after, node, part, big, room_timeout=5.0) == 1
    await node.wal.stop()
