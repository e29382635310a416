"""One Kafka client connection: framing, concurrency cap, in-order responses.

The Kafka protocol requires responses in request order on a connection, but
requests may be processed concurrently (a produce waiting for its WAL flush
must not block a metadata request behind it... except that it must, for
ordering). We therefore start a task per request and let a writer task send
their results in arrival order. At most ``max_inflight`` requests are in
progress; beyond that we stop reading, which pushes back on the client.

A malformed or oversized frame closes this connection with one log line; the
broker and other connections are unaffected.

On shutdown the listener calls :meth:`Connection.finish`: the connection stops
reading but answers every request it already took before it closes. A request
left unanswered looks to the client like a dropped connection, and a client
that retries an old OffsetCommit after newer ones went elsewhere moves its
group's offsets backwards.
"""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Callable, Coroutine
from typing import Any

import structlog

from .. import errors, metrics
from ..ordering import CURRENT_TURN, Turn
from ..protocol.codec import Frame

log = structlog.get_logger(__name__)
_SIZE = struct.Struct(">i")

# dispatch(frame, peer) -> encoded response frame, or None (acks=0)
Dispatch = Callable[[bytes, str], Coroutine[Any, Any, Frame | None]]


class Connection:
    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        dispatch: Dispatch,
        *,
        max_request_bytes: int,
        max_inflight: int,
        idle_timeout: float,
    ) -> None:
        self.reader = reader
        self.writer = writer
        self.dispatch = dispatch
        self.max_request_bytes = max_request_bytes
        self.idle_timeout = idle_timeout
        self.peer = "{}:{}".format(*(writer.get_extra_info("peername") or ("?", 0))[:2])
        self._queue: asyncio.Queue[asyncio.Task[Frame | None] | None] = asyncio.Queue()
        self._slots = asyncio.Semaphore(max_inflight)
        self._closing = False
        self._finishing = False
        self._reader: asyncio.Task[None] | None = None
        self._last_turn: asyncio.Future[None] | None = None

    async def serve(self) -> None:
        metrics.CONNECTIONS.inc()
        writer_task = asyncio.create_task(self._write_loop())
        self._reader = asyncio.create_task(self._read_loop())
        try:
            await self._reader
        except asyncio.CancelledError:
            if not self._finishing:
                raise  # the connection itself was cancelled: the finally still answers what it can
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        except errors.FrameError as exc:
            metrics.BAD_FRAMES.inc()
            log.warning("closing connection: bad frame", peer=self.peer, reason=str(exc))
        except TimeoutError:
            log.info("closing idle connection", peer=self.peer)
        finally:
            self._closing = True
            await self._queue.put(None)
            try:
                await asyncio.wait_for(writer_task, timeout=30)
            except (TimeoutError, Exception):
                writer_task.cancel()
            self.writer.close()
            metrics.CONNECTIONS.dec()

    def finish(self) -> None:
        """Stop reading requests; the ones already read are still answered, then the connection closes."""
        self._finishing = True
        if self._reader is not None:
            self._reader.cancel()

    async def _read_loop(self) -> None:
        while not self._closing:
            head = await asyncio.wait_for(self.reader.readexactly(4), self.idle_timeout)
            (size,) = _SIZE.unpack(head)
            if size < 0 or size > self.max_request_bytes:
                raise errors.FrameError(
                    f"request of {size} bytes exceeds socket.request.max.bytes={self.max_request_bytes}"
                )
            frame = await self.reader.readexactly(size)
            await self._slots.acquire()
            turn = Turn(self._last_turn)
            self._last_turn = turn.mine
            token = CURRENT_TURN.set(turn)  # copied into the task's context
            try:
                task = asyncio.create_task(self.dispatch(frame, self.peer))
            finally:
                CURRENT_TURN.reset(token)
            task.add_done_callback(lambda _t: self._slots.release())
            await self._queue.put(task)

    async def _write_loop(self) -> None:
        while True:
            task = await self._queue.get()
            if task is None:
                return
            try:
                response = await task
            except errors.FrameError as exc:
                metrics.BAD_FRAMES.inc()
                log.warning("closing connection: bad request", peer=self.peer, reason=str(exc))
                self._abort()
                return
            except Exception as exc:
                log.error("request failed; closing connection", peer=self.peer, error=repr(exc))
                self._abort()
                return
            if response is None:
                continue
            try:
                self.writer.writelines(response)
                await self.writer.drain()
            except ConnectionError:
                self._abort()
                return

    def _abort(self) -> None:
        self._closing = True
        transport: Any = self.writer.transport
        transport.abort()
