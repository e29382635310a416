"""Talk to a Dispatcher the way a client talks to a broker: encoded request bytes in, decoded response out.

No sockets: a request is encoded with ``kio`` exactly as it would go on the
wire (header included, size prefix stripped as the connection does), handed
to the real :class:`~floe_broker.dispatch.Dispatcher`, and the frame it
returns is decoded with ``kio`` as a client would.
"""

from __future__ import annotations

import dataclasses
import io
import struct
import typing
from typing import Any

from kio.index import load_request_schema
from kio.serial import entity_reader, entity_writer
from kio.static.primitive import i16, i32

from floe_broker.dispatch import Dispatcher
from floe_broker.protocol.build import mk, response_class

PEER = "127.0.0.1:40000"


def encode_request(api_key: int, version: int, body: Any, correlation_id: int = 1,
                   client_id: str = "inprocess") -> bytes:
    """A request frame as a client sends it, without the 4-byte size prefix."""
    schema = load_request_schema(api_key, version)
    header = schema.__header_schema__(request_api_key=i16(api_key), request_api_version=i16(version),
                                       correlation_id=i32(correlation_id), client_id=client_id)
    buf = io.BytesIO()
    entity_writer(schema.__header_schema__)(buf, header)
    entity_writer(schema)(buf, body)
    return buf.getvalue()


def decode_response(api_key: int, version: int, parts: list[Any]) -> tuple[int, Any]:
    """(correlation id, body) of a response frame as the dispatcher returns it (size-prefixed parts)."""
    raw = b"".join(bytes(p) for p in parts)
    (size,) = struct.unpack_from(">i", raw, 0)
    assert size == len(raw) - 4, "the size prefix must match the frame"
    raw = raw[4:]
    cls = response_class(api_key, version)
    header, header_size = entity_reader(cls.__header_schema__)(raw, 0)
    body, body_size = entity_reader(cls)(raw, header_size)
    assert header_size + body_size == len(raw), "no trailing bytes after the response body"
    return int(header.correlation_id), body


async def call(dispatcher: Dispatcher, api_key: int, version: int, body: Any, correlation_id: int = 1) -> Any:
    """Send one request through the dispatcher and return the decoded response body."""
    parts = await dispatcher(encode_request(api_key, version, body, correlation_id), PEER)
    assert parts is not None, "expected a response"
    corr, decoded = decode_response(api_key, version, parts)
    assert corr == correlation_id
    return decoded


def request(api_key: int, version: int, **fields: Any) -> Any:
    """A request entity with the given fields; nested entities are built from dicts."""
    return _entity(load_request_schema(api_key, version), fields)


def _entity(cls: Any, fields: dict[str, Any]) -> Any:
    hints = typing.get_type_hints(cls)
    values: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        if f.name not in fields:
            continue
        value = fields[f.name]
        element = _element_type(hints[f.name])
        if element is not None and value is not None:
            value = tuple(_entity(element, v) if isinstance(v, dict) else v for v in value)
        values[f.name] = value
    return mk(cls, **values)  # fields not given get the protocol's neutral value


def _element_type(hint: Any) -> Any:
    for candidate in (hint, *typing.get_args(hint)):
        if typing.get_origin(candidate) is tuple:
            inner = typing.get_args(candidate)[0]
            return inner if dataclasses.is_dataclass(inner) else None
    return None


