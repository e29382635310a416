"""ApiVersions tells the truth: every version of every API a broker advertises is answered.

Client tests exercise the versions real clients pick; this sweep covers the
rest. For each (API, version) in the broker's own ApiVersions answer it sends
the smallest well-formed request of exactly that version on a fresh
connection (required fields at their zero value: no topics, no groups, empty
names), and checks what a client would rely on: an answer arrives, it decodes
with that version's response schema, its correlation id is the request's, and
no error in it says UNSUPPORTED_VERSION or UNKNOWN_SERVER_ERROR (a handler
that failed). An error such as INVALID_GROUP_ID for the empty name is an
answer, and fine here. One version above each maximum
must get UNSUPPORTED_VERSION (or, for ApiVersions, the v0 answer Kafka gives).
"""

from __future__ import annotations

import dataclasses
import datetime
import io
import socket
import types
import typing
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from kio.index import load_request_schema, load_response_schema
from kio.schema.errors import ErrorCode
from kio.serial import entity_reader, entity_writer
from kio.static.primitive import i16, i32

from tests.infra.broker import BrokerProcess
from tests.infra.frames import read_frame, send_frame

# Zero values a request cannot take without changing what the broker must do.
OVERRIDES: dict[str, Any] = {
    "acks": -1,  # acks=0 means "send no answer"
    "client_software_name": "sweep",
    "client_software_version": "1",
}


def zero(tp: Any) -> Any:
    """The smallest value of a kio field type: None, (), 0, "", a zero UUID, or a nested entity of zeros."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        return None if type(None) in typing.get_args(tp) else zero(typing.get_args(tp)[0])
    if origin is tuple:
        return ()
    if origin is typing.Annotated:
        return zero(typing.get_args(tp)[0])
    base = getattr(tp, "__supertype__", tp)  # NewType (TopicName, GroupId, ...)
    if base is not tp:
        return zero(base)
    if dataclasses.is_dataclass(tp):
        return build(tp)  # type: ignore[arg-type]
    if getattr(tp, "__name__", "").endswith("Timedelta"):
        return datetime.timedelta(0)
    if isinstance(tp, type):
        if issubclass(tp, bool):
            return False
        if issubclass(tp, datetime.timedelta):
            return tp(0)
        if issubclass(tp, int):
            return tp(0)
        if issubclass(tp, float):
            return tp(0.0)
        if issubclass(tp, str):
            return tp("")
        if issubclass(tp, bytes):
            return b""
        if issubclass(tp, uuid.UUID):
            return uuid.UUID(int=0)
    raise TypeError(f"no zero value for {tp!r}")


def build(schema: type) -> Any:
    hints = typing.get_type_hints(schema, include_extras=True)
    fields: dict[str, Any] = {}
    for f in dataclasses.fields(schema):  # type: ignore[arg-type]
        if f.name in OVERRIDES:
            fields[f.name] = type(zero(hints[f.name]))(OVERRIDES[f.name]) if not isinstance(
                OVERRIDES[f.name], str) else OVERRIDES[f.name]
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            fields[f.name] = zero(hints[f.name])
    return schema(**fields)


def call(broker: BrokerProcess, api: int, version: int, correlation: int = 7) -> bytes:
    schema = load_request_schema(api, version)
    header = schema.__header_schema__(request_api_key=i16(api), request_api_version=i16(version),
                                       correlation_id=i32(correlation), client_id="sweep")
    buf = io.BytesIO()
    entity_writer(schema.__header_schema__)(buf, header)
    entity_writer(schema)(buf, build(schema))
    with socket.create_connection(("127.0.0.1", broker.kafka_port), timeout=20) as sock:
        send_frame(sock, buf.getvalue())
        return read_frame(sock)


def decode(api: int, version: int, frame: bytes) -> tuple[int, Any]:
    cls = load_response_schema(api, version)
    header, off = entity_reader(cls.__header_schema__)(frame, 0)
    body, _ = entity_reader(cls)(frame, off)
    return int(header.correlation_id), body


def error_codes(value: Any) -> Iterator[int]:
    """Every ``error_code`` anywhere in a response."""
    if dataclasses.is_dataclass(value):
        for f in dataclasses.fields(value):
            v = getattr(value, f.name)
            if f.name == "error_code":
                yield int(v)
            else:
                yield from error_codes(v)
    elif isinstance(value, tuple):
        for item in value:
            yield from error_codes(item)


def advertised(broker: BrokerProcess) -> dict[int, tuple[int, int]]:
    _, body = decode(18, 3, call(broker, 18, 3))
    assert body.error_code == ErrorCode.none
    return {int(k.api_key): (int(k.min_version), int(k.max_version)) for k in body.api_keys}


@pytest.fixture
def broker(brokers, file_store) -> BrokerProcess:  # type: ignore[no-untyped-def]
    return brokers(file_store)


def test_every_advertised_version_of_every_api_is_answered(broker: BrokerProcess) -> None:
    table = advertised(broker)
    assert len(table) > 40
    failures: list[str] = []
    answered = 0
    for api, (low, high) in sorted(table.items()):
        for version in range(low, high + 1):
            try:
                correlation, body = decode(api, version, call(broker, api, version))
            except Exception as exc:  # noqa: BLE001 (collected, reported together)
                failures.append(f"api {api} v{version}: {exc!r}")
                continue
            if correlation != 7:
                failures.append(f"api {api} v{version}: correlation id {correlation}")
            elif ErrorCode.unsupported_version in set(error_codes(body)):
                failures.append(f"api {api} v{version}: advertised but answered UNSUPPORTED_VERSION")
            elif ErrorCode.unknown_server_error in set(error_codes(body)):
                failures.append(f"api {api} v{version}: the handler failed (UNKNOWN_SERVER_ERROR)")
            else:
                answered += 1
    assert not failures, "\n".join(failures)
    assert answered == sum(high - low + 1 for low, high in table.values())


def test_one_version_above_each_maximum_is_refused_as_kafka_does(broker: BrokerProcess) -> None:
    """ApiVersions gets a v0 answer with UNSUPPORTED_VERSION (so the client can retry lower); any
    other API at a version not advertised closes that connection (Kafka's answer), never a hang."""
    table = advertised(broker)
    failures: list[str] = []
    for api, (_, high) in sorted(table.items()):
        try:
            load_request_schema(api, high + 1)
        except Exception:  # noqa: BLE001 (kio has no schema that new: nothing to send)
            continue
        try:
            frame = call(broker, api, high + 1)
        except ConnectionError:
            if api == 18:
                failures.append("ApiVersions above its maximum closed the connection")
            continue
        except TimeoutError:
            failures.append(f"api {api} v{high + 1}: no answer and the connection stayed open")
            continue
        if api != 18:
            failures.append(f"api {api} v{high + 1}: answered a version it does not advertise")
            continue
        _, body = decode(18, 0, frame)
        if body.error_code != ErrorCode.unsupported_version:
            failures.append(f"ApiVersions v{high + 1}: error {body.error_code}")
    assert not failures, "\n".join(failures)
