"""Authorization for the Kafka APIs: the rule of every API, and the checks handlers call.

:data:`RULES` names, for every API the dispatcher serves, the operations and
resources Kafka checks for it; ``tests/security`` walks the dispatch table and
fails for an API without a rule. Checks that concern the whole request (a
CLUSTER operation) are made by the dispatcher before the handler runs
(:func:`require_request`); per-resource checks (a topic, a group) are made by
the handler with :func:`allowed`, because Kafka answers them per resource.

The decision itself is :func:`floe_broker.security.authorizer.authorize`; the
principal is :data:`floe_broker.security.principal.PRINCIPAL` and the host the
client's address. With ``--authorizer off`` every check allows.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from kio.schema.errors import ErrorCode

from ..errors import KafkaError
from ..security.acls import CLUSTER_NAME, AclBinding, Operation, ResourceType
from ..security.authorizer import AclIndex, AuthorizerSettings, authorize, authorize_any, parse_super_users
from ..security.principal import PRINCIPAL
from .context import CLIENT, BrokerContext

TOPIC, GROUP, CLUSTER, TXN = ResourceType.TOPIC, ResourceType.GROUP, ResourceType.CLUSTER, ResourceType.TRANSACTIONAL_ID
READ, WRITE, CREATE, DELETE = Operation.READ, Operation.WRITE, Operation.CREATE, Operation.DELETE
ALTER, DESCRIBE = Operation.ALTER, Operation.DESCRIBE
DESCRIBE_CONFIGS, ALTER_CONFIGS, IDEMPOTENT_WRITE = (Operation.DESCRIBE_CONFIGS, Operation.ALTER_CONFIGS,
                                                     Operation.IDEMPOTENT_WRITE)

CODE_FOR = {
    TOPIC: ErrorCode.topic_authorization_failed,
    GROUP: ErrorCode.group_authorization_failed,
    CLUSTER: ErrorCode.cluster_authorization_failed,
    TXN: ErrorCode.transactional_id_authorization_failed,
}


@dataclass(frozen=True)
class Rule:
    """What Kafka checks for one API. ``request``: a CLUSTER operation the whole request needs."""

    checks: tuple[tuple[Operation, ResourceType], ...]
    request: Operation | None = None
    note: str = ""


RULES: dict[int, Rule] = {
    0: Rule(((WRITE, TOPIC), (WRITE, TXN)), note="per topic; WRITE on the transactional id for transactional batches"),
    1: Rule(((READ, TOPIC),), note="per topic"),
    2: Rule(((DESCRIBE, TOPIC),), note="per topic"),
    3: Rule(((DESCRIBE, TOPIC), (CREATE, CLUSTER), (CREATE, TOPIC)),
            note="topics not described are left out (all topics) or refused (named); auto-create needs CREATE"),
    8: Rule(((READ, GROUP), (READ, TOPIC))),
    9: Rule(((DESCRIBE, GROUP), (DESCRIBE, TOPIC)), note="topics not described are left out"),
    10: Rule(((DESCRIBE, GROUP), (DESCRIBE, TXN))),
    11: Rule(((READ, GROUP),)),
    12: Rule(((READ, GROUP),)),
    13: Rule(((READ, GROUP),)),
    14: Rule(((READ, GROUP),)),
    15: Rule(((DESCRIBE, GROUP),)),
    16: Rule(((DESCRIBE, CLUSTER), (DESCRIBE, GROUP)),
             note="without DESCRIBE on the cluster, only groups the principal may describe are listed"),
    17: Rule((), note="SaslHandshake: authentication itself, before any principal exists"),
    18: Rule((), note="ApiVersions is answered to anyone: clients need it before they authenticate"),
    19: Rule(((CREATE, CLUSTER), (CREATE, TOPIC)), note="CREATE on the cluster, or on the topic"),
    20: Rule(((DELETE, TOPIC),)),
    22: Rule(((IDEMPOTENT_WRITE, CLUSTER), (WRITE, TOPIC), (WRITE, TXN)),
             note="IDEMPOTENT_WRITE on the cluster or WRITE on any topic; WRITE on a transactional id"),
    29: Rule(((DESCRIBE, CLUSTER),), request=DESCRIBE),
    30: Rule(((ALTER, CLUSTER),), request=ALTER),
    31: Rule(((ALTER, CLUSTER),), request=ALTER),
    32: Rule(((DESCRIBE_CONFIGS, TOPIC), (DESCRIBE_CONFIGS, CLUSTER)), note="per resource"),
    36: Rule((), note="SaslAuthenticate: authentication itself, before any principal exists"),
    37: Rule(((ALTER, TOPIC),)),
    42: Rule(((DELETE, GROUP),)),
    44: Rule(((ALTER_CONFIGS, TOPIC), (ALTER_CONFIGS, CLUSTER)), note="per resource"),
    45: Rule(((ALTER, CLUSTER),), request=ALTER),
    46: Rule(((DESCRIBE, CLUSTER),), request=DESCRIBE),
    47: Rule(((DELETE, GROUP), (READ, TOPIC))),
    48: Rule(((DESCRIBE_CONFIGS, CLUSTER),), request=DESCRIBE_CONFIGS),
    49: Rule(((ALTER_CONFIGS, CLUSTER),), request=ALTER_CONFIGS),
    60: Rule(((DESCRIBE, CLUSTER),), request=DESCRIBE),
    50: Rule(((DESCRIBE, CLUSTER),), request=DESCRIBE, note="DescribeUserScramCredentials, as Kafka"),
    51: Rule(((ALTER, CLUSTER),), request=ALTER, note="AlterUserScramCredentials, as Kafka"),
    24: Rule(((WRITE, TXN), (WRITE, TOPIC)), note="AddPartitionsToTxn: the id, then every topic"),
    25: Rule(((WRITE, TXN), (READ, GROUP)), note="AddOffsetsToTxn"),
    26: Rule(((WRITE, TXN),), note="EndTxn"),
    28: Rule(((WRITE, TXN), (READ, GROUP), (READ, TOPIC)), note="TxnOffsetCommit"),
    61: Rule(((READ, TOPIC),), note="DescribeProducers, per topic"),
    65: Rule(((DESCRIBE, TXN), (DESCRIBE, TOPIC)), note="DescribeTransactions: the id; topics not described left out"),
    66: Rule(((DESCRIBE, TXN),), note="ListTransactions: ids not described are left out"),
    33: Rule(((ALTER_CONFIGS, TOPIC), (ALTER_CONFIGS, CLUSTER)), note="legacy AlterConfigs; per resource"),
    74: Rule(((DESCRIBE_CONFIGS, CLUSTER),), request=DESCRIBE_CONFIGS, note="ListConfigResources, as Kafka"),
    21: Rule(((DELETE, TOPIC),), note="DeleteRecords, per topic"),
    68: Rule(((READ, GROUP), (DESCRIBE, TOPIC)), note="DESCRIBE on each topic subscribed by name"),
    69: Rule(((DESCRIBE, GROUP),), note="ConsumerGroupDescribe"),
    75: Rule(((DESCRIBE, TOPIC),), note="per topic; topics not described are left out of an all-topics page"),
    43: Rule(((ALTER, CLUSTER),), request=ALTER, note="ElectLeaders, as Kafka"),
    35: Rule(((DESCRIBE, CLUSTER),), note="answered with CLUSTER_AUTHORIZATION_FAILED in the body, as Kafka"),
    23: Rule(((DESCRIBE, TOPIC),), note="per topic, as Kafka for a consumer (Floe has no followers)"),
}


def settings(ctx: BrokerContext) -> AuthorizerSettings:
    return _settings(ctx.config.authorizer_enabled, ctx.config.super_users, ctx.config.allow_everyone_if_no_acl_found)


@functools.lru_cache(maxsize=8)
def _settings(enabled: bool, super_users: str, allow_if_no_acl: bool) -> AuthorizerSettings:
    return AuthorizerSettings(enabled=enabled, super_users=parse_super_users(super_users),
                              allow_everyone_if_no_acl_found=allow_if_no_acl)


_index: tuple[list[AclBinding], AclIndex] | None = None  # the bindings last indexed (kept, so `is` is safe)


def _acls(ctx: BrokerContext) -> AclIndex:
    """The index of the current metadata's bindings, rebuilt only when new metadata brought a new list."""
    global _index
    bindings = ctx.state().acls
    if _index is None or _index[0] is not bindings:
        _index = (bindings, AclIndex(bindings))
    return _index[1]


