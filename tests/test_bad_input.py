"""Bad input: a clear error or a closed connection, and nobody else notices.

After every abuse the same broker must still serve a real client on a new
connection, and a connection opened *before* the abuse must keep working.
"""

from __future__ import annotations

import io
import socket
import struct
import uuid

import pytest
from confluent_kafka import KafkaError, Producer
from kio.schema.errors import ErrorCode
from kio.serial import entity_reader, entity_writer

from floe_broker import errors
from floe_broker.protocol import codec
from floe_broker.protocol.build import response_class
from tests.infra.batches import record_batch
from tests.infra.broker import BrokerProcess
from tests.infra.frames import read_frame, send_frame
from tests.test_clients import consume_exactly, create_topic, produce_all


def raw_request(sock: socket.socket, api_key: int, version: int, body: object, correlation_id: int = 1) -> bytes:
    from kio.index import load_request_schema
    from kio.static.primitive import i16, i32

    schema = load_request_schema(api_key, version)
    header = schema.__header_schema__(request_api_key=i16(api_key), request_api_version=i16(version),
                                       correlation_id=i32(correlation_id), client_id="raw-test")
    buf = io.BytesIO()
    entity_writer(schema.__header_schema__)(buf, header)
    entity_writer(schema)(buf, body)
    frame = buf.getvalue()
    send_frame(sock, frame)
    return read_frame(sock)


def connect(broker: BrokerProcess) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", broker.kafka_port), timeout=10)
    return s


def assert_closed(sock: socket.socket) -> None:
    sock.settimeout(10)
    try:
        data = sock.recv(1)
    except ConnectionResetError:
        return
    assert data == b"", "connection should have been closed by the broker"


def api_versions_ok(sock: socket.socket) -> bool:
    from kio.schema.api_versions.v3.request import ApiVersionsRequest

    raw = raw_request(sock, 18, 3, ApiVersionsRequest(client_software_name="t", client_software_version="1"))
    cls = response_class(18, 3)
    header, off = entity_reader(cls.__header_schema__)(raw, 0)
    body, _ = entity_reader(cls)(raw, off)
    return body.error_code == ErrorCode.none and any(k.api_key == 0 for k in body.api_keys)


@pytest.fixture
def one_broker(brokers, file_store):  # type: ignore[no-untyped-def]
    return brokers(file_store, "--socket-request-max-bytes", str(1024 * 1024), "--auto-create-topics", "false")


def still_serves(broker: BrokerProcess, bystander: socket.socket) -> None:
    assert api_versions_ok(bystander), "an unrelated connection stopped working"
    topic = f"ok-{uuid.uuid4().hex[:6]}"
    create_topic(broker.bootstrap, topic)
    produce_all(broker.bootstrap, [(topic, 0, None, b"still alive", None, None)])
    assert consume_exactly(broker.bootstrap, topic, 0, 0, 1)[0].value() == b"still alive"


@pytest.mark.parametrize(
    "payload",
    [
        pytest.param(struct.pack(">i", 2) + b"\x00\x00", id="truncated-header"),
        pytest.param(struct.pack(">i", 12) + struct.pack(">hhi", 9999, 0, 1) + b"\0\0\0\0", id="unknown-api-key"),
        pytest.param(struct.pack(">i", 10) + struct.pack(">hhi", 3, 12, 1) + b"\xff\xff", id="garbage-metadata"),
        pytest.param(struct.pack(">i", 64 * 1024 * 1024) + b"x" * 100, id="over-request-max-bytes"),
        pytest.param(struct.pack(">i", -5), id="negative-size"),
        pytest.param(struct.pack(">i", 10) + struct.pack(">hhi", 0, 99, 1) + b"\0\0", id="unsupported-produce-version"),
    ],
)
def test_malformed_frames_close_only_that_connection(one_broker: BrokerProcess, payload: bytes) -> None:
    bystander = connect(one_broker)
    bad = connect(one_broker)
    bad.sendall(payload)
    assert_closed(bad)
    still_serves(one_broker, bystander)
    assert "bad frame" in one_broker.log_text() or "bad request" in one_broker.log_text()


def test_unsupported_api_versions_version_gets_v0_error(one_broker: BrokerProcess) -> None:
    s = connect(one_broker)
    frame = struct.pack(">hhi", 18, 99, 7) + b"\x00\x00"  # client id "" (non-flexible guess)
    s.sendall(struct.pack(">i", len(frame)) + frame)
    raw = read_frame(s)
    corr, error = struct.unpack_from(">ih", raw, 0)
    assert corr == 7
    assert error == ErrorCode.unsupported_version
    assert api_versions_ok(s), "the client can retry ApiVersions at a supported version"


def _batch_frame(topic: str, records: bytes) -> object:
    import datetime

    from kio.schema.produce.v9.request import PartitionProduceData, ProduceRequest, TopicProduceData
    from kio.static.primitive import Records, i16, i32

    return ProduceRequest(acks=i16(-1), timeout=datetime.timedelta(seconds=5), topic_data=(
        TopicProduceData(name=topic, partition_data=(PartitionProduceData(index=i32(0), records=Records(records)),)),))


def _produce_error(sock: socket.socket, topic: str, records: bytes) -> int:
    raw = raw_request(sock, 0, 9, _batch_frame(topic, records))
    cls = response_class(0, 9)
    _, off = entity_reader(cls.__header_schema__)(raw, 0)
    body, _ = entity_reader(cls)(raw, off)
    return int(body.responses[0].partition_responses[0].error_code)


def _valid_batch(key: bytes = b"k", value: bytes = b"v") -> bytes:
    return record_batch(value, key)


