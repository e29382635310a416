"""Build ``kio`` response entities for whichever API version was asked.

Response schemas differ per version (fields come and go), so handlers call
``mk(cls, **fields)`` with everything they know; fields the version lacks are
dropped and required fields not given get the protocol's neutral value.
Nested entity classes are looked up by name in the response's own module
with :func:`nested`.
"""

from __future__ import annotations

import dataclasses
import datetime
import sys
import types
import typing
import uuid
from functools import cache
from typing import Any

from kio.index import load_response_schema
from kio.schema.errors import ErrorCode

ZERO_UUID = uuid.UUID(int=0)
EPOCH = datetime.datetime.fromtimestamp(0, datetime.UTC)
# A timestamp that encodes as -1, Kafka's "no time" (a transaction that has not started); kio cannot decode it
NO_TIME = datetime.datetime.fromtimestamp(-0.001, datetime.UTC)


@cache
def response_class(api_key: int, version: int) -> Any:
    return load_response_schema(api_key, version)


def nested(response_cls: Any, name: str) -> Any:
    return getattr(sys.modules[response_cls.__module__], name)


@cache
def _field_defaults(cls: Any) -> tuple[frozenset[str], dict[str, Any]]:
    names = set()
    missing: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        names.add(f.name)
        if f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING:
            continue
        missing[f.name] = _neutral(f)
    return frozenset(names), missing


def _neutral(f: dataclasses.Field[Any]) -> Any:
    kind = f.metadata.get("kafka_type")
    t = f.type
    if _is_optional(t):
        return None
    if kind == "error_code":
        return ErrorCode.none
    if kind in {"int8", "int16", "int32", "int64", "uint16", "uint32", "float64"}:
        return 0
    if kind == "timedelta_i32" or kind == "timedelta_i64":
        return datetime.timedelta(0)
    if kind == "datetime_i64":
        return EPOCH
    if kind == "bool":
        return False
    if kind == "string":
        return ""
    if kind == "uuid":
        return ZERO_UUID
    if kind in {"bytes", "records"}:
        return b""
    if typing.get_origin(t) is tuple:
        return ()
    return None


def _is_optional(t: Any) -> bool:
    return isinstance(t, types.UnionType) and type(None) in typing.get_args(t)


def mk(cls: Any, **kwargs: Any) -> Any:
    names, missing = _field_defaults(cls)
    values = {k: v for k, v in kwargs.items() if k in names}
    for k, v in missing.items():
        values.setdefault(k, v)
    return cls(**values)


def has_field(cls: Any, name: str) -> bool:
    return name in _field_defaults(cls)[0]