def _who() -> tuple[str, str]:
    return str(PRINCIPAL.get()), CLIENT.get()[1].lstrip("/")


def allowed(ctx: BrokerContext, operation: Operation, resource_type: ResourceType, name: str) -> bool:
    """Whether the current request's principal may do ``operation`` on the resource."""
    if not ctx.config.authorizer_enabled:
        return True
    principal, host = _who()
    return authorize(_acls(ctx), settings(ctx), principal, host, operation, resource_type, name)


def allowed_on_cluster(ctx: BrokerContext, operation: Operation) -> bool:
    return allowed(ctx, operation, CLUSTER, CLUSTER_NAME)


def allowed_on_any(ctx: BrokerContext, operation: Operation, resource_type: ResourceType) -> bool:
    """Whether the principal may do ``operation`` on some resource of the type (Kafka's by-type check)."""
    if not ctx.config.authorizer_enabled:
        return True
    principal, host = _who()
    return authorize_any(_acls(ctx), settings(ctx), principal, host, operation, resource_type)


# What Kafka reports in the *_authorized_operations fields, per resource type
SUPPORTED_OPERATIONS = {
    TOPIC: (READ, WRITE, CREATE, DELETE, ALTER, DESCRIBE, DESCRIBE_CONFIGS, ALTER_CONFIGS),
    GROUP: (READ, DESCRIBE, DELETE),
    CLUSTER: (CREATE, ALTER, DESCRIBE, Operation.CLUSTER_ACTION, DESCRIBE_CONFIGS, ALTER_CONFIGS, IDEMPOTENT_WRITE),
}
NOT_REQUESTED = -2147483648  # the protocol's "authorized operations were not asked for"


