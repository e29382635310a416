"""An error response for any request, built from the request itself.

When a handler fails unexpectedly the client must still get an answer it can
parse, carrying the error where it looks for one: a top-level ``error_code``
when the response has one, and otherwise on every entry it asked about (each
topic and partition of a produce, each group of a DescribeGroups, each
resource of a DescribeConfigs...). Kafka clients key their handling on those
entries, so the response mirrors the request's collections, copying the
fields that identify an entry (topic name or id, partition index, group id,
resource, coordinator key, member id) and setting every ``error_code`` (and
``error_message``) it has. Offsets, epochs and node ids are -1 ("unknown"),
as Kafka answers them; everything else gets the protocol's neutral value.

Request and response collections are matched by name through a small table
because Kafka names them differently on each side (``topic_data`` ->
``responses``, ``partition_data`` -> ``partition_responses``...).
"""

from __future__ import annotations

import dataclasses
import types
import typing
from functools import cache
from typing import Any

from kio.schema.errors import ErrorCode

from .build import mk, response_class

# response collection -> request collections it mirrors, first present wins
_MIRRORS: dict[str, tuple[str, ...]] = {
    "responses": ("topic_data", "topics", "topic_names", "resources"),
    "partition_responses": ("partition_data",),
    "topics": ("topics",),
    "partitions": ("partitions", "partition_indexes"),
    "results": ("resources", "topics", "groups_names", "users", "upsertions", "deletions", "creations"),
    "filter_results": ("filters",),
    "entries": ("entries",),
    "entity": ("entity",),
    "coordinators": ("coordinator_keys",),
    "groups": ("groups", "group_ids"),
    "members": ("members",),
    "results_by_topic_v3_and_below": ("v3_and_below_topics",),
    "results_by_partition": ("partitions",),
    "transaction_states": ("transactional_ids",),
}

# identifying response field -> request fields it is copied from, first present wins
_KEYS: dict[str, tuple[str, ...]] = {
    "name": ("name", "topic"),
    "topic": ("topic", "name"),
    "topic_id": ("topic_id",),
    "index": ("index", "partition_index", "partition"),
    "partition_index": ("partition_index", "partition", "index"),
    "group_id": ("group_id",),
    "member_id": ("member_id",),
    "group_instance_id": ("group_instance_id",),
    "key": ("key",),
    "user": ("name",),
    "resource_type": ("resource_type",),
    "resource_name": ("resource_name",),
    "entity_type": ("entity_type",),
    "entity_name": ("entity_name",),
    "transactional_id": ("transactional_id",),
}

# fields Kafka answers with -1 ("unknown") rather than 0 when there is no value
_UNKNOWN = frozenset({
    "base_offset", "offset", "committed_offset", "high_watermark", "last_stable_offset", "log_start_offset",
    "timestamp", "leader_id", "leader_epoch", "committed_leader_epoch", "node_id", "generation_id",
    "producer_id", "producer_epoch", "preferred_read_replica",
})


def error_response(api_key: int, api_version: int, request: Any, code: int, message: str | None = None) -> Any:
    """The ``api_key``/``api_version`` response telling the client ``code`` for everything it asked."""
    return _build(response_class(api_key, api_version), request, ErrorCode(code), message)


def _build(cls: Any, source: Any, code: ErrorCode, message: str | None) -> Any:
    values: dict[str, Any] = {}
    scalar_key_done = False
    for name, element in _shape(cls):
        if name in ("error_code", "partition_error_code"):
            values[name] = code
        elif name == "error_message":
            values[name] = message
        elif name in _UNKNOWN:
            values[name] = -1
        elif element is not None:
            items = _request_items(source, name)
            values[name] = tuple(_build(element, item, code, message) for item in items)
        elif name in _KEYS:
            if _is_entity(source):
                for field in _KEYS[name]:
                    if hasattr(source, field):
                        values[name] = getattr(source, field)
                        break
            elif source is not None and not scalar_key_done:
                values[name] = source  # the request listed bare names or indexes
                scalar_key_done = True
    return mk(cls, **values)


def _request_items(source: Any, response_field: str) -> tuple[Any, ...]:
    if not _is_entity(source):
        return ()
    for field in _MIRRORS.get(response_field, ()):
        items = getattr(source, field, None)
        if items:  # the first non-empty one: AlterUserScramCredentials has upsertions and deletions
            return tuple(items)
    return ()


def _is_entity(value: Any) -> bool:
    return dataclasses.is_dataclass(value) and not isinstance(value, type)


@cache
def _shape(cls: Any) -> tuple[tuple[str, Any], ...]:
    """(field name, entity class of its elements or None) for each field of a response entity."""
    hints = typing.get_type_hints(cls)
    out = []
    for f in dataclasses.fields(cls):
        element = None
        hint = hints[f.name]
        args = [a for a in typing.get_args(hint) if a is not type(None)] if _is_union(hint) else [hint]
        if len(args) == 1 and typing.get_origin(args[0]) is tuple:
            inner = typing.get_args(args[0])[0]
            if dataclasses.is_dataclass(inner):
                element = inner
        out.append((f.name, element))
    return tuple(out)


def _is_union(hint: Any) -> bool:
    return isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union
