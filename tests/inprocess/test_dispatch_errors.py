"""A handler that fails answers that request with an error, and the connection carries on.

For every API and version in the dispatch table the handler is forced to
raise; the response must decode (kio, the same schemas clients use), carry
UNKNOWN_SERVER_ERROR wherever the client looks for an error (top level, or
every topic/partition/group/resource it asked about), and the next request
on the same connection must be served.
"""

from __future__ import annotations

import asyncio
import dataclasses
import socket
import struct
import typing
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from kio.index import load_request_schema
from kio.schema.errors import ErrorCode

from floe_broker.cluster.metadata import ClusterState
from floe_broker.config import BrokerConfig
from floe_broker.dispatch import Dispatcher
from floe_broker.errors import TopicError
from floe_broker.protocol.build import mk
from floe_broker.server.conn import Connection
from tests.inprocess.wire import decode_response, encode_request

API_VERSIONS, PRODUCE, METADATA = 18, 0, 3


def sample(cls: Any) -> Any:
    """A request entity with one element in every collection (so the error response has entries to mirror)."""
    hints = typing.get_type_hints(cls)
    values: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        element = _element(hints[f.name])
        if element is None:
            continue
        if dataclasses.is_dataclass(element):
            values[f.name] = (sample(element),)
        elif element is str or (isinstance(element, type) and issubclass(element, str)):
            values[f.name] = ("x",)
        elif isinstance(element, type) and issubclass(element, int):
            values[f.name] = (element(0),)
    for name, value in (("name", "x"), ("topic", "x"), ("group_id", "g"), ("acks", -1),
                        ("resource_name", "x"), ("key", "g"), ("member_id", "m")):
        if name in {f.name for f in dataclasses.fields(cls)} and name not in values:
            values[name] = value
    return mk(cls, **values)


def _element(hint: Any) -> Any:
    for candidate in (hint, *typing.get_args(hint)):
        if typing.get_origin(candidate) is tuple:
            return typing.get_args(candidate)[0]
    return None


def error_codes(entity: Any) -> Iterator[int]:
    """Every error_code in a decoded response, at any depth."""
    if not dataclasses.is_dataclass(entity):
        return
    for f in dataclasses.fields(entity):
        value = getattr(entity, f.name)
        if f.name in ("error_code", "partition_error_code"):  # AddPartitionsToTxn names it so
            yield int(value)
        elif isinstance(value, tuple):
            for item in value:
                yield from error_codes(item)


class _Idle:
    """Just enough context for the dispatcher's own checks (authorizer off, no quotas); handlers never use it."""

    config = BrokerConfig(storage="memory://")

    @staticmethod
    def state() -> ClusterState:
        return ClusterState()


IDLE: Any = _Idle()


def all_versions() -> list[tuple[int, int]]:
    table = Dispatcher(ctx=IDLE).table
    return [(key, v) for key, (lo, hi, _) in sorted(table.items()) for v in range(lo, hi + 1)]


def failing(exc: Exception) -> Any:
    async def handler(ctx: Any, version: int, req: Any) -> Any:
        raise exc

    return handler


def break_handler(d: Dispatcher, api_key: int, exc: Exception) -> None:
    lo, hi, _ = d.table[api_key]
    d.table[api_key] = (lo, hi, failing(exc))


@pytest.mark.parametrize(("api_key", "version"), all_versions())
async def test_a_failing_handler_answers_unknown_server_error(api_key: int, version: int) -> None:
    d = Dispatcher(ctx=IDLE)  # the failing handler never touches it
    break_handler(d, api_key, RuntimeError("bug"))
    body = sample(load_request_schema(api_key, version))
    parts = await d(encode_request(api_key, version, body, correlation_id=41), "127.0.0.1:1")
    assert parts is not None
    corr, response = decode_response(api_key, version, parts)
    assert corr == 41
    codes = list(error_codes(response))
    assert codes, f"no error code anywhere in {response}"
    assert set(codes) == {ErrorCode.unknown_server_error}, response


