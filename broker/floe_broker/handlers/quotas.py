"""DescribeClientQuotas and AlterClientQuotas: Kafka's client quota administration.

Quotas live in ``meta/cluster`` (``ClusterState.quotas``) keyed by entity, are
changed by a typed metadata op at the controller and reach every broker with
the metadata push; the dispatcher enforces them (``security.quotas``). Floe
enforces ``producer_byte_rate`` and ``consumer_byte_rate`` on ``user`` and
``client-id`` entities; other keys or entity types (``ip``,
``request_percentage``...) are refused with INVALID_REQUEST rather than
stored and silently ignored.
"""

from __future__ import annotations

import math
from typing import Any

import structlog
from kio.schema.errors import ErrorCode

from floe_api.internal import AlterQuotas, QuotaChange

from ..errors import NotController, RpcError
from ..protocol.build import mk, nested, response_class
from ..security.principal import PRINCIPAL
from ..security.quotas import ENTITY_TYPES, QUOTA_KEYS, parse_entity_key
from .context import BrokerContext

log = structlog.get_logger(__name__)
DESCRIBE_CLIENT_QUOTAS, ALTER_CLIENT_QUOTAS = 48, 49
MATCH_EXACT, MATCH_DEFAULT, MATCH_ANY = 0, 1, 2


def _component_matches(component: Any, entity: dict[str, str | None]) -> bool:
    if component.entity_type not in entity:
        return False
    name = entity[component.entity_type]
    if component.match_type == MATCH_EXACT:
        return name is not None and name == component.match
    if component.match_type == MATCH_DEFAULT:
        return name is None
    return True


async def describe_client_quotas(ctx: BrokerContext, version: int, req: Any) -> Any:
    cls = response_class(DESCRIBE_CLIENT_QUOTAS, version)
    entry_cls, entity_cls, value_cls = nested(cls, "EntryData"), nested(cls, "EntityData"), nested(cls, "ValueData")
    for c in req.components:
        if c.match_type not in (MATCH_EXACT, MATCH_DEFAULT, MATCH_ANY):
            return mk(cls, error_code=ErrorCode.invalid_request, error_message=f"match type {c.match_type}",
                      entries=None)
        if c.entity_type not in ENTITY_TYPES:
            return mk(cls, error_code=ErrorCode.invalid_request,
                      error_message=f"entity type {c.entity_type!r} is not supported", entries=None)
    entries = []
    for key, values in sorted(ctx.state().quotas.items()):
        entity = dict(parse_entity_key(key))
        if not all(_component_matches(c, entity) for c in req.components):
            continue
        if req.strict and set(entity) != {c.entity_type for c in req.components}:
            continue
        entries.append(mk(entry_cls, entity=tuple(mk(entity_cls, entity_type=t, entity_name=n)
                                                  for t, n in sorted(entity.items())),
                          values=tuple(mk(value_cls, key=k, value=float(v)) for k, v in sorted(values.items()))))
    return mk(cls, error_code=ErrorCode.none, error_message=None, entries=tuple(entries))


def _invalid(entry: Any) -> str | None:
    types = [e.entity_type for e in entry.entity]
    if not types or len(set(types)) != len(types):
        return "an entity names each of user and client-id at most once"
    for t in types:
        if t not in ENTITY_TYPES:
            return f"entity type {t!r} is not supported (only user and client-id)"
    for op in entry.ops:
        if op.key not in QUOTA_KEYS:
            return f"quota {op.key!r} is not supported (only {', '.join(QUOTA_KEYS)})"
        if not op.remove and not (math.isfinite(op.value) and op.value > 0):
            return f"quota {op.key} must be a positive number, got {op.value}"
    return None


async def alter_client_quotas(ctx: BrokerContext, version: int, req: Any) -> Any:
    cls = response_class(ALTER_CLIENT_QUOTAS, version)
    entry_cls, entity_cls = nested(cls, "EntryData"), nested(cls, "EntityData")
    results: list[tuple[Any, ErrorCode, str | None]] = []
    changes: list[QuotaChange] = []
    for entry in req.entries:
        reason = _invalid(entry)
        if reason is not None:
            results.append((entry, ErrorCode.invalid_request, reason))
            continue
        results.append((entry, ErrorCode.none, None))
        changes.append(QuotaChange(entity=[(e.entity_type, e.entity_name) for e in entry.entity],
                                   set={o.key: o.value for o in entry.ops if not o.remove},
                                   remove=[o.key for o in entry.ops if o.remove]))
    if changes and not req.validate_only:
        code, message = ErrorCode.none, None
        try:
            await ctx.apply_metadata(AlterQuotas(changes=changes))
            log.info("client quotas altered", by=str(PRINCIPAL.get()),
                     changes=[c.model_dump(mode="json") for c in changes])
        except NotController:
            code, message = ErrorCode.not_controller, "no controller is available right now"
        except RpcError as exc:
            code, message = ErrorCode.not_controller, f"controller unreachable: {exc}"
        if code != ErrorCode.none:
            results = [(e, code, message) if c == ErrorCode.none else (e, c, m) for e, c, m in results]
    return mk(cls, entries=tuple(
        mk(entry_cls, error_code=c, error_message=m,
           entity=tuple(mk(entity_cls, entity_type=x.entity_type, entity_name=x.entity_name) for x in e.entity))
        for e, c, m in results))
