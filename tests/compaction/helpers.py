"""Hand-laid keyed batches (with null values) and a kafka-python view of what a consumer reads."""

from __future__ import annotations

import struct
import time

import crc32c
from kafka.record import MemoryRecords

from tests.infra.batches import zigzag


def keyed_batch(pairs: list[tuple[bytes | None, bytes | None]], *, ts: int | None = None,
                ts_step: int = 0, producer_id: int = -1, producer_epoch: int = -1,
                base_sequence: int = -1, attributes: int = 0) -> bytes:
    """One uncompressed RecordBatch v2 of (key, value) records; None is a null key or value."""
    ts = int(time.time() * 1000) if ts is None else ts
    recs = b""
    for i, (key, value) in enumerate(pairs):
        body = b"\x00" + zigzag(i * ts_step) + zigzag(i)
        body += zigzag(-1) if key is None else zigzag(len(key)) + key
        body += zigzag(-1) if value is None else zigzag(len(value)) + value
        body += zigzag(0)
        recs += zigzag(len(body)) + body
    count = len(pairs)
    max_ts = ts + (count - 1) * ts_step
    after_crc = struct.pack(">hiqqqhii", attributes, count - 1, ts, max_ts, producer_id, producer_epoch, base_sequence,
                            count) + recs
    return struct.pack(">qiibI", 0, 4 + 1 + 4 + len(after_crc), -1, 2, crc32c.crc32c(after_crc)) + after_crc


def consumed(views: list[memoryview]) -> list[tuple[int, bytes | None, bytes | None, int]]:
    """(offset, key, value, timestamp) of every record, decoded by kafka-python's record reader."""
    out = []
    for view in views:
        mr = MemoryRecords(bytes(view))
        while (batch := mr.next_batch()) is not None:
            if batch.is_control_batch:
                continue
            for r in batch:
                out.append((r.offset, r.key, r.value, r.timestamp))
    return out
