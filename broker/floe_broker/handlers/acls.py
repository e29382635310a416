"""CreateAcls, DescribeAcls, DeleteAcls: Kafka's ACL administration on cluster metadata.

Bindings live in ``meta/cluster`` (``ClusterState.acls``); a change is a typed
metadata op committed by the controller, which pushes the new metadata to
every broker, so an ACL created through any broker is enforced by all of them
within a metadata push. Who may call these APIs (ALTER / DESCRIBE on the
cluster) is checked by the dispatcher (``handlers.authz.RULES``).
"""

from __future__ import annotations

from typing import Any

import structlog
from kio.schema.errors import ErrorCode

from floe_api.internal import CreateAcls, DeleteAcls

from ..cluster.metadata import binding_to_api
from ..errors import NotController, RpcError
from ..protocol.build import mk, nested, response_class
from ..security.acls import AclBinding, AclFilter, Operation, PatternType, Permission, ResourceType, invalid_reason
from ..security.principal import PRINCIPAL
from .context import BrokerContext

log = structlog.get_logger(__name__)
DESCRIBE_ACLS, CREATE_ACLS, DELETE_ACLS = 29, 30, 31


def _enum(kind: Any, value: int) -> Any:
    try:
        return kind(value)
    except ValueError:
        return kind(0)  # UNKNOWN: refused with INVALID_REQUEST like any other unusable value


def _filter(f: Any) -> AclFilter:
    return AclFilter(
        resource_type=_enum(ResourceType, f.resource_type_filter),
        pattern_type=_enum(PatternType, getattr(f, "pattern_type_filter", PatternType.LITERAL)),
        resource_name=f.resource_name_filter, principal=f.principal_filter, host=f.host_filter,
        operation=_enum(Operation, f.operation), permission=_enum(Permission, f.permission_type))


async def _commit(ctx: BrokerContext, change: CreateAcls | DeleteAcls) -> tuple[ErrorCode, str | None]:
    try:
        await ctx.apply_metadata(change)
    except NotController:
        return ErrorCode.not_controller, "no controller is available right now"
    except RpcError as exc:
        return ErrorCode.not_controller, f"controller unreachable: {exc}"
    return ErrorCode.none, None


async def create_acls(ctx: BrokerContext, version: int, req: Any) -> Any:
    cls = response_class(CREATE_ACLS, version)
    result_cls = nested(cls, "AclCreationResult")
    results: list[tuple[ErrorCode, str | None]] = []
    valid: list[AclBinding] = []
    for c in req.creations:
        b = AclBinding(_enum(ResourceType, c.resource_type),
                       _enum(PatternType, getattr(c, "resource_pattern_type", PatternType.LITERAL)),
                       c.resource_name, c.principal, c.host, _enum(Operation, c.operation),
                       _enum(Permission, c.permission_type))
        reason = invalid_reason(b)
        if reason is not None:
            results.append((ErrorCode.invalid_request, reason))
        else:
            valid.append(b)
            results.append((ErrorCode.none, None))
    if valid:
        code, message = await _commit(ctx, CreateAcls(acls=[binding_to_api(b) for b in valid]))
        if code == ErrorCode.none:
            log.info("acls created", by=str(PRINCIPAL.get()), acls=[b.to_json() for b in valid])
        else:
            results = [(code, message) if c == ErrorCode.none else (c, m) for c, m in results]
    return mk(cls, results=tuple(mk(result_cls, error_code=c, error_message=m) for c, m in results))


async def describe_acls(ctx: BrokerContext, version: int, req: Any) -> Any:
    cls = response_class(DESCRIBE_ACLS, version)
    resource_cls, acl_cls = nested(cls, "DescribeAclsResource"), nested(cls, "AclDescription")
    flt = _filter(req)
    reason = flt.invalid_reason()
    if reason is not None:
        return mk(cls, error_code=ErrorCode.invalid_request, error_message=reason, resources=())
    by_resource: dict[tuple[int, str, int], list[AclBinding]] = {}
    for b in ctx.state().acls:
        if flt.matches(b):
            by_resource.setdefault((b.resource_type, b.resource_name, b.pattern_type), []).append(b)
    return mk(cls, error_code=ErrorCode.none, error_message=None, resources=tuple(
        mk(resource_cls, resource_type=rt, resource_name=name, pattern_type=pt, acls=tuple(
            mk(acl_cls, principal=b.principal, host=b.host, operation=b.operation, permission_type=b.permission)
            for b in bs))
        for (rt, name, pt), bs in by_resource.items()))


async def delete_acls(ctx: BrokerContext, version: int, req: Any) -> Any:
    cls = response_class(DELETE_ACLS, version)
    result_cls, match_cls = nested(cls, "DeleteAclsFilterResult"), nested(cls, "DeleteAclsMatchingAcl")
    bindings = ctx.state().acls
    per_filter: list[tuple[ErrorCode, str | None, list[AclBinding]]] = []
    doomed: list[AclBinding] = []
    for f in req.filters:
        flt = _filter(f)
        reason = flt.invalid_reason()
        if reason is not None:
            per_filter.append((ErrorCode.invalid_request, reason, []))
            continue
        matched = [b for b in bindings if flt.matches(b)]
        per_filter.append((ErrorCode.none, None, matched))
        doomed.extend(b for b in matched if b not in doomed)
    if doomed:
        code, message = await _commit(ctx, DeleteAcls(acls=[binding_to_api(b) for b in doomed]))
        if code != ErrorCode.none:
            per_filter = [(code, message, []) if c == ErrorCode.none else (c, m, bs) for c, m, bs in per_filter]
        else:
            log.info("acls deleted", by=str(PRINCIPAL.get()), acls=[b.to_json() for b in doomed])
    return mk(cls, filter_results=tuple(
        mk(result_cls, error_code=c, error_message=m, matching_acls=tuple(
            mk(match_cls, error_code=ErrorCode.none, error_message=None, resource_type=b.resource_type,
               resource_name=b.resource_name, pattern_type=b.pattern_type, principal=b.principal, host=b.host,
               operation=b.operation, permission_type=b.permission)
            for b in bs))
        for c, m, bs in per_filter))
