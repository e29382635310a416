"""Stopping the listener answers every request a connection already read before closing it.

A request dropped at shutdown looks to the client like a broken connection, and
librdkafka then retries an old OffsetCommit after newer commits went to the new
coordinator, moving the group's offsets backwards (seen across a drain).
"""

from __future__ import annotations

import asyncio
import struct

from floe_broker.protocol.codec import Frame
from floe_broker.server.listener import KafkaListener


async def test_a_request_in_flight_at_stop_is_answered_and_new_connections_are_refused() -> None:
    started = asyncio.Event()
    release = asyncio.Event()

    async def slow_dispatch(frame: bytes, peer: str) -> Frame | None:
        started.set()
        await release.wait()  # e.g. an OffsetCommit waiting for its WAL flush
        return [struct.pack(">i", len(frame)), frame]  # echo, framed

    listener = KafkaListener(slow_dispatch, host="127.0.0.1", port=0, max_request_bytes=1 << 20,
                             max_inflight=8, idle_timeout=30)
    await listener.start()
    reader, writer = await asyncio.open_connection("127.0.0.1", listener.port)
    writer.write(struct.pack(">i", 5) + b"hello")
    await writer.drain()
    await asyncio.wait_for(started.wait(), 5)

    stopping = asyncio.create_task(listener.stop(grace=5.0))
    await asyncio.sleep(0)  # let stop() stop accepting and tell the connection to finish
    try:
        _, late = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", listener.port), 1)
        late.close()
        refused = False
    except OSError:
        refused = True
    release.set()
    size = struct.unpack(">i", await asyncio.wait_for(reader.readexactly(4), 5))[0]
    assert await asyncio.wait_for(reader.readexactly(size), 5) == b"hello", "the in-flight request was answered"
    assert await asyncio.wait_for(reader.read(1), 5) == b"", "then the connection closed"
    await asyncio.wait_for(stopping, 5)
    assert refused, "no new connection once stopping"
    writer.close()


async def test_a_request_stuck_past_the_grace_period_does_not_hold_the_stop() -> None:
    async def stuck(frame: bytes, peer: str) -> Frame | None:
        await asyncio.Event().wait()
        return None

    listener = KafkaListener(stuck, host="127.0.0.1", port=0, max_request_bytes=1 << 20, max_inflight=8,
                             idle_timeout=30)
    await listener.start()
    reader, writer = await asyncio.open_connection("127.0.0.1", listener.port)
    writer.write(struct.pack(">i", 1) + b"x")
    await writer.drain()
    await asyncio.sleep(0.05)
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    await asyncio.wait_for(listener.stop(grace=0.3), 5)
    assert loop.time() - t0 < 3
    assert await asyncio.wait_for(reader.read(1), 5) == b""
    writer.close()
