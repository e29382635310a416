"""One Kafka client connection: framing, concurrency cap, in-order responses.

The Kafka protocol requires responses in request order on a connection, but
requests may be processed concurrently (a produce waiting for its WAL flush
must not block a metadata request behind it... except that it must, for
ordering). We therefore start a task per request and let a writer task send
their results in arrival order. At most ``max_inflight`` requests are in
progress; beyond that we stop reading, which pushes back on the client.

A malformed or oversized frame closes this connection with one log line; the
broker and other connections are unaffected.

Authentication (``security.session.AuthSession``): until a SASL listener's
client is authenticated, frames are capped at 512 KiB and handled one at a
time (a client cannot pipeline past its own login); a refused login closes
the connection once its error response is written, and a session past
``connections.max.reauth.ms`` is closed.
"""

from __future__ import annotations

import asyncio
import struct
import time
from collections.abc import Callable, Coroutine
from typing import Any

import structlog

from .. import errors, metrics
from ..ordering import CURRENT_TURN, Handoff, Turn
from ..protocol.codec import Frame
from ..security.session import MAX_UNAUTHENTICATED_FRAME, SESSION, AuthSession
from ..security.throttle import MUTE, Mute
from .frames import FrameSource

log = structlog.get_logger(__name__)
_SIZE = struct.Struct(">i")
_AUTH_API_KEYS = (b"\x00\x11", b"\x00\x24")  # SaslHandshake, SaslAuthenticate

# dispatch(frame, peer) -> encoded response frame, or None (acks=0); a large frame is a read-only memoryview
Dispatch = Callable[[bytes | memoryview, str], Coroutine[Any, Any, Frame | None]]


class Connection:
    def __init__(
        self,
        reader: FrameSource,
        writer: asyncio.StreamWriter,
        dispatch: Dispatch,
        *,
        max_request_bytes: int,
        max_inflight: int,
        idle_timeout: float,
        session: AuthSession | None = None,
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
        self._last_turn: asyncio.Future[Handoff] | None = None
        self.session = session
        self._mute = Mute()  # quota throttle: no request is read before it ends

    async def serve(self) -> None:
        if self.session is not None:
            SESSION.set(self.session)  # copied into every request task's context; the object is shared
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
            if self.session is not None and self.session.expired():
                log.info("closing connection: SASL session expired without re-authentication",
                         peer=self.peer, principal=str(self.session.principal), listener=self.session.listener)
            else:
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
        """Stop reading requests; the ones already read are still answered, then the connection closes.

        A request left unanswered at shutdown looks to the client like a dropped connection, and a
        client that retries an old OffsetCommit after newer ones went elsewhere moves its group's
        offsets backwards.
        """
        self._finishing = True
        if self._reader is not None:
            self._reader.cancel()

    def _read_timeout(self) -> float:
        session = self.session
        if session is None or session.expires_at is None:
            return self.idle_timeout
        # a little past the end: the loop's timers may fire a millisecond early, and the close
        # must see the session as expired
        left = session.expires_at - time.monotonic() + 0.05
        return max(0.0, min(self.idle_timeout, left)) if not session.reauthenticating else self.idle_timeout

    async def _read_loop(self) -> None:
        session = self.session
        MUTE.set(self._mute)  # copied into every request task's context
        while not self._closing:
            await self._mute.wait()
            head = await asyncio.wait_for(self.reader.readexactly(4), self._read_timeout())
            (size,) = _SIZE.unpack(head)
            limit = self.max_request_bytes
            if session is not None and not session.authenticated:
                limit = min(limit, MAX_UNAUTHENTICATED_FRAME)
            if size < 0 or size > limit:
                raise errors.FrameError(
                    f"request of {size} bytes exceeds socket.request.max.bytes={limit}"
                    + ("" if session is None or session.authenticated else " before authentication")
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
            if session is not None and (not session.authenticated or session.reauthenticating
                                        or frame[:2] in _AUTH_API_KEYS):
                await asyncio.wait([task])  # logins are handled one message at a time
                if session.close_after_response:
                    return

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
            if response is not None:
                try:
                    self.writer.writelines(response)
                    await self.writer.drain()
                except ConnectionError:
                    self._abort()
                    return
            if self.session is not None and self.session.close_after_response:
                self._closing = True
                self.writer.close()  # the refusal is written; the client reads it, then sees the close
                return

    def _abort(self) -> None:
        self._closing = True
        transport: Any = self.writer.transport
        transport.abort()
