"""What a mirror appends from a source's Fetch answer: the whole batches at or after an offset.

A Fetch answer may end in a batch cut short by the size limit, and it may
begin with the batch holding the offset asked for; both are dropped here,
after the same validation as produce (framing, magic 2, CRC), so a corrupt
answer is refused rather than stored. Records stay opaque.
"""

from __future__ import annotations

from ..protocol import records
from ..protocol.records import BatchInfo

MAX_BATCH_BYTES = 1 << 30  # the source already enforced its own max.message.bytes


def whole_batches(data: bytes, offset: int) -> tuple[bytes, list[BatchInfo]]:
    """The complete batches of ``data`` from the first one starting at or after ``offset``, and their headers.

    Raises InvalidRecords for a batch that fails validation, or one that
    holds ``offset`` without starting there (copying it would skip records).
    """
    complete = records.iter_headers(data)
    if any(h.base_offset < offset <= h.last_offset for h in complete):
        raise records.OffsetOrderError(f"a source batch straddles offset {offset}: its bounds changed after copying")
    keep = [h for h in complete if h.base_offset >= offset]
    if not keep:
        return b"", []
    start, end = keep[0].position, keep[-1].position + keep[-1].size
    body = data[start:end]
    return body, records.scan_batches(body, max_batch_bytes=MAX_BATCH_BYTES)