def authorized_operations(ctx: BrokerContext, resource_type: ResourceType, name: str, requested: bool) -> int:
    """Kafka's bit field (bit n = operation n) of what the principal may do on the resource."""
    if not requested:
        return NOT_REQUESTED
    bits = 0
    for op in SUPPORTED_OPERATIONS[resource_type]:
        if allowed(ctx, op, resource_type, name):
            bits |= 1 << op
    return bits


def may_create_topic(ctx: BrokerContext, name: str) -> bool:
    """Kafka's rule for creating a topic: CREATE on the cluster, or on the topic itself."""
    return allowed_on_cluster(ctx, CREATE) or allowed(ctx, CREATE, TOPIC, name)


def require_request(ctx: BrokerContext, api_key: int) -> None:
    """Raise CLUSTER_AUTHORIZATION_FAILED if the API needs a cluster operation the principal lacks."""
    rule = RULES.get(api_key)
    if rule is None:
        if ctx.config.authorizer_enabled:  # an API nobody wrote a rule for is refused, never let through
            raise KafkaError(ErrorCode.cluster_authorization_failed, f"API {api_key} has no authorization rule")
        return
    if rule.request is not None and not allowed_on_cluster(ctx, rule.request):
        raise KafkaError(ErrorCode.cluster_authorization_failed,
                         f"{PRINCIPAL.get()} may not {rule.request.name} the cluster")
