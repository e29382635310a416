"""RecordBatch v2 on the hot path: validate, assign offsets, never decode records.

Wire layout of one batch (Kafka ``DefaultRecordBatch``), offsets in bytes::

    0  baseOffset            int64   <- patched by the leader, not under the CRC
    8  batchLength           int32   bytes after this field
    12 partitionLeaderEpoch  int32   <- patched by the leader, not under the CRC
    16 magic                 int8    must be 2
    17 crc                   uint32  CRC-32C of bytes [21, end)
    21 attributes            int16   bits 0-2 codec, 3 timestamp type, 4 transactional, 5 control
    23 lastOffsetDelta       int32
    27 baseTimestamp         int64
    35 maxTimestamp          int64
    43 producerId            int64
    51 producerEpoch         int16
    53 baseSequence          int32
    57 recordsCount          int32
    61 records ...           (possibly compressed; opaque to the broker)

A produce request carries one or more batches back to back. We walk their
12-byte prefixes, check each CRC with the C extension and patch the two
leader-owned fields in a bytearray copy. Compressed batches pass through
untouched: the codec bits are never looked at.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import crc32c

from ..errors import InvalidRecords, RecordsTooLarge

HEADER_SIZE = 61
_PREFIX = struct.Struct(">qi")  # baseOffset, batchLength
_TAIL = struct.Struct(">hiqqqhii")  # attributes .. recordsCount, at offset 21
_I64 = struct.Struct(">q")
_I32 = struct.Struct(">i")
_CRC = struct.Struct(">I")

ATTR_LOG_APPEND_TIME = 0x08
ATTR_TRANSACTIONAL = 0x10
ATTR_CONTROL = 0x20


@dataclass(frozen=True, slots=True)
class BatchInfo:
    """What the leader needs from one batch header; records stay opaque."""

    position: int
    size: int
    last_offset_delta: int
    max_timestamp: int
    base_timestamp: int
    producer_id: int
    producer_epoch: int
    base_sequence: int
    records_count: int
    attributes: int

    @property
    def record_count(self) -> int:
        return self.last_offset_delta + 1


def scan_batches(data: bytes | bytearray | memoryview, *, max_batch_bytes: int) -> list[BatchInfo]:
    """Validate every batch in ``data`` and return their headers.

    Raises InvalidRecords on framing, magic or CRC errors, RecordsTooLarge
    when one batch exceeds ``max_batch_bytes``.
    """
    view = memoryview(data)
    total = len(view)
    pos = 0
    out: list[BatchInfo] = []
    while pos < total:
        if total - pos < HEADER_SIZE:
            raise InvalidRecords(f"truncated batch header at byte {pos}")
        _, length = _PREFIX.unpack_from(view, pos)
        size = 12 + length
        if length < HEADER_SIZE - 12 or pos + size > total:
            raise InvalidRecords(f"bad batch length {length} at byte {pos}")
        if size > max_batch_bytes:
            raise RecordsTooLarge(f"batch of {size} bytes exceeds max.message.bytes={max_batch_bytes}")
        magic = view[pos + 16]
        if magic != 2:
            raise InvalidRecords(f"unsupported record batch magic {magic} (only v2)")
        (crc,) = _CRC.unpack_from(view, pos + 17)
        if crc32c.crc32c(view[pos + 21 : pos + size]) != crc:
            raise InvalidRecords(f"CRC mismatch in batch at byte {pos}")
        attrs, lod, base_ts, max_ts, pid, pepoch, bseq, count = _TAIL.unpack_from(view, pos + 21)
        if lod < 0 or count < 0:
            raise InvalidRecords(f"negative lastOffsetDelta/recordsCount at byte {pos}")
        out.append(BatchInfo(pos, size, lod, max_ts, base_ts, pid, pepoch, bseq, count, attrs))
        pos += size
    if not out:
        raise InvalidRecords("empty record set")
    return out


def assign_offsets(
    data: bytes | bytearray | memoryview, batches: list[BatchInfo], base_offset: int, leader_epoch: int
) -> tuple[bytearray, int]:
    """Copy ``data`` and stamp consecutive offsets and the leader epoch into it.

    Returns the patched bytes and the last offset assigned. Only the two
    fields outside the CRC are written, so the client's CRC stays valid.
    """
    out = bytearray(data)
    offset = base_offset
    for b in batches:
        _I64.pack_into(out, b.position, offset)
        _I32.pack_into(out, b.position + 12, leader_epoch)
        offset += b.record_count
    return out, offset - 1


class OffsetOrderError(InvalidRecords):
    """Batches that carry their own offsets go backwards, or start below the log's next offset."""


