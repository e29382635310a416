"""SCRAM credentials (RFC 5802) as Kafka keeps them: salt, iterations, StoredKey, ServerKey; never a password.

The one user store for every mechanism: SCRAM-SHA-256/512 authenticate
against these keys directly, and PLAIN checks a password by deriving the same
keys from it (``verify_password``) and comparing. The keys live in cluster
metadata (``meta/cluster``, ``scram`` field) as base64 JSON, so any broker
verifies any user and a change reaches every broker with the next metadata
push. StoredKey lets no one log in (that needs the ClientKey, which only the
password yields), so the bucket holds no usable secret.

Key derivation is CPU work (PBKDF2): callers on the event loop run
``from_password`` and ``verify_password`` in a thread.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass
from typing import Any

from scramp import ScramMechanism

# Kafka's wire numbering (AlterUserScramCredentials, DescribeUserScramCredentials)
MECHANISM_IDS = {1: "SCRAM-SHA-256", 2: "SCRAM-SHA-512"}
MECHANISM_NUMBERS = {name: number for number, name in MECHANISM_IDS.items()}
_HASHES = {"SCRAM-SHA-256": "sha256", "SCRAM-SHA-512": "sha512"}
# Kafka's bounds for a credential's iteration count
MIN_ITERATIONS, MAX_ITERATIONS = 4096, 16384
DEFAULT_ITERATIONS = 8192


@dataclass(frozen=True, slots=True)
class ScramCredential:
    mechanism: str
    salt: bytes
    iterations: int
    stored_key: bytes
    server_key: bytes

    def to_json(self) -> dict[str, Any]:
        b64 = base64.b64encode
        return {"salt": b64(self.salt).decode(), "iterations": self.iterations,
                "stored_key": b64(self.stored_key).decode(), "server_key": b64(self.server_key).decode()}

    @classmethod
    def from_json(cls, mechanism: str, doc: dict[str, Any]) -> ScramCredential:
        d = base64.b64decode
        return cls(mechanism, d(doc["salt"]), int(doc["iterations"]), d(doc["stored_key"]), d(doc["server_key"]))


def hash_name(mechanism: str) -> str:
    try:
        return _HASHES[mechanism]
    except KeyError:
        raise ValueError(f"not a SCRAM mechanism: {mechanism!r}") from None


def from_salted_password(mechanism: str, salt: bytes, salted_password: bytes, iterations: int) -> ScramCredential:
    """What AlterUserScramCredentials sends (the client salted the password), turned into stored keys."""
    h = hash_name(mechanism)
    client_key = hmac.digest(salted_password, b"Client Key", h)
    stored_key = hashlib.new(h, client_key).digest()
    server_key = hmac.digest(salted_password, b"Server Key", h)
    return ScramCredential(mechanism, salt, iterations, stored_key, server_key)


def from_password(mechanism: str, password: str, iterations: int = DEFAULT_ITERATIONS,
                  salt: bytes | None = None) -> ScramCredential:
    """A credential for ``password`` (a random salt unless given); CPU work: run it off the event loop."""
    hash_name(mechanism)
    salt_out, stored_key, server_key, i = ScramMechanism(mechanism).make_auth_info(
        password, iteration_count=iterations, salt=salt)
    return ScramCredential(mechanism, salt_out, i, stored_key, server_key)


def verify_password(credential: ScramCredential, password: str) -> bool:
    """PLAIN's check against a SCRAM credential, in constant time (CPU work: run it off the event loop)."""
    derived = from_password(credential.mechanism, password, credential.iterations, credential.salt)
    return hmac.compare_digest(derived.stored_key, credential.stored_key)


class ScramUsers:
    """Read-only view over the ``scram`` field of cluster metadata: user -> mechanism -> credential JSON."""

    def __init__(self, doc: dict[str, dict[str, dict[str, Any]]]) -> None:
        self._doc = doc

    def get(self, user: str, mechanism: str) -> ScramCredential | None:
        entry = self._doc.get(user, {}).get(mechanism)
        return ScramCredential.from_json(mechanism, entry) if entry is not None else None

    def any_of(self, user: str) -> ScramCredential | None:
        """The strongest credential a user has (PLAIN may check any of them)."""
        return self.get(user, "SCRAM-SHA-512") or self.get(user, "SCRAM-SHA-256")

    def users(self) -> list[str]:
        return sorted(u for u, creds in self._doc.items() if creds)

    def mechanisms(self, user: str) -> dict[str, int]:
        """mechanism -> iterations, for DescribeUserScramCredentials (never the keys)."""
        return {m: int(c["iterations"]) for m, c in sorted(self._doc.get(user, {}).items())}
