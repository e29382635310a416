"""SaslHandshake (17) and SaslAuthenticate (36): KIP-152 framing, KIP-368 re-authentication.

The client picks a mechanism with SaslHandshake, then sends the mechanism's
messages inside SaslAuthenticate requests until it is authenticated. Every
failure is answered with Kafka's error code (UNSUPPORTED_SASL_MECHANISM,
ILLEGAL_SASL_STATE, SASL_AUTHENTICATION_FAILED) and then the connection is
closed, as Kafka does. A successful SaslAuthenticate v1+ carries the session
lifetime (``connections.max.reauth.ms``); the client re-authenticates with a
new handshake on the same connection before it runs out, and must stay the
same principal.
"""

from __future__ import annotations

import datetime
from typing import Any

import structlog
from kio.schema.errors import ErrorCode

from ..protocol.build import mk, response_class
from ..security.principal import Principal
from ..security.sasl import (
    ILLEGAL_SASL_STATE,
    UNSUPPORTED_SASL_MECHANISM,
    SaslFailure,
    invalid_credentials,
    new_exchange,
)
from ..security.scram_store import ScramUsers
from ..security.session import SESSION, AuthSession
from .context import CLIENT, BrokerContext

log = structlog.get_logger(__name__)

SASL_HANDSHAKE, SASL_AUTHENTICATE = 17, 36


def _refuse(session: AuthSession | None, code: int, why: str) -> None:
    if session is not None:
        session.close_after_response = True
        session.exchange = None
    log.warning("closing connection: SASL refused", listener=session.listener if session else None,
                peer=CLIENT.get()[1], reason=why, error_code=ErrorCode(code).name)


async def sasl_handshake(ctx: BrokerContext, version: int, req: Any) -> Any:
    cls = response_class(SASL_HANDSHAKE, version)
    session = SESSION.get()
    mechanisms = session.mechanisms if session is not None else ()
    if session is None or not session.sasl:
        _refuse(session, ILLEGAL_SASL_STATE, "SaslHandshake on a listener without SASL")
        return mk(cls, error_code=ErrorCode(ILLEGAL_SASL_STATE), mechanisms=mechanisms)
    if session.exchange is not None:
        _refuse(session, ILLEGAL_SASL_STATE, "SaslHandshake during an authentication")
        return mk(cls, error_code=ErrorCode(ILLEGAL_SASL_STATE), mechanisms=mechanisms)
    if req.mechanism not in mechanisms:
        _refuse(session, UNSUPPORTED_SASL_MECHANISM, f"mechanism {req.mechanism[:64]!r} is not enabled")
        return mk(cls, error_code=ErrorCode(UNSUPPORTED_SASL_MECHANISM), mechanisms=mechanisms)
    if session.authenticated and req.mechanism != session.mechanism:
        _refuse(session, ILLEGAL_SASL_STATE, "re-authentication with another mechanism")
        return mk(cls, error_code=ErrorCode(ILLEGAL_SASL_STATE), mechanisms=mechanisms)
    session.reauthenticating = session.authenticated
    session.exchange = new_exchange(req.mechanism, lambda: ScramUsers(ctx.state().scram))
    return mk(cls, error_code=ErrorCode.none, mechanisms=mechanisms)


async def sasl_authenticate(ctx: BrokerContext, version: int, req: Any) -> Any:
    cls = response_class(SASL_AUTHENTICATE, version)
    session = SESSION.get()
    exchange = session.exchange if session is not None else None
    try:
        if session is None or exchange is None:
            raise SaslFailure(ILLEGAL_SASL_STATE, "SaslAuthenticate before SaslHandshake")
        token = await exchange.step(bytes(req.auth_bytes))
        lifetime_ms = 0
        if exchange.done:
            assert exchange.user is not None
            principal = Principal("User", exchange.user)
            if session.reauthenticating and principal != session.principal:
                raise invalid_credentials(exchange.mechanism, "re-authentication as another principal")
            again = session.reauthenticating
            lifetime_ms = ctx.config.connections_max_reauth_ms if version >= 1 else 0
            session.complete(principal, exchange.mechanism, lifetime_ms)
            log.info("re-authenticated" if again else "authenticated", principal=str(principal),
                     mechanism=exchange.mechanism, listener=session.listener, peer=CLIENT.get()[1])
    except SaslFailure as exc:
        _refuse(session, exc.code, exc.reason)
        return mk(cls, error_code=ErrorCode(exc.code), error_message=exc.message, auth_bytes=b"")
    return mk(cls, error_code=ErrorCode.none, error_message=None, auth_bytes=token,
              session_lifetime=datetime.timedelta(milliseconds=lifetime_ms))