def base_offsets(data: bytes | bytearray | memoryview, batches: list[BatchInfo]) -> list[int]:
    """The base offset each batch carries (a linked topic's batches keep the source's)."""
    return [int(_I64.unpack_from(data, b.position)[0]) for b in batches]


def stamp_leader_epoch(
    data: bytes | bytearray | memoryview, batches: list[BatchInfo], leader_epoch: int
) -> tuple[bytearray, list[int]]:
    """Copy ``data`` with this leader's epoch stamped in, offsets untouched; and the batches' base offsets."""
    out = bytearray(data)
    for b in batches:
        _I32.pack_into(out, b.position + 12, leader_epoch)
    return out, base_offsets(out, batches)


def empty_batch(base_offset: int, last_offset: int, timestamp: int) -> bytes:
    """A v2 batch with no records covering ``base_offset..last_offset``: what Kafka's own log holds
    where key compaction removed every record of a batch, so a range with no records can still
    be stored (a linked topic's offsets before the source's log start or after its last batch)."""
    body = bytearray(_TAIL.pack(0, last_offset - base_offset, timestamp, timestamp, -1, -1, -1, 0))
    crc = crc32c.crc32c(bytes(body))
    return (_PREFIX.pack(base_offset, HEADER_SIZE - 12) + _I32.pack(0) + bytes([2]) + _CRC.pack(crc)
            + bytes(body))


def stamp_log_append_time(
    data: bytes, batches: list[BatchInfo], now_ms: int | None
) -> tuple[bytes | bytearray, list[BatchInfo]]:
    """For ``message.timestamp.type=LogAppendTime``: mark each batch and set its maxTimestamp to ``now_ms``
    (``None``: the topic keeps the producers' CreateTime, and ``data`` is returned as it is).

    As Kafka does it: the timestamp-type attribute bit and maxTimestamp are header
    fields, so only the header changes and the CRC is computed again (one C pass
    over the batch); records stay opaque, consumers read every record's timestamp
    as the batch's maxTimestamp.
    """
    if now_ms is None:
        return data, batches
    out = bytearray(data)
    stamped = []
    for b in batches:
        attrs = b.attributes | ATTR_LOG_APPEND_TIME
        struct.pack_into(">h", out, b.position + 21, attrs)
        _I64.pack_into(out, b.position + 35, now_ms)
        _CRC.pack_into(out, b.position + 17, crc32c.crc32c(memoryview(out)[b.position + 21 : b.position + b.size]))
        stamped.append(BatchInfo(b.position, b.size, b.last_offset_delta, now_ms, b.base_timestamp, b.producer_id,
                                 b.producer_epoch, b.base_sequence, b.records_count, attrs))
    return out, stamped


@dataclass(frozen=True, slots=True)
class BatchHeader:
    position: int
    size: int
    base_offset: int
    last_offset: int
    max_timestamp: int


def iter_headers(data: bytes | bytearray | memoryview) -> list[BatchHeader]:
    """Headers of already-validated stored batches (read path); stops at a truncated tail."""
    view = memoryview(data)
    total = len(view)
    pos = 0
    out: list[BatchHeader] = []
    while total - pos >= HEADER_SIZE:
        base, length = _PREFIX.unpack_from(view, pos)
        size = 12 + length
        if pos + size > total:
            break
        (lod,) = _I32.unpack_from(view, pos + 23)
        (max_ts,) = _I64.unpack_from(view, pos + 35)
        out.append(BatchHeader(pos, size, base, base + lod, max_ts))
        pos += size
    return out


def record_count(data: bytes | bytearray | memoryview) -> int:
    """How many offsets the stored batches in ``data`` span (the fetch path's records-out metric)."""
    total = len(data)
    pos = 0
    count = 0
    while total - pos >= HEADER_SIZE:
        _, length = _PREFIX.unpack_from(data, pos)
        size = 12 + length
        if pos + size > total:
            break
        count += _I32.unpack_from(data, pos + 23)[0] + 1
        pos += size
    return count


_PRODUCER = struct.Struct(">qhi")  # producerId, producerEpoch, baseSequence at offset 43


def producer_fields(batch: bytes | bytearray | memoryview, position: int = 0) -> tuple[int, int, int, int]:
    """(producer id, epoch, base sequence, record count) of a stored batch; for state rebuilds."""
    pid, epoch, seq = _PRODUCER.unpack_from(batch, position + 43)
    (lod,) = _I32.unpack_from(batch, position + 23)
    return pid, epoch, seq, lod + 1