def test_bad_crc_is_corrupt_message_and_nothing_is_stored(one_broker: BrokerProcess) -> None:
    topic = f"crc-{uuid.uuid4().hex[:6]}"
    create_topic(one_broker.bootstrap, topic)
    good = bytearray(_valid_batch())
    good[-1] ^= 0xFF  # flip a byte under the CRC
    s = connect(one_broker)
    assert _produce_error(s, topic, bytes(good)) == ErrorCode.corrupt_message
    assert _produce_error(s, topic, b"\x00" * 30) == ErrorCode.corrupt_message  # truncated
    # the same connection keeps working, and the bad batch is not in the log
    assert _produce_error(s, topic, _valid_batch()) == ErrorCode.none
    got = consume_exactly(one_broker.bootstrap, topic, 0, 0, 1)
    assert got[0].offset() == 0 and got[0].value() == b"v"


def test_record_over_max_message_bytes(one_broker: BrokerProcess) -> None:
    topic = f"big-{uuid.uuid4().hex[:6]}"
    create_topic(one_broker.bootstrap, topic, config={"max.message.bytes": "2000"})
    p = Producer({"bootstrap.servers": one_broker.bootstrap, "linger.ms": 0, "message.max.bytes": 100000})
    errors: list[KafkaError] = []
    p.produce(topic, value=b"x" * 5000, on_delivery=lambda err, msg: errors.append(err))
    p.flush(30)
    assert errors and errors[0] is not None and errors[0].code() == KafkaError.MSG_SIZE_TOO_LARGE


def test_produce_unknown_topic_without_auto_create(one_broker: BrokerProcess) -> None:
    s = connect(one_broker)
    assert _produce_error(s, "does-not-exist", _valid_batch()) == ErrorCode.unknown_topic_or_partition
    assert api_versions_ok(s)


def test_decoder_never_crashes_on_random_bytes() -> None:
    """Fuzz the pure decoder: every input either decodes or raises FrameError/UnsupportedVersion."""
    from hypothesis import given, settings
    from hypothesis import strategies as st

    supported = {0: (3, 13), 1: (4, 17), 3: (1, 12), 18: (0, 3), 19: (2, 7)}

    @settings(max_examples=3000, deadline=None)
    @given(st.sampled_from(sorted(supported)), st.integers(0, 20), st.binary(max_size=300))
    def check(key: int, version: int, tail: bytes) -> None:
        frame = struct.pack(">hhi", key, version, 1) + tail
        try:
            codec.decode_request(frame, supported)
        except (errors.FrameError, errors.UnsupportedVersion):
            pass

    check()


def _fetch(sock: socket.socket, topic: str, parts: list[tuple[int, int, int]], max_bytes: int) -> object:
    import datetime

    from kio.schema.fetch.v12.request import FetchPartition, FetchRequest, FetchTopic
    from kio.static.primitive import i32, i64

    req = FetchRequest(max_wait=datetime.timedelta(milliseconds=100), min_bytes=i32(1), max_bytes=i32(max_bytes),
                       topics=(FetchTopic(topic=topic, partitions=tuple(
                           FetchPartition(partition=i32(p), fetch_offset=i64(off), partition_max_bytes=i32(pmax))
                           for p, off, pmax in parts)),), forgotten_topics_data=())
    raw = raw_request(sock, 1, 12, req)
    cls = response_class(1, 12)
    _, off = entity_reader(cls.__header_schema__)(raw, 0)
    body, _ = entity_reader(cls)(raw, off)
    return body


def test_fetch_honours_partition_max_bytes_and_max_bytes(one_broker: BrokerProcess) -> None:
    """Whole batches only, within both limits, but never zero when one batch is larger than the limit."""
    from floe_broker.protocol.records import iter_headers

    topic = f"lim-{uuid.uuid4().hex[:6]}"
    create_topic(one_broker.bootstrap, topic, 2)
    s = connect(one_broker)
    one = len(_valid_batch(value=b"v" * 1000))
    for part in (0, 1):
        for i in range(10):  # ten separate produce requests: ten batches per partition
            assert _produce_partition(s, topic, part, _valid_batch(value=bytes([i]) * 1000)) == ErrorCode.none

    body = _fetch(s, topic, [(0, 0, int(one * 2.5))], max_bytes=10 * one)
    recs = body.responses[0].partitions[0].records  # type: ignore[attr-defined]
    assert [h.base_offset for h in iter_headers(recs)] == [0, 1], "partition_max_bytes allows two whole batches"

    body = _fetch(s, topic, [(0, 0, 10 * one), (1, 0, 10 * one)], max_bytes=int(one * 3.5))
    sizes = [len(p.records or b"") for p in body.responses[0].partitions]  # type: ignore[attr-defined]
    assert sum(sizes) <= int(one * 3.5) and sizes[0] == 3 * one, "max_bytes caps the whole response"

    body = _fetch(s, topic, [(0, 4, 10)], max_bytes=10)
    recs = body.responses[0].partitions[0].records  # type: ignore[attr-defined]
    assert [h.base_offset for h in iter_headers(recs)] == [4], "one batch even when it is larger than the limits"


def _produce_partition(sock: socket.socket, topic: str, partition: int, records: bytes) -> int:
    import datetime

    from kio.schema.produce.v9.request import PartitionProduceData, ProduceRequest, TopicProduceData
    from kio.static.primitive import Records, i16, i32

    req = ProduceRequest(acks=i16(-1), timeout=datetime.timedelta(seconds=5), topic_data=(
        TopicProduceData(name=topic, partition_data=(
            PartitionProduceData(index=i32(partition), records=Records(records)),)),))
    raw = raw_request(sock, 0, 9, req)
    cls = response_class(0, 9)
    _, off = entity_reader(cls.__header_schema__)(raw, 0)
    body, _ = entity_reader(cls)(raw, off)
    return int(body.responses[0].partition_responses[0].error_code)
