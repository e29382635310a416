"""The authorization decision, Kafka's rules as one pure function.

Bindings + principal + host + operation + resource in, allow or deny out; no
I/O, no clock, no globals, so every rule is tested in isolation and every
broker decides the same way from the same cluster metadata.

The rules (those of Kafka's ``AclAuthorizer``/``StandardAuthorizer``):

- a super user is allowed everything;
- a binding applies when its resource type is the resource's, its pattern
  matches the name (literal name, literal ``*``, or prefix), its principal is
  the principal or ``User:*``, and its host is the client's or ``*``;
- **deny wins**: any applying DENY binding for the operation (or ``ALL``)
  refuses, whatever allows;
- otherwise an applying ALLOW binding for the operation (or ``ALL``) allows;
  ``DESCRIBE`` is also allowed by READ, WRITE, DELETE or ALTER, and
  ``DESCRIBE_CONFIGS`` by ALTER_CONFIGS (the operations that need to see a
  resource imply seeing it);
- a resource with no binding at all (for anyone) is allowed only with
  ``allow.everyone.if.no.acl.found``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from .acls import WILDCARD, AclBinding, Operation, PatternType, Permission, ResourceType

# Operations whose grant also grants the key operation.
IMPLIED_BY = {
    Operation.DESCRIBE: {Operation.DESCRIBE, Operation.READ, Operation.WRITE, Operation.DELETE, Operation.ALTER},
    Operation.DESCRIBE_CONFIGS: {Operation.DESCRIBE_CONFIGS, Operation.ALTER_CONFIGS},
}


@dataclass(frozen=True, slots=True)
class AuthorizerSettings:
    """The broker flags the decision depends on."""

    enabled: bool = False
    super_users: frozenset[str] = field(default_factory=frozenset)
    allow_everyone_if_no_acl_found: bool = False


def parse_super_users(text: str) -> frozenset[str]:
    """``User:admin;User:ops`` (Kafka's ``super.users`` syntax) -> the set of principals."""
    return frozenset(p.strip() for p in text.split(";") if p.strip())


def _principal_matches(binding: str, principal: str) -> bool:
    if binding == principal:
        return True
    kind, _, name = binding.partition(":")
    return name == WILDCARD and principal.partition(":")[0] == kind


def _applies(b: AclBinding, principal: str, host: str) -> bool:
    return _principal_matches(b.principal, principal) and b.host in (host, WILDCARD)


class AclIndex:
    """Bindings by resource type and literal name, so a check reads the few that can apply.

    Built once per metadata version: a check is a dict lookup plus a scan of
    the prefixed bindings of that resource type, not of every binding.
    """

    def __init__(self, bindings: Iterable[AclBinding]) -> None:
        self.bindings = list(bindings)
        self._literal: dict[tuple[ResourceType, str], list[AclBinding]] = {}
        self._prefixed: dict[ResourceType, list[AclBinding]] = {}
        for b in self.bindings:
            if b.pattern_type == PatternType.PREFIXED:
                self._prefixed.setdefault(b.resource_type, []).append(b)
            else:
                self._literal.setdefault((b.resource_type, b.resource_name), []).append(b)

    def on_resource(self, resource_type: ResourceType, name: str) -> list[AclBinding]:
        """Every binding that applies to the resource, whoever it is for."""
        out = list(self._literal.get((resource_type, name), ()))
        if name != WILDCARD:
            out.extend(self._literal.get((resource_type, WILDCARD), ()))
        out.extend(b for b in self._prefixed.get(resource_type, ()) if name.startswith(b.resource_name))
        return out


def authorize(bindings: Iterable[AclBinding] | AclIndex, settings: AuthorizerSettings, principal: str, host: str,
              operation: Operation, resource_type: ResourceType, name: str) -> bool:
    """Whether ``principal`` connecting from ``host`` may do ``operation`` on the resource."""
    if not settings.enabled or principal in settings.super_users:
        return True
    index = bindings if isinstance(bindings, AclIndex) else AclIndex(bindings)
    on_resource = index.on_resource(resource_type, name)
    if not on_resource:
        return settings.allow_everyone_if_no_acl_found
    mine = [b for b in on_resource if _applies(b, principal, host)]
    if any(b.permission == Permission.DENY and b.operation in (operation, Operation.ALL) for b in mine):
        return False
    granting = IMPLIED_BY.get(operation, {operation}) | {Operation.ALL}
    return any(b.permission == Permission.ALLOW and b.operation in granting for b in mine)


def authorize_any(bindings: Iterable[AclBinding] | AclIndex, settings: AuthorizerSettings, principal: str,
                  host: str, operation: Operation, resource_type: ResourceType) -> bool:
    """Whether ``principal`` may do ``operation`` on at least one resource of the type.

    Kafka's ``authorizeByResourceType``: an idempotent producer without
    IDEMPOTENT_WRITE on the cluster may still initialise if it may WRITE some
    topic. Each allowing binding is checked against the full rules on its own
    name, so a DENY covering that name still refuses.
    """
    if not settings.enabled or principal in settings.super_users:
        return True
    index = bindings if isinstance(bindings, AclIndex) else AclIndex(bindings)
    granting = IMPLIED_BY.get(operation, {operation}) | {Operation.ALL}
    return any(
        b.resource_type == resource_type and b.permission == Permission.ALLOW and b.operation in granting
        and _applies(b, principal, host)
        and authorize(index, settings, principal, host, operation, resource_type, b.resource_name)
        for b in index.bindings
    )
