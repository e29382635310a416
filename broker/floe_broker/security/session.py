"""A connection's authentication state, shared by the connection, the dispatcher and the SASL handlers.

Each connection has one :class:`AuthSession`, put into :data:`SESSION` for
every request it reads (the object is shared, so the SASL handlers change it
in place). On a SASL listener nothing but ApiVersions, SaslHandshake and
SaslAuthenticate is served until the session is authenticated; after that
every request runs as :attr:`principal` (``security.principal.PRINCIPAL``).
With ``connections.max.reauth.ms`` a session expires and the client must
authenticate again on the same connection (KIP-368), or be disconnected.
"""

from __future__ import annotations

import time
from contextvars import ContextVar
from dataclasses import dataclass

from .principal import ANONYMOUS, Principal
from .sasl import Exchange

API_VERSIONS, SASL_HANDSHAKE, SASL_AUTHENTICATE = 18, 17, 36
BEFORE_AUTHENTICATION = frozenset({API_VERSIONS, SASL_HANDSHAKE, SASL_AUTHENTICATE})
# Kafka's sasl.server.max.receive.size: the largest frame an unauthenticated client may send
MAX_UNAUTHENTICATED_FRAME = 512 * 1024


@dataclass
class AuthSession:
    listener: str
    protocol: str
    sasl: bool
    mechanisms: tuple[str, ...] = ()
    principal: Principal = ANONYMOUS
    authenticated: bool = False
    exchange: Exchange | None = None
    reauthenticating: bool = False
    expires_at: float | None = None  # time.monotonic(); None: never
    close_after_response: bool = False
    mechanism: str | None = None  # of the last successful login; a re-authentication must use it again

    @classmethod
    def open(cls, listener: str, protocol: str, *, sasl: bool, mechanisms: tuple[str, ...] = (),
             principal: Principal = ANONYMOUS) -> AuthSession:
        return cls(listener, protocol, sasl, mechanisms, principal, authenticated=not sasl)

    def may_serve(self, api_key: int) -> bool:
        return self.authenticated or api_key in BEFORE_AUTHENTICATION

    def expired(self, now: float | None = None) -> bool:
        return (self.expires_at is not None and not self.reauthenticating
                and (time.monotonic() if now is None else now) >= self.expires_at)

    def complete(self, principal: Principal, mechanism: str, lifetime_ms: int) -> None:
        self.principal, self.authenticated, self.exchange, self.reauthenticating = principal, True, None, False
        self.mechanism = mechanism
        self.expires_at = time.monotonic() + lifetime_ms / 1000 if lifetime_ms > 0 else None


# The session of the connection whose request is being handled; None outside a connection (in-process tests).
SESSION: ContextVar[AuthSession | None] = ContextVar("floe_auth_session", default=None)


def current_listener() -> str | None:
    """The listener of the request being handled: brokers are advertised to a client on its own listener."""
    session = SESSION.get()
    return session.listener if session is not None else None
