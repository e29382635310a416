"""DescribeUserScramCredentials (50) and AlterUserScramCredentials (51): the SCRAM user store over Kafka's API.

``kafka-configs --alter --add-config 'SCRAM-SHA-512=[password=...]' --entity-type users``
and AdminClient's ``alter_user_scram_credentials`` land here. The client sends
a salt and the *salted* password, never the password; the broker keeps only
StoredKey and ServerKey derived from it (``security.scram_store``), in cluster
metadata through the controller, so every broker sees the change with the
next metadata push. Validation follows Kafka: one result per user, a user
with any bad entry changes nothing.
"""

from __future__ import annotations

import base64
from collections import Counter
from typing import Any

import structlog
from kio.schema.errors import ErrorCode

from floe_api.internal import AlterScramCredentials, ScramDeletion, ScramKeys, ScramUpsertion

from ..errors import KafkaError, NotController, RpcError
from ..protocol.build import mk, nested, response_class
from ..security.scram_store import (
    MAX_ITERATIONS,
    MECHANISM_IDS,
    MECHANISM_NUMBERS,
    MIN_ITERATIONS,
    ScramUsers,
    from_salted_password,
)
from .context import BrokerContext

log = structlog.get_logger(__name__)

DESCRIBE, ALTER = 50, 51


async def describe_user_scram_credentials(ctx: BrokerContext, version: int, req: Any) -> Any:
    cls = response_class(DESCRIBE, version)
    result_cls = nested(cls, "DescribeUserScramCredentialsResult")
    info_cls = nested(cls, "CredentialInfo")
    users = ScramUsers(ctx.state().scram)
    asked = [u.name for u in req.users] if req.users else users.users()
    counts = Counter(asked)
    results = []
    for name in dict.fromkeys(asked):
        mechanisms = users.mechanisms(name)
        if counts[name] > 1:
            code = ErrorCode.duplicate_resource
            message: str | None = f"Cannot describe SCRAM credentials for the same user twice: {name}"
        elif not mechanisms:
            code, message = ErrorCode.resource_not_found, f"No SCRAM credential exists for user {name}"
        else:
            code, message = ErrorCode.none, None
        infos = tuple(mk(info_cls, mechanism=MECHANISM_NUMBERS[m], iterations=i)
                      for m, i in mechanisms.items() if m in MECHANISM_NUMBERS) if code == ErrorCode.none else ()
        results.append(mk(result_cls, user=name, error_code=code, error_message=message, credential_infos=infos))
    return mk(cls, error_code=ErrorCode.none, error_message=None, results=tuple(results))


def _check(users: ScramUsers, deletions: list[Any], upsertions: list[Any]) -> dict[str, tuple[ErrorCode, str]]:
    """user -> the first error of any of its entries (Kafka's order of checks)."""
    errors: dict[str, tuple[ErrorCode, str]] = {}
    seen: Counter[tuple[str, int]] = Counter((e.name, e.mechanism) for e in [*deletions, *upsertions])
    for e in [*deletions, *upsertions]:
        if e.name in errors:
            continue
        if not e.name:
            errors[e.name] = (ErrorCode.unacceptable_credential, "Username must not be empty")
        elif e.mechanism not in MECHANISM_IDS:
            errors[e.name] = (ErrorCode.unsupported_sasl_mechanism, "Unknown SCRAM mechanism")
        elif seen[(e.name, e.mechanism)] > 1:
            errors[e.name] = (ErrorCode.duplicate_resource,
                              "A user credential cannot be altered twice in the same request")
    for d in deletions:
        if d.name not in errors and users.get(d.name, MECHANISM_IDS[d.mechanism]) is None:
            errors[d.name] = (ErrorCode.resource_not_found,
                              "Attempt to delete a user credential that does not exist")
    for u in upsertions:
        if u.name in errors:
            continue
        if not MIN_ITERATIONS <= u.iterations <= MAX_ITERATIONS:
            errors[u.name] = (ErrorCode.unacceptable_credential,
                              f"Iterations must be between {MIN_ITERATIONS} and {MAX_ITERATIONS}")
        elif not u.salt or not u.salted_password:
            errors[u.name] = (ErrorCode.unacceptable_credential, "Salt and salted password must not be empty")
    return errors


def _keys(u: Any) -> ScramKeys:
    c = from_salted_password(MECHANISM_IDS[u.mechanism], bytes(u.salt), bytes(u.salted_password), u.iterations)
    b64 = base64.b64encode
    return ScramKeys(salt=b64(c.salt).decode(), iterations=c.iterations,
                     stored_key=b64(c.stored_key).decode(), server_key=b64(c.server_key).decode())


async def alter_user_scram_credentials(ctx: BrokerContext, version: int, req: Any) -> Any:
    cls = response_class(ALTER, version)
    result_cls = nested(cls, "AlterUserScramCredentialsResult")
    deletions, upsertions = list(req.deletions), list(req.upsertions)
    errors = _check(ScramUsers(ctx.state().scram), deletions, upsertions)
    change = AlterScramCredentials(
        deletions=[ScramDeletion(user=d.name, mechanism=MECHANISM_IDS[d.mechanism])
                   for d in deletions if d.name not in errors],
        upsertions=[ScramUpsertion(user=u.name, mechanism=MECHANISM_IDS[u.mechanism], keys=_keys(u))
                    for u in upsertions if u.name not in errors],
    )
    users = list(dict.fromkeys(e.name for e in [*deletions, *upsertions]))
    if change.deletions or change.upsertions:
        try:
            await ctx.alter_scram_credentials(change)
        except (NotController, RpcError) as exc:
            for name in users:
                errors.setdefault(name, (ErrorCode.not_controller, f"controller unavailable: {exc}"))
        except KafkaError as exc:
            for name in users:
                errors.setdefault(name, (ErrorCode(exc.code), exc.message))
        else:
            log.info("SCRAM credentials changed", upserted=sorted({u.user for u in change.upsertions}),
                     deleted=sorted({d.user for d in change.deletions}))
    results = tuple(
        mk(result_cls, user=name, error_code=errors.get(name, (ErrorCode.none, None))[0],
           error_message=errors.get(name, (ErrorCode.none, None))[1])
        for name in users
    )
    return mk(cls, results=results)
