"""A Kafka-aware TCP proxy that cuts connections right before a produce response.

The broker has written (and made durable) the batch, but the client never
sees the answer, so it retries: exactly the case idempotent producers exist
for. Start the broker with ``--advertise`` set to the proxy's address so the
client never bypasses it. Runs its own event loop in a thread.
"""

from __future__ import annotations

import asyncio
import struct
import threading

from tests.infra.broker import free_port


class CuttingProxy:
    def __init__(self, upstream_port: int, *, cut_every: int = 5, max_cuts: int = 20) -> None:
        self.upstream_port = upstream_port
        self.port = free_port()
        self.cut_every = cut_every
        self.max_cuts = max_cuts
        self.produce_responses = 0
        self.cuts = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.base_events.Server | None = None

    def __enter__(self) -> CuttingProxy:
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
        produce_ids: set[int] = set()

        async def client_to_broker() -> None:
            while True:
                head = await creader.readexactly(4)
                (size,) = struct.unpack(">i", head)
                frame = await creader.readexactly(size)
                api_key, _, corr = struct.unpack_from(">hhi", frame, 0)
                if api_key == 0:
                    produce_ids.add(corr)
                uwriter.write(head + frame)
                await uwriter.drain()

        async def broker_to_client() -> None:
            while True:
                head = await ureader.readexactly(4)
                (size,) = struct.unpack(">i", head)
                frame = await ureader.readexactly(size)
                (corr,) = struct.unpack_from(">i", frame, 0)
                if corr in produce_ids:
                    produce_ids.discard(corr)
                    self.produce_responses += 1
                    if self.cuts < self.max_cuts and self.produce_responses % self.cut_every == 0:
                        self.cuts += 1
                        raise ConnectionResetError("cut before the client saw the produce response")
                cwriter.write(head + frame)
                await cwriter.drain()

        tasks = [asyncio.ensure_future(client_to_broker()), asyncio.ensure_future(broker_to_client())]
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for t in tasks:
            t.cancel()
        for w in (cwriter, uwriter):
            w.transport.abort()
