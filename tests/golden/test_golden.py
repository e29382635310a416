"""Real clients' request frames (captured by ``capture.py``) decode, and our answers to them round-trip.

No sockets: each frame is decoded by ``protocol/codec.py`` and checked for
what its client meant (API, version, client id, topic, group), then handed
to the real Dispatcher over an in-process broker; the response must decode
with ``kio`` and re-encode to the very same bytes.
"""

from __future__ import annotations

import asyncio
import io
import json
from pathlib import Path
from typing import Any

import pytest
from kio.schema.errors import ErrorCode
from kio.serial import entity_reader, entity_writer

from floe_broker.dispatch import Dispatcher
from floe_broker.errors import UnsupportedVersion
from floe_broker.protocol import codec, records
from floe_broker.protocol.build import response_class
from tests.inprocess.harness import started_broker

HERE = Path(__file__).resolve().parent
MANIFEST = json.loads((HERE / "frames.json").read_text())
TOPIC = "golden"
SUPPORTED = Dispatcher(ctx=None).supported  # type: ignore[arg-type]


def frame_of(entry: dict[str, Any]) -> bytes:
    return (HERE / "frames" / entry["file"]).read_bytes()


def ids(entry: dict[str, Any]) -> str:
    return str(entry["file"]).removesuffix(".bin")


def _group(entry: dict[str, Any]) -> str:
    return f"golden-{entry['client']}"


def _check_fields(entry: dict[str, Any], body: Any) -> None:
    """What the client meant by this request, API by API."""
    key, group = entry["api_key"], _group(entry)
    if key == 0:  # Produce
        (topic,) = body.topic_data
        assert entry["api_version"] >= 13 or topic.name == TOPIC
        (part,) = topic.partition_data
        batches = records.scan_batches(part.records, max_batch_bytes=1 << 20)
        assert batches and batches[0].record_count >= 1, "the batch header is valid (CRC checked)"
    elif key == 1:  # Fetch
        assert any(t.topic == TOPIC for t in body.topics) if entry["api_version"] < 13 else body.topics
        assert all(p.partition == 0 for t in body.topics for p in t.partitions)
    elif key == 2:  # ListOffsets
        assert [t.name for t in body.topics] == [TOPIC]
    elif key == 3:  # Metadata
        assert body.topics is None or all(t.name in (TOPIC, None) for t in body.topics)
    elif key == 10:  # FindCoordinator
        wanted = getattr(body, "coordinator_keys", None) or (body.key,)
        assert group in wanted
    elif key == 11:  # JoinGroup
        assert body.group_id == group and body.protocol_type == "consumer" and body.protocols
    elif key in (8, 12, 13, 14):  # OffsetCommit, Heartbeat, LeaveGroup, SyncGroup
        assert body.group_id == group
    elif key == 9:  # OffsetFetch
        groups = [g.group_id for g in body.groups] if hasattr(body, "groups") else [body.group_id]
        assert groups == [group]
    elif key == 18:  # ApiVersions
        assert entry["api_version"] < 3 or body.client_software_name
    elif key == 22:  # InitProducerId
        assert body.transactional_id is None


@pytest.mark.parametrize("entry", MANIFEST, ids=ids)
def test_codec_decodes_what_the_client_sent(entry: dict[str, Any]) -> None:
    frame = frame_of(entry)
    assert codec.peek_header(frame)[:2] == (entry["api_key"], entry["api_version"])
    lo, hi = SUPPORTED[entry["api_key"]]
    if not lo <= entry["api_version"] <= hi:
        with pytest.raises(UnsupportedVersion):  # a client probing a newer version than we serve
            codec.decode_request(frame, SUPPORTED)
        return
    request = codec.decode_request(frame, SUPPORTED)
    assert (request.api_key, request.api_version) == (entry["api_key"], entry["api_version"])
    assert request.client_id == _group(entry)
    _check_fields(entry, request.body)


@pytest.mark.parametrize("entry", MANIFEST, ids=ids)
async def test_our_response_round_trips_through_kio(entry: dict[str, Any]) -> None:
    frame = frame_of(entry)
    _, _, correlation_id = codec.peek_header(frame)
    async with started_broker() as broker:
        await broker.serving.create_topic(TOPIC, 1, {})
        parts = await asyncio.wait_for(Dispatcher(broker.serving)(frame, "127.0.0.1:1"), 10)
    if parts is None:
        assert entry["api_key"] == 0, "only an acks=0 produce goes unanswered"
        return
    raw = b"".join(bytes(p) for p in parts)[4:]
    version = entry["api_version"]
    lo, hi = SUPPORTED[entry["api_key"]]
    if not lo <= version <= hi:
        version = 0  # ApiVersions answers an unknown version in v0, which every client can read
    cls = response_class(entry["api_key"], version)
    header, header_size = entity_reader(cls.__header_schema__)(raw, 0)
    body, body_size = entity_reader(cls)(raw, header_size)
    assert header.correlation_id == correlation_id
    assert header_size + body_size == len(raw)
    again = io.BytesIO()
    entity_writer(cls.__header_schema__)(again, header)
    entity_writer(cls)(again, body)
    assert again.getvalue() == raw, "kio re-encodes our response to the same bytes"
    if version != entry["api_version"]:
        assert body.error_code == ErrorCode.unsupported_version
