"""Accept loop and graceful shutdown (uvicorn's order: stop accepting, finish what was asked, close)."""

from __future__ import annotations

import asyncio
import socket

from .conn import Connection, Dispatch


class KafkaListener:
    def __init__(
        self,
        dispatch: Dispatch,
        *,
        host: str,
        port: int,
        max_request_bytes: int,
        max_inflight: int,
        idle_timeout: float,
    ) -> None:
        self.dispatch = dispatch
        self.host = host
        self.port = port
        self.max_request_bytes = max_request_bytes
        self.max_inflight = max_inflight
        self.idle_timeout = idle_timeout
        self.connections: dict[asyncio.Task[None], Connection] = {}
        self._server: asyncio.base_events.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(
            self._accept, self.host, self.port, reuse_address=True, limit=1024 * 1024
        )
        sock = self._server.sockets[0]
        self.port = sock.getsockname()[1]

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        sock = writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conn = Connection(
            reader,
            writer,
            self.dispatch,
            max_request_bytes=self.max_request_bytes,
            max_inflight=self.max_inflight,
            idle_timeout=self.idle_timeout,
        )
        task = asyncio.current_task()
        assert task is not None
        self.connections[task] = conn
        try:
            await conn.serve()
        except asyncio.CancelledError:
            writer.close()  # shutdown: a cancelled accept callback would be logged as an error
        finally:
            self.connections.pop(task, None)

    async def stop(self, grace: float = 5.0) -> None:
        """Stop accepting, let every connection answer the requests it already read (up to
        ``grace`` seconds), then cancel what is left."""
        if self._server is not None:
            self._server.close()
        for conn in list(self.connections.values()):
            conn.finish()
        if self.connections:
            await asyncio.wait(list(self.connections), timeout=grace)
        left = list(self.connections)
        for task in left:
            task.cancel()
        if left:
            await asyncio.wait(left, timeout=1.0)
