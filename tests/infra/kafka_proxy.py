"""TCP proxies between Kafka clients and one broker that look at (and may cut) whole frames.

Kafka frames are length-prefixed, so a proxy can read whole requests and
responses each way and hand them to hooks while forwarding the bytes
unchanged. Start the broker with ``--advertise`` set to the proxy's address
so the client never bypasses it. Each proxy runs its own event loop in a
thread, so the tests that use it stay synchronous.
"""

from __future__ import annotations

import asyncio
import struct
import threading
from typing import Any

from tests.infra.broker import free_port


class FrameProxy:
    """Forwards frames both ways; subclasses override the hooks.

    ``on_request`` and ``on_response`` see each whole frame (without its
    length prefix) and the connection's own state (``new_connection``); a
    hook that raises ``ConnectionResetError`` cuts the connection there,
    before the frame is forwarded.
    """

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.port = free_port()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.base_events.Server | None = None

    def new_connection(self) -> Any:
        """State shared by the two directions of one client connection."""
        return None

    def on_request(self, frame: bytes, conn: Any) -> None:
        """A whole request frame on its way to the broker."""

    def on_response(self, frame: bytes, conn: Any) -> None:
        """A whole response frame on its way to the client."""

    def __enter__(self) -> Any:
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
        conn = self.new_connection()

        async def pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, hook: Any) -> None:
            while True:
                head = await reader.readexactly(4)
                frame = await reader.readexactly(struct.unpack(">i", head)[0])
                hook(frame, conn)
                writer.write(head + frame)
                await writer.drain()

        tasks = [asyncio.ensure_future(pump(creader, uwriter, self.on_request)),
                 asyncio.ensure_future(pump(ureader, cwriter, self.on_response))]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)  # a closed side ends both
            for w in (cwriter, uwriter):
                w.transport.abort()


class CuttingProxy(FrameProxy):
    """Cuts connections right before a produce response.

    The broker has written (and made durable) the batch, but the client never
    sees the answer, so it retries: exactly the case idempotent producers
    exist for.
    """

    def __init__(self, upstream_port: int, *, cut_every: int = 5, max_cuts: int = 20) -> None:
        super().__init__(upstream_port)
        self.cut_every = cut_every
        self.max_cuts = max_cuts
        self.produce_responses = 0
        self.cuts = 0

    def new_connection(self) -> set[int]:
        return set()  # correlation ids of the produce requests in flight

    def on_request(self, frame: bytes, conn: set[int]) -> None:
        api_key, _, corr = struct.unpack_from(">hhi", frame, 0)
        if api_key == 0:
            conn.add(corr)

    def on_response(self, frame: bytes, conn: set[int]) -> None:
        (corr,) = struct.unpack_from(">i", frame, 0)
        if corr in conn:
            conn.discard(corr)
            self.produce_responses += 1
            if self.cuts < self.max_cuts and self.produce_responses % self.cut_every == 0:
                self.cuts += 1
                raise ConnectionResetError("cut before the client saw the produce response")
