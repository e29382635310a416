"""Accept loop and graceful shutdown (uvicorn's order: stop accepting, finish what was asked, close).

One :class:`KafkaListener` per configured Kafka listener. A TLS listener
accepts sockets itself and runs each handshake with
``loop.connect_accepted_socket(ssl=...)`` on the context current at that
moment, so a reloaded certificate applies to the next connection and the
handshake's failure is ours to log: a failed or stalled handshake (plaintext
bytes, a truncated ClientHello, a client certificate the CA did not sign)
closes the connection with one log line, and nothing else notices. (Upgrading
an accepted plaintext stream with ``start_tls`` would race: uvloop may read
the ClientHello into the plaintext buffer first.) Every connection gets an
``AuthSession`` naming its listener, so Metadata answers with that listener's
addresses and the dispatcher knows the principal.
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
from .frames import FrameProtocol, FrameSource

log = structlog.get_logger(__name__)
_LIMIT = 1024 * 1024


class KafkaListener:
    """Plaintext connections read frames through ``frames.FrameProtocol``; TLS ones through a StreamReader."""

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
        self._open: set[Connection] = set()  # to tell each to finish at shutdown
        self._server: asyncio.base_events.Server | None = None
        self._socket: socket.socket | None = None
        self._accepting: asyncio.Task[None] | None = None

    async def start(self) -> None:
        if self.tls is None:
            self._server = await asyncio.get_running_loop().create_server(
                lambda: FrameProtocol(self._plaintext_connected), self.host, self.port, reuse_address=True)
            self.port = self._server.sockets[0].getsockname()[1]
            return
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.create_server((self.host, self.port), family=family, backlog=1024)
        sock.setblocking(False)
        self._socket = sock
        self.port = sock.getsockname()[1]
        self._accepting = asyncio.create_task(self._accept_tls(), name=f"accept-{self.name}")

    async def _accept_tls(self) -> None:
        assert self._socket is not None
        loop = asyncio.get_running_loop()
        while True:
            try:
                conn, _ = await loop.sock_accept(self._socket)
            except OSError as exc:  # out of file descriptors, or the like: keep the listener alive
                log.warning("accept failed", listener=self.name, error=str(exc))
                await asyncio.sleep(0.1)
                continue
            task = asyncio.create_task(self._serve_tls(conn))
            self.connections.add(task)
            task.add_done_callback(self.connections.discard)

    async def _serve_tls(self, conn: socket.socket) -> None:
        assert self.tls is not None
        loop = asyncio.get_running_loop()
        peer = "{}:{}".format(*conn.getpeername()[:2]) if conn.family != socket.AF_UNIX else "?"
        reader = asyncio.StreamReader(limit=_LIMIT)
        protocol = asyncio.StreamReaderProtocol(reader)
        try:
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            transport, _ = await loop.connect_accepted_socket(
                lambda: protocol, conn, ssl=self.tls.context, ssl_handshake_timeout=self.handshake_timeout_s)
        except asyncio.CancelledError:
            conn.close()
            raise
        except (ssl.SSLError, OSError, TimeoutError, EOFError) as exc:
            log.info("closing connection: TLS handshake failed", listener=self.name, peer=peer,
                     reason=f"{type(exc).__name__}: {exc}"[:200])
            conn.close()
            return
        writer = asyncio.StreamWriter(transport, protocol, reader, loop)
        principal = self._tls_principal(writer, peer)
        if principal is None:
            transport.abort()
            return
        try:
            await self._serve(reader, writer, principal)
        except asyncio.CancelledError:
            writer.close()

    def _plaintext_connected(self, protocol: FrameProtocol) -> None:
        task = asyncio.create_task(self._accept(protocol, protocol.writer()))
        self.connections.add(task)  # held until it ends (``_accept`` discards it)

    async def _accept(self, reader: FrameSource, writer: asyncio.StreamWriter) -> None:
        sock = writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        task = asyncio.current_task()
        assert task is not None
        self.connections.add(task)
        try:
            await self._serve(reader, writer, ANONYMOUS)
        except asyncio.CancelledError:
            writer.close()  # shutdown: a cancelled accept callback would be logged as an error
        finally:
            self.connections.discard(task)

    async def _serve(self, reader: FrameSource, writer: asyncio.StreamWriter, principal: Principal) -> None:
        session = AuthSession.open(self.name, self.protocol, sasl=self.sasl, mechanisms=self.mechanisms,
                                   principal=principal)
        conn = Connection(reader, writer, self.dispatch, max_request_bytes=self.max_request_bytes,
                          max_inflight=self.max_inflight, idle_timeout=self.idle_timeout, session=session)
        self._open.add(conn)
        try:
            await conn.serve()
        finally:
            self._open.discard(conn)

    def _tls_principal(self, writer: asyncio.StreamWriter, peer: str) -> Principal | None:
        """The principal the client certificate maps to (ANONYMOUS without one); None: refused."""
        cert: Any = writer.get_extra_info("peercert")
        if not cert or "subject" not in cert:
            return ANONYMOUS
        subject = subject_name(cert["subject"])
        try:
            return Principal("User", map_subject(self.principal_rules, subject))
        except MappingError as exc:
            log.warning("closing connection: client certificate maps to no principal", listener=self.name,
                        peer=peer, reason=str(exc))
            return None

    async def stop(self, grace: float = 5.0) -> None:
        if self._server is not None:
            self._server.close()
        if self._accepting is not None:
            self._accepting.cancel()
        if self._socket is not None:
            self._socket.close()
        for conn in list(self._open):
            conn.finish()  # stop reading; answer what was already read
        if self.connections:
            await asyncio.wait(list(self.connections), timeout=grace)
        left = list(self.connections)
        for task in left:
            task.cancel()
        if left:
            await asyncio.wait(left, timeout=1.0)

