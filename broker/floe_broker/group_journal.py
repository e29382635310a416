"""The group coordinator's journal: an ``__consumer_offsets`` partition written like any other.

Records are built as ordinary (uncompressed, non-idempotent) record batches
and go through the log service like produced data (same append, same WAL
group commit), so a commit is acknowledged exactly when a produce would be:
once its WAL object is durable (I2, docs/architecture.md#i2-ack--durable).
Replaying reads the partition from its log start, through the memory tail
and the block cache, the same way a fetch does.

This module joins ``groups`` and ``log``, which know nothing of each other.
"""

from __future__ import annotations

import datetime
import io
from collections.abc import AsyncIterator, Awaitable
from typing import Any

import structlog
from kio.records.readers import read_batch
from kio.records.schema import NewRecordBatch, Record
from kio.records.writers import write_new_batch
from kio.static.primitive import TZAwareMicros, i8, i16, i32, i64

from .errors import Fenced, JournalClosed, NotLeader, OffsetOutOfRange
from .log.partition import Partition
from .log.service import Appended, LogService
from .protocol import records

log = structlog.get_logger(__name__)
READ_BYTES = 1 << 20
BATCH_RECORDS = 1000
COMPRESSION_MASK = 0x07


def encode_batch(entries: list[tuple[bytes, bytes | None]]) -> bytes:
    ts = TZAwareMicros.parse(datetime.datetime.now(datetime.UTC))
    batch = NewRecordBatch(
        producer_id=i64(-1), producer_epoch=i16(-1), base_sequence=i32(-1), attributes=i16(0),
        records=tuple(Record(attributes=i8(0), timestamp=ts, offset=i64(i), key=k, value=v, headers=())
                      for i, (k, v) in enumerate(entries)),
    )
    buf = io.BytesIO()
    write_new_batch(buf, batch)
    return buf.getvalue()


class PartitionJournal:
    def __init__(self, part: Partition, log_service: LogService) -> None:
        self.identity: Any = part
        self.part = part
        self.log = log_service

    @property
    def open(self) -> bool:
        return self.log.is_current(self.part)

    async def reserve(self, nbytes: int) -> None:
        await self.log.reserve(nbytes)

    def append(self, entries: list[tuple[bytes, bytes | None]]) -> tuple[int, Awaitable[None]]:
        data = b"".join(encode_batch(entries[i : i + BATCH_RECORDS]) for i in range(0, len(entries), BATCH_RECORDS))
        batches = records.scan_batches(data, max_batch_bytes=len(data))
        try:
            appended = self.log.append(self.part, data, batches)
        except (NotLeader, Fenced) as exc:
            raise JournalClosed(str(exc)) from None
        return appended.base, self._durable(appended)

    async def _durable(self, appended: Appended) -> None:
        try:
            await self.log.wait_durable([appended])
        except Fenced as exc:
            raise JournalClosed(str(exc)) from None

    def trim_before(self, offset: int) -> None:
        self.log.trim_before(self.part, offset)

    async def replay(self) -> AsyncIterator[tuple[bytes, bytes | None]]:
        offset = self.part.log_start
        while offset < self.part.high_watermark:
            try:
                views = await self.log.read(self.part, offset, READ_BYTES)
            except OffsetOutOfRange:
                offset = self.part.log_start  # retention moved the start while we read
                continue
            if not views:
                break
            for view in views:
                batch, _ = read_batch(bytes(view), 0)
                offset = batch.base_offset + batch.last_offset_delta + 1
                if batch.attributes & COMPRESSION_MASK:
                    log.warning("skipping compressed batch in offsets partition", offset=batch.base_offset)
                    continue
                for rec in batch.records:
                    if rec.key is not None:
                        yield rec.key, rec.value

