"""SASL exchanges (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512) against the SCRAM user store, free of sockets.

One exchange per authentication: the handler feeds it each SaslAuthenticate
payload and sends back what :meth:`step` returns, until :attr:`done`. Any
failure is a :class:`SaslFailure` whose message is what Kafka tells the
client: it never says whether the user exists, and nothing about the
password reaches a log line or a message. SCRAM runs in ``scramp``; PLAIN
derives the SCRAM keys from the password it was sent (``scram_store``) in a
thread, a few at a time, so a flood of logins cannot stall the event loop.
"""

from __future__ import annotations

import asyncio
import functools
import os
from collections.abc import Callable
from typing import Protocol

from scramp import ScramException, ScramMechanism

from .scram_store import (
    DEFAULT_ITERATIONS,
    MECHANISM_NUMBERS,
    ScramCredential,
    ScramUsers,
    from_password,
    verify_password,
)

PLAIN = "PLAIN"
MECHANISMS = (PLAIN, *MECHANISM_NUMBERS)
SASL_AUTHENTICATION_FAILED, UNSUPPORTED_SASL_MECHANISM, ILLEGAL_SASL_STATE = 58, 33, 34
MAX_USER_LENGTH = 1024
_PLAIN_CHECKS_AT_ONCE = 4

Users = Callable[[], ScramUsers]


class SaslFailure(Exception):
    def __init__(self, code: int, message: str, reason: str = "") -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.reason = reason or message  # for the log: why, never a secret


def invalid_credentials(mechanism: str, reason: str) -> SaslFailure:
    return SaslFailure(SASL_AUTHENTICATION_FAILED,
                       f"Authentication failed during authentication due to invalid credentials "
                       f"with SASL mechanism {mechanism}", reason)


class Exchange(Protocol):
    mechanism: str
    done: bool
    user: str | None

    async def step(self, token: bytes) -> bytes: ...


def parse_mechanisms(text: str) -> tuple[str, ...]:
    names = tuple(m.strip().upper() for m in text.split(",") if m.strip())
    unknown = [m for m in names if m not in MECHANISMS]
    if unknown:
        raise ValueError(f"unsupported SASL mechanisms {unknown}; supported: {', '.join(MECHANISMS)}")
    return names


def new_exchange(mechanism: str, users: Users) -> Exchange:
    if mechanism == PLAIN:
        return PlainExchange(users)
    return ScramExchange(mechanism, users)


class PlainExchange:
    """RFC 4616: one message ``authzid NUL user NUL password``; the password is checked against SCRAM keys."""

    mechanism = PLAIN
    _slots: asyncio.Semaphore | None = None

    def __init__(self, users: Users) -> None:
        self._users = users
        self.done = False
        self.user: str | None = None

    async def step(self, token: bytes) -> bytes:
        if self.done:
            raise SaslFailure(ILLEGAL_SASL_STATE, "PLAIN takes one message")
        parts = token.split(b"\0")
        if len(parts) != 3 or not parts[1] or len(parts[1]) > MAX_USER_LENGTH:
            raise invalid_credentials(PLAIN, "malformed PLAIN message")
        try:
            authzid, user, password = (p.decode() for p in parts)
        except UnicodeDecodeError:
            raise invalid_credentials(PLAIN, "PLAIN message is not UTF-8") from None
        if authzid and authzid != user:
            raise invalid_credentials(PLAIN, "authorization id differs from the user")
        credential = self._users().any_of(user)
        if PlainExchange._slots is None:
            PlainExchange._slots = asyncio.Semaphore(_PLAIN_CHECKS_AT_ONCE)
        async with PlainExchange._slots:
            # an unknown user costs the same derivation, so timing does not tell who exists
            ok = await asyncio.to_thread(_check, credential, password)
        if credential is None:
            raise invalid_credentials(PLAIN, f"unknown user {user!r}")
        if not ok:
            raise invalid_credentials(PLAIN, f"wrong password for user {user!r}")
        self.done, self.user = True, user
        return b""


def _check(credential: ScramCredential | None, password: str) -> bool:
    """Runs in a thread: the decoy, too, is derived off the event loop."""
    return verify_password(credential or _decoy(), password)


@functools.cache
def _decoy() -> ScramCredential:
    return from_password("SCRAM-SHA-512", os.urandom(16).hex(), DEFAULT_ITERATIONS)


def _unescape(saslname: str) -> str:
    return saslname.replace("=2C", ",").replace("=3D", "=")


class ScramExchange:
    """RFC 5802 server side: client-first -> server-first, client-final -> server-final."""

    def __init__(self, mechanism: str, users: Users) -> None:
        self.mechanism = mechanism
        self._users = users
        self.done = False
        self.user: str | None = None
        self._asked: str | None = None
        self._server = ScramMechanism(mechanism).make_server(self._credentials)
        self._step = 0

    def _credentials(self, name: str) -> tuple[bytes, bytes, bytes, int] | None:
        self._asked = _unescape(name)
        if len(self._asked) > MAX_USER_LENGTH:
            return None
        c = self._users().get(self._asked, self.mechanism)
        return None if c is None else (c.salt, c.stored_key, c.server_key, c.iterations)

    def _accept_repeated_client_nonce(self, client_final: str) -> None:
        """Accept what Kafka accepts: a final nonce that *ends with* the server's combined nonce.

        librdkafka before 2.x (kcat on Debian 12) sends the client nonce twice in
        client-final; Kafka's server checks ``endsWith``, so those clients work
        with Kafka. The server's part is still echoed, and the proof covers the
        message exactly as sent, so nothing is weakened.
        """
        expected = str(self._server.nonce)
        for attr in client_final.split(","):
            if attr.startswith("r="):
                got = attr[2:]
                if got != expected and got.endswith(expected):
                    self._server.nonce = type(self._server.nonce)(got)
                return

    async def step(self, token: bytes) -> bytes:
        try:
            message = token.decode()
        except UnicodeDecodeError:
            raise invalid_credentials(self.mechanism, "SCRAM message is not UTF-8") from None
        try:
            if self._step == 0:
                self._step = 1
                self._server.set_client_first(message)
                return str(self._server.get_server_first()).encode()
            if self._step == 1:
                self._step = 2
                self._accept_repeated_client_nonce(message)
                self._server.set_client_final(message)
                final = str(self._server.get_server_final()).encode()
                self.done, self.user = True, self._asked
                return final
        except ScramException as exc:
            who = f" for user {self._asked!r}" if self._asked is not None else ""
            raise invalid_credentials(self.mechanism, f"{exc}{who}") from None
        except Exception as exc:  # scramp trusts its input in places; a bad message is still just a failure
            raise invalid_credentials(self.mechanism, f"malformed SCRAM message ({type(exc).__name__})") from None
        raise SaslFailure(ILLEGAL_SASL_STATE, "SCRAM exchange already complete")
