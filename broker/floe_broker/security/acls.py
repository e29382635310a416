"""ACL bindings and binding filters, in Kafka's model and with Kafka's numbers.

A binding says: *principal* from *host* is allowed (or denied) *operation* on
resources of one *type* whose name matches a *pattern* (the literal name, a
literal ``*`` for every name, or a name prefix). Filters select bindings for
DescribeAcls and DeleteAcls; they may leave any field open and add the
``ANY`` and ``MATCH`` pattern types. The enum values are the wire values of
the Kafka protocol, so handlers pass request fields straight through.

Pure data and matching only: no I/O, no clock. The decision itself is
:mod:`.authorizer`'s.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import Any

WILDCARD = "*"  # a literal resource name, principal name or host that matches every one
CLUSTER_NAME = "kafka-cluster"  # the one cluster resource's name


class ResourceType(IntEnum):
    UNKNOWN = 0
    ANY = 1
    TOPIC = 2
    GROUP = 3
    CLUSTER = 4
    TRANSACTIONAL_ID = 5
    DELEGATION_TOKEN = 6
    USER = 7


class PatternType(IntEnum):
    UNKNOWN = 0
    ANY = 1
    MATCH = 2
    LITERAL = 3
    PREFIXED = 4


class Operation(IntEnum):
    UNKNOWN = 0
    ANY = 1
    ALL = 2
    READ = 3
    WRITE = 4
    CREATE = 5
    DELETE = 6
    ALTER = 7
    DESCRIBE = 8
    CLUSTER_ACTION = 9
    DESCRIBE_CONFIGS = 10
    ALTER_CONFIGS = 11
    IDEMPOTENT_WRITE = 12
    CREATE_TOKENS = 13
    DESCRIBE_TOKENS = 14


class Permission(IntEnum):
    UNKNOWN = 0
    ANY = 1
    DENY = 2
    ALLOW = 3


BINDABLE_RESOURCES = {ResourceType.TOPIC, ResourceType.GROUP, ResourceType.CLUSTER, ResourceType.TRANSACTIONAL_ID}
BINDABLE_OPERATIONS = set(Operation) - {Operation.UNKNOWN, Operation.ANY}


@dataclass(frozen=True, slots=True)
class AclBinding:
    resource_type: ResourceType
    pattern_type: PatternType  # LITERAL or PREFIXED
    resource_name: str
    principal: str  # "User:alice", or "User:*"
    host: str  # an address, or "*"
    operation: Operation
    permission: Permission  # ALLOW or DENY

    def matches_resource(self, resource_type: ResourceType, name: str) -> bool:
        """Whether this binding applies to the resource ``name`` of ``resource_type``."""
        if self.resource_type != resource_type:
            return False
        if self.pattern_type == PatternType.PREFIXED:
            return name.startswith(self.resource_name)
        return self.resource_name in (name, WILDCARD)

    def to_json(self) -> list[Any]:
        return [int(self.resource_type), int(self.pattern_type), self.resource_name, self.principal, self.host,
                int(self.operation), int(self.permission)]

    @classmethod
    def from_json(cls, row: list[Any]) -> AclBinding:
        rt, pt, name, principal, host, op, perm = row
        return cls(ResourceType(rt), PatternType(pt), name, principal, host, Operation(op), Permission(perm))


def invalid_reason(b: AclBinding) -> str | None:
    """Why a binding cannot be created (Kafka's INVALID_REQUEST cases), or None if it is valid."""
    if b.resource_type not in BINDABLE_RESOURCES:
        return f"resource type {b.resource_type.name} cannot carry ACLs"
    if b.pattern_type not in (PatternType.LITERAL, PatternType.PREFIXED):
        return f"pattern type {b.pattern_type.name} is only valid in a filter"
    if b.operation not in BINDABLE_OPERATIONS:
        return f"operation {b.operation.name} is only valid in a filter"
    if b.permission not in (Permission.ALLOW, Permission.DENY):
        return f"permission {b.permission.name} is only valid in a filter"
    if not b.resource_name:
        return "an ACL needs a resource name"
    if b.resource_type == ResourceType.CLUSTER and b.resource_name != CLUSTER_NAME:
        return f"the cluster resource is named {CLUSTER_NAME!r}"
    kind, sep, name = b.principal.partition(":")
    if not sep or not kind or not name:
        return f"a principal is TYPE:NAME, e.g. User:alice (got {b.principal!r})"
    if not b.host:
        return "an ACL needs a host ('*' for any)"
    return None


@dataclass(frozen=True, slots=True)
class AclFilter:
    """A DescribeAcls/DeleteAcls filter; None means any value."""

    resource_type: ResourceType = ResourceType.ANY
    pattern_type: PatternType = PatternType.ANY
    resource_name: str | None = None
    principal: str | None = None
    host: str | None = None
    operation: Operation = Operation.ANY
    permission: Permission = Permission.ANY

    def invalid_reason(self) -> str | None:
        for field, value in (("resource type", self.resource_type), ("pattern type", self.pattern_type),
                             ("operation", self.operation), ("permission", self.permission)):
            if value == 0:
                return f"{field} UNKNOWN cannot match anything"
        return None

    def matches(self, b: AclBinding) -> bool:
        if self.resource_type != ResourceType.ANY and self.resource_type != b.resource_type:
            return False
        if self.principal is not None and self.principal != b.principal:
            return False
        if self.host is not None and self.host != b.host:
            return False
        if self.operation != Operation.ANY and self.operation != b.operation:
            return False
        if self.permission != Permission.ANY and self.permission != b.permission:
            return False
        return self._matches_pattern(b)

    def _matches_pattern(self, b: AclBinding) -> bool:
        name = self.resource_name
        match self.pattern_type:
            case PatternType.ANY:
                return name is None or name == b.resource_name
            case PatternType.MATCH:
                # every binding that would apply to the resource named `name`
                if name is None:
                    return True
                if b.pattern_type == PatternType.PREFIXED:
                    return name.startswith(b.resource_name)
                return b.resource_name in (name, WILDCARD)
            case _:
                return b.pattern_type == self.pattern_type and (name is None or name == b.resource_name)
