"""Plaintext connections read request frames through ``server.frames.FrameProtocol``: every byte arrives, in order.

Large frames are received straight into their own buffers, small ones through a
staging buffer, and the socket is read again before the connection takes a
finished frame; frames of every size class sent back to back, in writes that
split them anywhere, must reach the dispatcher exactly as sent.
"""

from __future__ import annotations

import asyncio
import os
import random
import struct

from floe_broker.protocol.codec import Frame
from floe_broker.server.frames import FrameProtocol
from floe_broker.server.listener import KafkaListener

SIZES = [3, 50, 1000, 70_000, 300_000, 1_100_000, 3_000_000]


async def test_frames_of_every_size_arrive_intact_however_the_writes_split_them() -> None:
    async def echo(frame: bytes | memoryview, peer: str) -> Frame | None:
        return [struct.pack(">i", len(frame)), bytes(frame)]

    listener = KafkaListener(echo, host="127.0.0.1", port=0, max_request_bytes=1 << 24, max_inflight=8,
                             idle_timeout=60)
    await listener.start()
    reader, writer = await asyncio.open_connection("127.0.0.1", listener.port, limit=1 << 24)
    rng = random.Random(7)
    frames = [os.urandom(rng.choice(SIZES)) for _ in range(60)]

    async def send() -> None:
        data = b"".join(struct.pack(">i", len(f)) + f for f in frames)
        pos = 0
        while pos < len(data):
            n = rng.randint(1, 2_000_000)
            writer.write(data[pos:pos + n])
            pos += n
            await writer.drain()

    sending = asyncio.create_task(send())
    try:
        for i, sent in enumerate(frames):
            (size,) = struct.unpack(">i", await reader.readexactly(4))
            assert (i, await reader.readexactly(size)) == (i, sent)
        await sending
    finally:
        writer.close()
        await listener.stop()


async def test_a_connection_closed_mid_frame_ends_without_an_answer() -> None:
    answered: list[int] = []

    async def echo(frame: bytes | memoryview, peer: str) -> Frame | None:
        answered.append(len(frame))
        return [struct.pack(">i", len(frame)), bytes(frame)]

    listener = KafkaListener(echo, host="127.0.0.1", port=0, max_request_bytes=1 << 24, max_inflight=8,
                             idle_timeout=60)
    await listener.start()
    reader, writer = await asyncio.open_connection("127.0.0.1", listener.port)
    writer.write(struct.pack(">i", 5) + b"hello" + struct.pack(">i", 500_000) + b"x" * 1000)
    await writer.drain()
    (size,) = struct.unpack(">i", await reader.readexactly(4))
    assert await reader.readexactly(size) == b"hello"
    writer.close()
    try:
        if listener.connections:
            await asyncio.wait(list(listener.connections), timeout=30)  # the connection's task ends
        assert not listener.connections and answered == [5]
    finally:
        await listener.stop()


class _Transport:
    """The two calls FrameProtocol makes on its transport."""

    def pause_reading(self) -> None: ...

    def resume_reading(self) -> None: ...


def _receive(protocol: FrameProtocol, data: bytes) -> None:
    """What the event loop does with bytes from the socket: into get_buffer's buffer, as much as fits."""
    while data:
        buf = protocol.get_buffer(-1)
        assert len(buf) > 0, "an empty buffer makes uvloop close the connection (ENOBUFS)"
        n = min(len(buf), len(data))
        buf[:n] = data[:n]
        protocol.buffer_updated(n)
        data = data[n:]


async def test_bytes_after_a_completed_large_frame_go_to_the_next_read() -> None:
    protocol = FrameProtocol(lambda _p: None)
    protocol.connection_made(_Transport())  # type: ignore[arg-type]
    first, second = os.urandom(100_000), os.urandom(80_000)
    reading = asyncio.create_task(protocol.readexactly(len(first)))
    await asyncio.sleep(0)  # the read is waiting, with its own buffer
    _receive(protocol, first + second)  # the loop reads on before the reader has taken its frame
    assert bytes(await reading) == first
    assert bytes(await protocol.readexactly(len(second))) == second
