"""The authenticated identity of a Kafka connection, as Kafka names it (``User:alice``).

The connection sets :data:`PRINCIPAL` once it knows who the client is (after
SASL, or from a TLS client certificate); a listener without authentication
leaves it ``User:ANONYMOUS``, as Kafka does. The authorizer reads it for every
request, so handlers never pass identities around.
"""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Principal:
    type: str
    name: str

    def __str__(self) -> str:
        return f"{self.type}:{self.name}"

    @classmethod
    def parse(cls, text: str) -> Principal:
        kind, sep, name = text.partition(":")
        if not sep or not kind or not name:
            raise ValueError(f"a principal is TYPE:NAME, e.g. User:alice (got {text!r})")
        return cls(kind, name)


ANONYMOUS = Principal("User", "ANONYMOUS")

# The principal of the request being handled; the connection sets it per request.
PRINCIPAL: ContextVar[Principal] = ContextVar("floe_principal", default=ANONYMOUS)
