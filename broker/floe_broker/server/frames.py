"""Request frames received straight into their own buffers, for plaintext connections.

An ``asyncio.StreamReader`` copies every received byte twice before a handler
sees it: the event loop hands ``data_received`` a fresh ``bytes`` of what one
``recv`` returned, ``feed_data`` appends it to the reader's buffer, and
``readexactly`` copies the frame out again. For Produce, where frames are
megabytes of record batches, those copies were a sixth of the broker's CPU.
:class:`FrameProtocol` is a ``BufferedProtocol``: small reads (size prefixes,
small requests) come from a staging buffer the socket is read into, and a
large frame gets a buffer of its exact size that the socket then fills
directly, so its bytes are copied once, by the kernel. The frame is handed out
as a read-only memoryview (``kio``'s decoders want read-only buffers).

It offers the two things :class:`~.conn.Connection` uses of a StreamReader
(``readexactly`` with its ``IncompleteReadError`` at end of stream, and
back-pressure: reading pauses while more than :data:`HIGH_WATER` bytes wait
unread) and the flow control ``StreamWriter.drain`` needs (asyncio's
``FlowControlMixin``, which it cannot inherit: see the class). TLS connections
keep the StreamReader (the SSL layer decrypts into its own buffers anyway).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, Protocol, cast

STAGE_BYTES = 256 * 1024  # the staging buffer: size prefixes and small requests
MIN_FREE = 16 * 1024  # less free room than this and the staging buffer is compacted or grown
LARGE_READ = 64 * 1024  # a read at least this large gets its own buffer, filled by the socket
HIGH_WATER = 2 * 1024 * 1024  # unread bytes past which the socket is not read (StreamReader's 2x limit)


class FrameSource(Protocol):
    """What a connection reads its requests from: this module's protocol, or a TLS StreamReader."""

    async def readexactly(self, n: int) -> bytes | memoryview: ...