async def test_entries_mirror_the_request() -> None:
    """Per-entry errors name the entries the client asked about, so it can match them."""
    d = Dispatcher(ctx=IDLE)
    break_handler(d, PRODUCE, RuntimeError("bug"))
    topic_id = uuid.uuid4()
    body = mk(load_request_schema(PRODUCE, 13), acks=-1, topic_data=(
        mk(_topic_data_cls(13), topic_id=topic_id, partition_data=(_partition(13, 3), _partition(13, 5))),))
    parts = await d(encode_request(PRODUCE, 13, body), "127.0.0.1:1")
    assert parts is not None
    _, response = decode_response(PRODUCE, 13, parts)
    (topic,) = response.responses
    assert topic.topic_id == topic_id
    assert [(p.index, p.error_code, p.base_offset) for p in topic.partition_responses] == [
        (3, ErrorCode.unknown_server_error, -1), (5, ErrorCode.unknown_server_error, -1)]


def _topic_data_cls(version: int) -> Any:
    return _element(typing.get_type_hints(load_request_schema(PRODUCE, version))["topic_data"])


def _partition(version: int, index: int) -> Any:
    cls = _element(typing.get_type_hints(_topic_data_cls(version))["partition_data"])
    return mk(cls, index=index, records=b"")


async def test_a_kafka_error_escaping_a_handler_keeps_its_code() -> None:
    d = Dispatcher(ctx=IDLE)
    break_handler(d, METADATA, TopicError(ErrorCode.policy_violation, "not allowed"))
    body = sample(load_request_schema(METADATA, 12))
    parts = await d(encode_request(METADATA, 12, body), "127.0.0.1:1")
    assert parts is not None
    _, response = decode_response(METADATA, 12, parts)
    assert [t.error_code for t in response.topics] == [ErrorCode.policy_violation]


async def test_acks_zero_produce_that_fails_gets_no_response() -> None:
    d = Dispatcher(ctx=IDLE)
    break_handler(d, PRODUCE, RuntimeError("bug"))
    body = mk(load_request_schema(PRODUCE, 9), acks=0)
    assert await d(encode_request(PRODUCE, 9, body), "127.0.0.1:1") is None


async def test_the_connection_serves_the_next_request_after_a_failure() -> None:
    """Through the real Connection: the failed request is answered, then ApiVersions on the same socket."""
    d = Dispatcher(ctx=IDLE)
    break_handler(d, PRODUCE, RuntimeError("bug"))
    server_sock, client_sock = socket.socketpair()
    reader, writer = await asyncio.open_connection(sock=server_sock)
    conn = Connection(reader, writer, d, max_request_bytes=1 << 20, max_inflight=8, idle_timeout=30)
    serving = asyncio.create_task(conn.serve())
    creader, cwriter = await asyncio.open_connection(sock=client_sock)
    try:
        produce = encode_request(PRODUCE, 9, sample(load_request_schema(PRODUCE, 9)), correlation_id=1)
        versions = encode_request(API_VERSIONS, 3, mk(load_request_schema(API_VERSIONS, 3),
                                                      client_software_name="t", client_software_version="1"),
                                  correlation_id=2)
        cwriter.write(struct.pack(">i", len(produce)) + produce + struct.pack(">i", len(versions)) + versions)
        await cwriter.drain()
        first = await _read_frame(creader)
        corr, failed = decode_response(PRODUCE, 9, [first])
        assert corr == 1
        assert failed.responses[0].partition_responses[0].error_code == ErrorCode.unknown_server_error
        corr, ok = decode_response(API_VERSIONS, 3, [await _read_frame(creader)])
        assert corr == 2 and ok.error_code == ErrorCode.none and ok.api_keys
    finally:
        cwriter.close()
        await asyncio.wait_for(serving, 10)


async def _read_frame(reader: asyncio.StreamReader) -> bytes:
    head = await asyncio.wait_for(reader.readexactly(4), 10)
    (size,) = struct.unpack(">i", head)
    return head + await asyncio.wait_for(reader.readexactly(size), 10)
