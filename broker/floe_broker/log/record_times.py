"""Finding a record by its timestamp inside one stored batch (ListOffsets by timestamp).

Kafka's answer is the FIRST record, in offset order, whose own timestamp is
at or after the target, with that record's timestamp; record timestamps
need not grow within a batch, so the batch's ``maxTimestamp`` only says
whether a batch can hold the answer. The read path calls this for the
batches whose ``maxTimestamp`` allows it, one at a time, and runs it in a
thread for compressed batches (decompressing is CPU work the event loop must
not wait on). Every codec Kafka writes is read through ``cramjam``: gzip,
snappy (raw, or xerial-framed as the Java producer writes it), lz4 frame,
zstd. Only each record's length, timestamp delta and offset delta are read.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from ..errors import InvalidRecords
from ..protocol.compression import CODEC_MASK, records_section
from ..protocol.compression import varint as _varint
from ..protocol.records import ATTR_LOG_APPEND_TIME

_HEAD = struct.Struct(">qiiBIhiqqqhii")  # every field of the batch header, in order


@dataclass(frozen=True, slots=True)
class Found:
    offset: int
    timestamp: int
    leader_epoch: int  # of the batch holding the record


def is_compressed(batch: bytes | bytearray | memoryview) -> bool:
    (attributes,) = struct.unpack_from(">h", batch, 21)
    return bool(attributes & 0x07)


def first_at_or_after(batch: bytes | bytearray | memoryview, target: int, min_offset: int) -> Found | None:
    """The first record of ``batch`` at offset >= ``min_offset`` with timestamp >= ``target``.

    With LogAppendTime every record's timestamp is the batch's ``maxTimestamp``
    (Kafka's rule), so the answer is the first record at or after ``min_offset``.
    """
    (base, _length, epoch, _magic, _crc, attrs, lod, base_ts, max_ts, _pid, _pepoch, _seq,
     count) = _HEAD.unpack_from(batch, 0)
    if max_ts < target or base + lod < min_offset:
        return None
    if attrs & ATTR_LOG_APPEND_TIME:
        return Found(max(base, min_offset), max_ts, epoch)
    section = records_section(batch, attrs & CODEC_MASK)
    pos = 0
    try:
        for _ in range(count):
            length, pos = _varint(section, pos)
            end = pos + length
            ts_delta, after = _varint(section, pos + 1)  # after the attributes byte
            off_delta, _ = _varint(section, after)
            if base_ts + ts_delta >= target and base + off_delta >= min_offset:
                return Found(base + off_delta, base_ts + ts_delta, epoch)
            pos = end
    except IndexError:
        raise InvalidRecords("malformed record: truncated") from None
    return None


