"""Accept loop and graceful shutdown (uvicorn's order: stop accepting, close, wait).

One :class:`KafkaListener` per configured Kafka listener. On a TLS listener
the handshake runs first (``StreamWriter.start_tls`` with the listener's
current context, so a reloaded certificate applies to the next connection);
a failed or stalled handshake (plaintext bytes, a truncated ClientHello, a
client certificate the CA did not sign) closes the connection with one log
line. Reading is paused from the moment the connection is accepted until TLS
takes over, so no byte of the ClientHello can land in the plaintext reader.
Every connection gets an ``AuthSession`` naming its listener, so Metadata
answers with that listener's addresses and the dispatcher knows the principal.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from typing import Any

import structlog

from ..security.listeners import PLAINTEXT, ListenerSpec
from ..security.principal import ANONYMOUS, Principal
from ..security.session import AuthSession
from ..security.ssl_principal import MappingError, Rule, map_subject, subject_name
from ..security.tls import TlsContexts
from .conn import Connection, Dispatch

log = structlog.get_logger(__name__)


class _PausedUntilTls(asyncio.StreamReaderProtocol):
    """Stops reading as soon as the connection exists; ``start_tls`` resumes it under TLS."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        transport.pause_reading()  # type: ignore[attr-defined]


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
        spec: ListenerSpec | None = None,
        tls: TlsContexts | None = None,
        mechanisms: tuple[str, ...] = (),
        principal_rules: list[Rule] | None = None,
        handshake_timeout_s: float = 10.0,
    ) -> None:
        self.dispatch = dispatch
        self.host = host
        self.port = port
        self.max_request_bytes = max_request_bytes
        self.max_inflight = max_inflight
        self.idle_timeout = idle_timeout
        self.name = spec.name if spec else PLAINTEXT
        self.protocol = spec.protocol if spec else PLAINTEXT
        self.sasl = spec.sasl if spec else False
        self.tls = tls if spec is not None and spec.tls else None
        if spec is not None and spec.tls and tls is None:
            raise ValueError(f"listener {spec.name} is {spec.protocol} but no TLS files are configured")
        self.mechanisms = mechanisms
        self.principal_rules = principal_rules or [Rule(None)]
        self.handshake_timeout_s = handshake_timeout_s
        self.connections: set[asyncio.Task[None]] = set()
        self._server: asyncio.base_events.Server | None = None

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        proto = _PausedUntilTls if self.tls is not None else asyncio.StreamReaderProtocol

        def factory() -> asyncio.StreamReaderProtocol:
            return proto(asyncio.StreamReader(limit=1024 * 1024), self._accept)

        self._server = await loop.create_server(factory, self.host, self.port, reuse_address=True)
        sock = self._server.sockets[0]
        self.port = sock.getsockname()[1]

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        sock = writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        task = asyncio.current_task()
        assert task is not None
        self.connections.add(task)
        try:
            principal = ANONYMOUS
            if self.tls is not None:
                tls_principal = await self._handshake(writer)
                if tls_principal is None:
                    return
                principal = tls_principal
            session = AuthSession.open(self.name, self.protocol, sasl=self.sasl, mechanisms=self.mechanisms,
                                       principal=principal)
            conn = Connection(
                reader,
                writer,
                self.dispatch,
                max_request_bytes=self.max_request_bytes,
                max_inflight=self.max_inflight,
                idle_timeout=self.idle_timeout,
                session=session,
            )
            await conn.serve()
        except asyncio.CancelledError:
            writer.close()  # shutdown: a cancelled accept callback would be logged as an error
        finally:
            self.connections.discard(task)

    async def _handshake(self, writer: asyncio.StreamWriter) -> Principal | None:
        """TLS on this connection, and the principal its client certificate maps to; None: closed."""
        assert self.tls is not None
        peer = "{}:{}".format(*(writer.get_extra_info("peername") or ("?", 0))[:2])
        try:
            await writer.start_tls(self.tls.context, ssl_handshake_timeout=self.handshake_timeout_s)
        except (ssl.SSLError, OSError, TimeoutError, asyncio.IncompleteReadError) as exc:
            log.info("closing connection: TLS handshake failed", listener=self.name, peer=peer,
                     reason=f"{type(exc).__name__}: {exc}"[:200])
            _abort(writer)
            return None
        cert: Any = writer.get_extra_info("peercert")
        if not cert or "subject" not in cert:
            return ANONYMOUS
        subject = subject_name(cert["subject"])
        try:
            return Principal("User", map_subject(self.principal_rules, subject))
        except MappingError as exc:
            log.warning("closing connection: client certificate maps to no principal", listener=self.name,
                        peer=peer, reason=str(exc))
            _abort(writer)
            return None

    async def stop(self, grace: float = 5.0) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self.connections):
            task.cancel()
        if self.connections:
            await asyncio.wait(list(self.connections), timeout=grace)


def _abort(writer: asyncio.StreamWriter) -> None:
    transport: Any = writer.transport
    if transport is not None:
        transport.abort()
