"""RecordBatch v2 bytes laid out by hand per the Kafka spec, for tests that must not trust our codec.

``record_batch`` holds real records (key, value, no headers) that any client
decodes; ``opaque_batch`` is only structurally valid (header and CRC right, the
records region filler), which is all the broker's produce path ever looks at.
"""

from __future__ import annotations

import struct
import time

import crc32c


def zigzag(n: int) -> bytes:
    """A signed varint as Kafka's record format writes it."""
    n = (n << 1) ^ (n >> 63)
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _frame(records: bytes, count: int, *, ts: int | None, producer_id: int, producer_epoch: int,
           base_sequence: int) -> bytes:
    ts = int(time.time() * 1000) if ts is None else ts
    after_crc = struct.pack(">hiqqqhii", 0, count - 1, ts, ts, producer_id, producer_epoch, base_sequence,
                            count) + records
    length = 4 + 1 + 4 + len(after_crc)
    return struct.pack(">qiibI", 0, length, -1, 2, crc32c.crc32c(after_crc)) + after_crc


def record_batch(value: bytes = b"v", key: bytes = b"k", *, count: int = 1, ts: int | None = None,
                 producer_id: int = -1, producer_epoch: int = -1, base_sequence: int = -1) -> bytes:
    """``count`` records with this key and value."""
    recs = b""
    for i in range(count):
        body = b"\x00" + zigzag(0) + zigzag(i) + zigzag(len(key)) + key + zigzag(len(value)) + value + zigzag(0)
        recs += zigzag(len(body)) + body
    return _frame(recs, count, ts=ts, producer_id=producer_id, producer_epoch=producer_epoch,
                  base_sequence=base_sequence)


def opaque_batch(n_records: int = 1, ts: int | None = None, payload: bytes = b"x",
                 pid: int = -1, epoch: int = -1, seq: int = -1) -> bytes:
    """A batch whose header and CRC are right and whose records region is filler."""
    return _frame(payload * 10, n_records, ts=ts, producer_id=pid, producer_epoch=epoch, base_sequence=seq)
