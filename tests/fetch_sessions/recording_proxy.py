"""A TCP proxy that records every Fetch exchange: request and response bytes, session id and epoch.

Kafka frames are length-prefixed; the proxy reads whole frames each way,
decodes the Fetch request's session fields with our codec (only to look, the
bytes are forwarded unchanged) and pairs each response with its request by
correlation id. Start the broker with ``--advertise`` set to the proxy's
address so the client never bypasses it. Runs its own event loop in a thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
import threading
from dataclasses import dataclass

from floe_broker.protocol.codec import decode_request, peek_header
from tests.infra.broker import free_port

FETCH = 1


@dataclass
class FetchExchange:
    version: int
    session_id: int
    session_epoch: int
    partitions: int  # partitions the request names
    forgotten: int
    request_bytes: int
    response_bytes: int = 0
    response_session_id: int | None = None
    response_error: int | None = None


class RecordingProxy:
    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.port = free_port()
        self.fetches: list[FetchExchange] = []
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.base_events.Server | None = None

    def snapshot(self) -> list[FetchExchange]:
        with self._lock:
            return [f for f in self.fetches if f.response_bytes]

    def __enter__(self) -> RecordingProxy:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)
        return self

    def __exit__(self, *exc: object) -> None:
        async def stop() -> None:
            if self._server:
                self._server.close()
            current = asyncio.current_task()
            pending = [t for t in asyncio.all_tasks() if t is not current]
            for t in pending:
                t.cancel()
            await asyncio.gather(*pending, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(stop(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    async def _start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)

    async def _handle(self, creader: asyncio.StreamReader, cwriter: asyncio.StreamWriter) -> None:
        try:
            ureader, uwriter = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        except OSError:
            cwriter.close()
            return
        pending: dict[int, FetchExchange] = {}

        async def frames(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, to_broker: bool) -> None:
            try:
                while True:
                    size = await reader.readexactly(4)
                    frame = await reader.readexactly(struct.unpack(">i", size)[0])
                    if to_broker:
                        self._request(frame, pending)
                    else:
                        self._response(frame, pending)
                    writer.write(size + frame)
                    await writer.drain()
            except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
                pass
            finally:
                writer.close()

        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(frames(creader, uwriter, True), frames(ureader, cwriter, False))

    def _request(self, frame: bytes, pending: dict[int, FetchExchange]) -> None:
        api_key, version, correlation = peek_header(frame)
        if api_key != FETCH:
            return
        body = decode_request(frame, {FETCH: (0, 17)}).body
        ex = FetchExchange(version=version, session_id=getattr(body, "session_id", 0),
                           session_epoch=getattr(body, "session_epoch", -1),
                           partitions=sum(len(t.partitions) for t in body.topics),
                           forgotten=sum(len(t.partitions) for t in getattr(body, "forgotten_topics_data", ())),
                           request_bytes=len(frame) + 4)
        pending[correlation] = ex
        with self._lock:
            self.fetches.append(ex)

    def _response(self, frame: bytes, pending: dict[int, FetchExchange]) -> None:
        (correlation,) = struct.unpack_from(">i", frame, 0)
        ex = pending.pop(correlation, None)
        if ex is None:
            return
        # header: correlation id (+ an empty tag buffer from v12), then throttle_time_ms, error_code, session_id
        if ex.version >= 7:
            at = 4 + (1 if ex.version >= 12 else 0) + 4
            ex.response_error, ex.response_session_id = struct.unpack_from(">hi", frame, at)
        with self._lock:
            ex.response_bytes = len(frame) + 4