class FrameProtocol(asyncio.BufferedProtocol):
    """Not a ``Protocol`` subclass (nor asyncio's ``FlowControlMixin``, which is one): an event loop
    that sees ``data_received`` calls it instead of filling the buffers."""

    def __init__(self, on_connected: Callable[[FrameProtocol], None]) -> None:
        self._loop = asyncio.get_running_loop()
        self._on_connected = on_connected
        self._write_paused = False
        self._drain_waiters: list[asyncio.Future[None]] = []
        self._connection_lost = False
        self.transport: asyncio.Transport | None = None
        self._stage = bytearray(STAGE_BYTES)
        self._start = 0  # unread bytes are _stage[_start:_end]
        self._end = 0
        self._target: bytearray | None = None  # a large read's own buffer, filled up to _filled
        self._filled = 0
        self._into_target = False  # whether the buffer get_buffer last gave out was the target
        self._want = 0  # bytes the waiting read needs
        self._waiter: asyncio.Future[None] | None = None
        self._eof = False
        self._error: BaseException | None = None
        self._reading_paused = False
        self._closed: asyncio.Future[None] = self._loop.create_future()

    # ---- the transport's side -------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's transports are not asyncio's classes
        self._on_connected(self)

    def writer(self) -> asyncio.StreamWriter:
        """A StreamWriter over this connection (its ``drain`` uses this protocol's flow control)."""
        assert self.transport is not None
        return asyncio.StreamWriter(self.transport, self, None, self._loop)

    def get_buffer(self, sizehint: int) -> memoryview:
        # A full target waits for its reader to take it; what the socket holds beyond it (the next
        # frames: the loop reads again before the reader runs) goes to the staging buffer.
        self._into_target = self._target is not None and self._filled < len(self._target)
        if self._into_target:
            assert self._target is not None
            return memoryview(self._target)[self._filled:]
        if len(self._stage) - self._end < MIN_FREE:
            self._make_room()
        return memoryview(self._stage)[self._end:]

    def buffer_updated(self, nbytes: int) -> None:
        if self._into_target:
            self._filled += nbytes
            if self._filled >= self._want:
                self._wake()
            return
        self._end += nbytes
        if self._end - self._start >= self._want:
            self._wake()
        if self._end - self._start > HIGH_WATER and not self._reading_paused and self.transport is not None:
            self._reading_paused = True
            self.transport.pause_reading()

    def eof_received(self) -> bool:
        self._eof = True
        self._wake()
        return False  # the transport closes itself

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        for waiter in self._drain_waiters:
            if not waiter.done():
                waiter.set_result(None)

    async def _drain_helper(self) -> None:
        """``StreamWriter.drain``: wait while the transport's write buffer is above its high-water mark."""
        if self._connection_lost:
            raise ConnectionResetError("Connection lost")
        if not self._write_paused:
            return
        waiter = self._loop.create_future()
        self._drain_waiters.append(waiter)
        try:
            await waiter
        finally:
            self._drain_waiters.remove(waiter)

    def connection_lost(self, exc: Exception | None) -> None:
        self._connection_lost = True
        for waiter in self._drain_waiters:
            if not waiter.done():
                if exc is None:
                    waiter.set_result(None)
                else:
                    waiter.set_exception(exc)
        self._eof = True
        if exc is not None:
            self._error = exc
        self._wake()
        if not self._closed.done():
            self._closed.set_result(None)

    def _get_close_waiter(self, stream: Any) -> asyncio.Future[None]:
        return self._closed  # StreamWriter.wait_closed

    # ---- the reader's side ------------------------------------------------------------

    async def readexactly(self, n: int) -> bytes | memoryview:
        """``n`` bytes (a large frame as a read-only view of its own buffer); IncompleteReadError at EOF."""
        available = self._end - self._start
        if available < n and n >= LARGE_READ:
            return await self._read_large(n, available)
        while self._end - self._start < n:
            self._check_open(n)
            await self._wait_for(n)
        out = bytes(memoryview(self._stage)[self._start:self._start + n])  # one copy (a slice would be two)
        self._start += n
        if self._start == self._end:
            self._start = self._end = 0
        self._maybe_resume()
        return out

    async def _read_large(self, n: int, available: int) -> memoryview:
        target = bytearray(n)
        target[:available] = memoryview(self._stage)[self._start:self._end]
        self._start = self._end = 0
        self._target, self._filled = target, available
        self._maybe_resume()
        try:
            while self._filled < n:
                self._check_open(n, bytes(target[:self._filled]))
                await self._wait_for(n)
        finally:
            self._target = None
        return memoryview(target).toreadonly()

    def _check_open(self, n: int, partial: bytes | None = None) -> None:
        if self._error is not None:
            raise self._error
        if self._eof:
            got = partial if partial is not None else bytes(self._stage[self._start:self._end])
            self._start = self._end = 0
            raise asyncio.IncompleteReadError(got, n)

    async def _wait_for(self, n: int) -> None:
        self._want = n
        self._waiter = self._loop.create_future()
        if self._reading_paused and self.transport is not None:
            self._reading_paused = False
            self.transport.resume_reading()
        try:
            await self._waiter
        finally:
            self._waiter = None
            self._want = 0

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def _maybe_resume(self) -> None:
        if self._reading_paused and self._end - self._start <= HIGH_WATER // 2 and self.transport is not None:
            self._reading_paused = False
            self.transport.resume_reading()

    def _make_room(self) -> None:
        """Move the unread bytes to the front, or into a larger buffer when they fill most of it."""
        unread = self._end - self._start
        if unread + MIN_FREE <= len(self._stage) // 2 or (self._start > 0 and unread + MIN_FREE <= len(self._stage)):
            self._stage[:unread] = self._stage[self._start:self._end]  # same size: no resize of a buffer in use
        else:
            grown = bytearray(max(2 * len(self._stage), unread + STAGE_BYTES))
            grown[:unread] = memoryview(self._stage)[self._start:self._end]
            self._stage = grown
        self._start, self._end = 0, unread
