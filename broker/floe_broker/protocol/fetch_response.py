"""Fetch responses encoded straight to bytes, for every Fetch version Floe serves (4-17).

A Fetch answer to a consumer of many partitions is mostly small fixed-size
partition headers around opaque record batches. Building a ``kio`` entity per
partition and letting kio's generic writer walk its fields (with a scratch
``BytesIO`` per flexible entity for its tagged fields, and dataclass equality
checks against their defaults) cost the broker more CPU than reading the
records did. Here each partition is a slotted object with the fields the
handler and the fetch sessions read, and its header is packed with one
precompiled ``struct`` layout per version; record batches stay memoryviews,
spliced into the frame by reference (``codec.RecordsViews``).

The bytes are exactly kio's for the same response (``tests/server/test_fetch_response.py``
compares them field by field over every version): the tagged fields Floe never
sets (diverging epoch, current leader, snapshot id, node endpoints) are absent,
as kio leaves out fields at their defaults.
"""

from __future__ import annotations

import struct
import uuid
from dataclasses import dataclass

from kio.schema.errors import ErrorCode

from .codec import RecordsViews, SelfEncoding

ZERO_UUID = uuid.UUID(int=0)
FIRST_FLEXIBLE = 12  # Fetch v12: compact arrays and strings, tagged fields
FIRST_TOPIC_ID = 13  # Fetch v13: topics by id instead of by name
FIRST_SESSION = 7  # Fetch v7: top-level error code and session id
FIRST_LOG_START = 5  # Fetch v5: log_start_offset
FIRST_PREFERRED_REPLICA = 11  # Fetch v11: preferred_read_replica
NO_TAGS = b"\x00"
NO_REPLICA = -1

_I16 = struct.Struct(">h")
_I32 = struct.Struct(">i")
_I32_I16_I32 = struct.Struct(">ihi")  # throttle_time_ms, error_code, session_id
_ABORTED = struct.Struct(">qq")  # producer_id, first_offset
_ABORTED_FLEXIBLE = struct.Struct(">qqB")  # ... and the entry's empty tagged fields
_SMALL_UVARINTS = [bytes((n,)) for n in range(128)]


def uvarint(n: int) -> bytes:
    """Kafka's unsigned varint (compact lengths are ``len + 1``)."""
    if n < 128:
        return _SMALL_UVARINTS[n]
    out = bytearray()
    while n >= 128:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


@dataclass(slots=True)
class PartitionAnswer:
    """One partition of a Fetch answer, under the names ``fetch_sessions`` reads."""

    partition_index: int
    error_code: ErrorCode = ErrorCode.none
    high_watermark: int = -1
    last_stable_offset: int = -1
    log_start_offset: int = -1
    aborted_transactions: tuple[tuple[int, int], ...] | None = None  # (producer_id, first_offset)
    records: RecordsViews | bytes | None = b""


@dataclass(slots=True)
class TopicAnswer:
    topic: str
    topic_id: uuid.UUID
    partitions: tuple[PartitionAnswer, ...]


@dataclass(slots=True)
class FetchAnswer(SelfEncoding):
    """A whole Fetch response body; ``codec.encode_response`` asks it for its bytes."""

    error_code: ErrorCode = ErrorCode.none
    session_id: int = 0
    responses: tuple[TopicAnswer, ...] = ()
    throttle_time: int = 0  # ms (``quota_gate.with_throttle`` sets it)

    def encode_body(self, version: int) -> list[bytes | bytearray | memoryview]:
        return encode(self, version)


@dataclass(frozen=True, slots=True)
class _Layout:
    """What one Fetch version's partition entry looks like."""

    flexible: bool
    by_id: bool
    sessions: bool
    head: struct.Struct  # partition_index, error_code, high_watermark, last_stable_offset[, log_start_offset]
    head_null_aborted: struct.Struct  # the head, a null aborted list[, preferred_read_replica]
    log_start: bool
    preferred: bool


def _layout(version: int) -> _Layout:
    flexible = version >= FIRST_FLEXIBLE
    log_start = version >= FIRST_LOG_START
    preferred = version >= FIRST_PREFERRED_REPLICA
    head = ">ihqq" + ("q" if log_start else "")
    null_aborted = head + ("B" if flexible else "i") + ("i" if preferred else "")
    return _Layout(flexible, version >= FIRST_TOPIC_ID, version >= FIRST_SESSION, struct.Struct(head),
                   struct.Struct(null_aborted), log_start, preferred)


_LAYOUTS = {v: _layout(v) for v in range(4, 18)}
_NULL_ARRAY = {True: 0, False: -1}  # compact null is length 0, legacy null is -1


def encode(answer: FetchAnswer, version: int) -> list[bytes | bytearray | memoryview]:
    """The response body as parts: small fields coalesced, record batches by reference."""
    lay = _LAYOUTS[version]
    flexible = lay.flexible
    parts: list[bytes | bytearray | memoryview] = []
    buf = bytearray()
    if lay.sessions:
        buf += _I32_I16_I32.pack(answer.throttle_time, answer.error_code, answer.session_id)
    else:
        buf += _I32.pack(answer.throttle_time)
    topics = answer.responses
    buf += uvarint(len(topics) + 1) if flexible else _I32.pack(len(topics))
    null = _NULL_ARRAY[flexible]
    for topic in topics:
        if lay.by_id:
            buf += (topic.topic_id or ZERO_UUID).bytes
        else:
            name = topic.topic.encode()
            buf += uvarint(len(name) + 1) if flexible else _I16.pack(len(name))
            buf += name
        partitions = topic.partitions
        buf += uvarint(len(partitions) + 1) if flexible else _I32.pack(len(partitions))
        for p in partitions:
            aborted = p.aborted_transactions
            if aborted is None:
                fields = [p.partition_index, p.error_code, p.high_watermark, p.last_stable_offset]
                if lay.log_start:
                    fields.append(p.log_start_offset)
                fields.append(null)
                if lay.preferred:
                    fields.append(NO_REPLICA)
                buf += lay.head_null_aborted.pack(*fields)
            else:
                if lay.log_start:
                    buf += lay.head.pack(p.partition_index, p.error_code, p.high_watermark,
                                         p.last_stable_offset, p.log_start_offset)
                else:
                    buf += lay.head.pack(p.partition_index, p.error_code, p.high_watermark, p.last_stable_offset)
                if flexible:
                    buf += uvarint(len(aborted) + 1)
                    for pid, first in aborted:
                        buf += _ABORTED_FLEXIBLE.pack(pid, first, 0)
                else:
                    buf += _I32.pack(len(aborted))
                    for pid, first in aborted:
                        buf += _ABORTED.pack(pid, first)
                if lay.preferred:
                    buf += _I32.pack(NO_REPLICA)
            records = p.records
            if records is None:
                buf += uvarint(0) if flexible else _I32.pack(-1)
            else:
                size = len(records)
                buf += uvarint(size + 1) if flexible else _I32.pack(size)
                if size:
                    if isinstance(records, RecordsViews):
                        parts.append(buf)
                        parts.extend(records.views)
                        buf = bytearray()
                    else:
                        buf += records
            if flexible:
                buf += NO_TAGS
        if flexible:
            buf += NO_TAGS
    if flexible:
        buf += NO_TAGS
    parts.append(buf)
    return parts
