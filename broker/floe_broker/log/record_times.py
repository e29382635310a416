"""Finding a record by its timestamp inside one stored batch (ListOffsets by timestamp).

Kafka's answer is the FIRST record, in offset order, whose own timestamp is
at or after the target, with that record's timestamp; record timestamps
need not grow within a batch, so the batch's ``maxTimestamp`` only says
whether a batch can hold the answer. The read path calls this for the
batches whose ``maxTimestamp`` allows it, one at a time, and runs it in a
thread for compressed batches (decompressing is CPU work the event loop must
not wait on). Records are read with key compaction's record reader
(``compaction.records``), which knows every codec Kafka writes.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..protocol.records import ATTR_LOG_APPEND_TIME
from .compaction import records as batch_records


@dataclass(frozen=True, slots=True)
class Found:
    offset: int
    timestamp: int
    leader_epoch: int  # of the batch holding the record


def is_compressed(batch: bytes | bytearray | memoryview) -> bool:
    return batch_records.header(batch).codec != batch_records.NONE


def first_at_or_after(batch: bytes | bytearray | memoryview, target: int, min_offset: int) -> Found | None:
    """The first record of ``batch`` at offset >= ``min_offset`` with timestamp >= ``target``.

    With LogAppendTime every record's timestamp is the batch's ``maxTimestamp``
    (Kafka's rule), so the answer is the first record at or after ``min_offset``.
    """
    head = batch_records.header(batch)
    if head.max_timestamp < target or head.last_offset < min_offset:
        return None
    if head.attributes & ATTR_LOG_APPEND_TIME:
        return Found(max(head.base_offset, min_offset), head.max_timestamp, head.leader_epoch)
    section = batch_records.records_section(batch, head.codec)
    for rec in batch_records.parse_records(section, head.records_count):
        offset = head.base_offset + rec.offset_delta
        ts = head.base_timestamp + rec.timestamp_delta
        if ts >= target and offset >= min_offset:
            return Found(offset, ts, head.leader_epoch)
    return None
