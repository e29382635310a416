"""Seed the first SCRAM users from a file (``--sasl-bootstrap-users-file``), e.g. a mounted Kubernetes Secret.

Without a first user no one could log in to create the others. The file has
one ``USER:PASSWORD`` per line (``#`` comments and blank lines ignored). Each
user gets SCRAM-SHA-256 and SCRAM-SHA-512 credentials, derived here, and the
change reaches the metadata with ``if_absent``: a user that already exists
keeps its credentials (a password changed through Kafka's API is not reset
by a restart). Only salts and keys leave this process; the file is never
copied anywhere.
"""

from __future__ import annotations

from pathlib import Path

from floe_api.internal import AlterScramCredentials, ScramKeys, ScramUpsertion

from .scram_store import MECHANISM_NUMBERS, from_password


class BootstrapUsersError(ValueError):
    """The file cannot be read or a line is not USER:PASSWORD."""


def read_users(path: str) -> dict[str, str]:
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise BootstrapUsersError(f"cannot read {path}: {exc.strerror}") from None
    users: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        user, sep, password = line.partition(":")
        if not sep or not user.strip() or not password:
            raise BootstrapUsersError(f"{path}:{number}: expected USER:PASSWORD")  # never echo the line
        users[user.strip()] = password
    return users


def seed_change(users: dict[str, str]) -> AlterScramCredentials:
    """The metadata change for these users (CPU work: key derivation; run it in a thread)."""
    upsertions = []
    for user, password in users.items():
        for mechanism in MECHANISM_NUMBERS:
            c = from_password(mechanism, password)
            d = c.to_json()
            upsertions.append(ScramUpsertion(user=user, mechanism=mechanism, if_absent=True, keys=ScramKeys(**d)))
    return AlterScramCredentials(upsertions=upsertions)
