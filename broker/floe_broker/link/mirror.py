"""One linked partition's mirror, on its Floe leader: fetch from the source, append at the same offsets.

The mirror is the partition's only writer while it is linked (produce is
refused), and it starts where the log ends (``next_offset``): after a move or
a failover the new leader's mirror resumes at the durable end the old one
left, so nothing is duplicated or skipped. A batch is acknowledged to nobody:
the next fetch simply starts after what is durable.

Ranges with no batch at all (before the source's log start, or after its last
batch) are stored as one empty batch, as Kafka's own log holds them after key
compaction, so offsets past them mean the same on both clusters.

Promotion: once the partition is marked promoting, the mirror goes on until a
fetch finds nothing more below the source's end offset, then tells the
controller the partition is promoted and stops; from that commit on produce
is accepted, continuing at the source's end offset. A forced promotion stops
at once, where Floe's log ends: what the source holds beyond it is not copied.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import structlog

from floe_api.links import MIRRORING, PROMOTED, PROMOTING, PartitionLag

from .. import metrics
from ..errors import Fenced, InvalidRecords, NotLeader
from ..log.partition import Partition
from ..log.service import LogService
from ..protocol import records
from .batches import whole_batches
from .source import SourceCluster, SourceError, source_topic_gone

log = structlog.get_logger(__name__)

OFFSET_OUT_OF_RANGE = 1
UNKNOWN_TOPIC_OR_PARTITION = 3
FETCH_MAX_BYTES = 4 << 20
FETCH_WAIT_MS = 500
RETRY_S = 1.0
# Empty answers in a row, each below the same source end offset, before that range is taken for a gap.
GAP_CONFIRMATIONS = 2


@dataclass(frozen=True)
class ProducerIdReservation:
    """The metadata's highest reserved mirrored producer id, and how to raise it."""

    highest: Callable[[], int]
    reserve: Callable[[int], Awaitable[None]]


class PartitionMirror:
    def __init__(self, link: str, source: SourceCluster, log_service: LogService, part: Partition, *,
                 promoting: Callable[[], bool], promoted: Callable[[str, int], Awaitable[None]],
                 node_id: int, forced: Callable[[], bool] = lambda: False,
                 producer_ids: ProducerIdReservation | None = None) -> None:
        self.link, self.source, self.log, self.part = link, source, log_service, part
        self._promoting, self._promoted, self._forced = promoting, promoted, forced
        self._producer_ids = producer_ids
        self.node_id = node_id
        self.source_end = -1
        self.bytes_mirrored = 0
        self.error: str | None = None
        self.done = False
        self._caught_up_at = time.monotonic()
        self._empty_below: tuple[int, int] | None = None  # (offset, source end) of the last empty answer
        self._empty_count = 0
        self._labels = (link, part.topic, str(part.index))

    # ---- status ---------------------------------------------------------------------------

    def lag(self) -> PartitionLag:
        end = self.part.next_offset
        lag = max(self.source_end - end, 0) if self.source_end >= 0 else -1
        state = PROMOTED if self.done else PROMOTING if self._promoting() else MIRRORING
        return PartitionLag(topic=self.part.topic, partition=self.part.index, node=self.node_id, floe_end=end,
                            source_end=self.source_end, lag_records=lag, lag_seconds=self._lag_seconds(lag),
                            bytes_mirrored=self.bytes_mirrored, state=state, error=self.error)

    def _lag_seconds(self, lag: int) -> float:
        return 0.0 if lag == 0 else round(time.monotonic() - self._caught_up_at, 3)

    # ---- the loop -------------------------------------------------------------------------

    async def run(self) -> None:
        log.info("mirroring", link=self.link, topic=self.part.topic, partition=self.part.index,
                 start=self.part.next_offset)
        try:
            while not self.done and self.log.is_current(self.part):
                try:
                    await self.step()
                    self.error = None
                except (NotLeader, Fenced):
                    return
                except (SourceError, InvalidRecords) as exc:
                    self.error = str(exc)
                    log.warning("mirror step failed", link=self.link, topic=self.part.topic,
                                partition=self.part.index, error=self.error)
                    await asyncio.sleep(RETRY_S)
        finally:
            for gauge in (metrics.LINK_LAG_RECORDS, metrics.LINK_LAG_SECONDS):
                with contextlib.suppress(KeyError):  # never reported: no series to remove
                    gauge.remove(*self._labels)

    async def step(self) -> None:
        """One fetch from the source and what follows from it (none once a forced promotion asks to stop)."""
        part, offset = self.part, self.part.next_offset
        if self._promoting() and self._forced():
            await self._finish("forced")
            return
        fetched = await self.source.fetch(part.topic, part.index, offset, max_bytes=FETCH_MAX_BYTES,
                                          max_wait_ms=FETCH_WAIT_MS)
        if fetched.error_code == OFFSET_OUT_OF_RANGE:
            start = await self.source.log_start(part.topic, part.index)
            if start <= offset:
                raise SourceError(f"offset {offset} is out of range at the source, whose log starts at {start}")
            await self._fill(offset, start)
            self.log.trim_before(part, start)
            log.info("mirror starts at the source's log start", link=self.link, topic=part.topic,
                     partition=part.index, log_start=start)
            return
        if fetched.error_code == UNKNOWN_TOPIC_OR_PARTITION:
            raise SourceError(source_topic_gone(part.topic, part.index))
        if fetched.error_code:
            raise SourceError(f"fetch {part.topic}-{part.index} at {offset}: error {fetched.error_code}")
        self.source_end = fetched.high_watermark
        data, batches = whole_batches(fetched.records, offset)
        if batches:
            self._empty_below, self._empty_count = None, 0
            await self._reserve_producer_ids(batches)
            done = await self.log.append_mirrored(part, data, batches)
            self.bytes_mirrored += done.size
            metrics.LINK_BYTES.labels(self.link, part.topic).inc(done.size)
        elif self.source_end > offset:
            await self._maybe_gap(offset)
        self._report()
        if not batches and part.next_offset >= self.source_end and self._promoting():
            await self._finish("caught up")

    async def _finish(self, how: str) -> None:
        """Report the partition promoted and stop: produce continues at the log's end."""
        part = self.part
        await self._promoted(part.topic, part.index)
        self.done = True
        log.info("partition promoted", link=self.link, topic=part.topic, partition=part.index,
                 end_offset=part.next_offset, how=how, source_end=self.source_end)

    async def _reserve_producer_ids(self, batches: list[records.BatchInfo]) -> None:
        """Before appending them, make sure Floe will never hand out the batches' producer ids."""
        highest = max(b.producer_id for b in batches)
        if self._producer_ids is not None and highest > self._producer_ids.highest():
            await self._producer_ids.reserve(highest)

    async def _maybe_gap(self, offset: int) -> None:
        """Nothing came back below the source's end: after a second such answer, that range is a gap."""
        seen = (offset, self.source_end)
        self._empty_count = self._empty_count + 1 if self._empty_below == seen else 1
        self._empty_below = seen
        if self._empty_count >= GAP_CONFIRMATIONS:
            await self._fill(offset, self.source_end)
            self._empty_below, self._empty_count = None, 0

    async def _fill(self, offset: int, end: int) -> None:
        """Store ``offset..end-1``, which holds no batch at the source, as one empty batch."""
        batch = records.empty_batch(offset, end - 1, int(time.time() * 1000))
        await self.log.append_mirrored(self.part, batch, records.scan_batches(batch, max_batch_bytes=len(batch)))

    def _report(self) -> None:
        lag = max(self.source_end - self.part.next_offset, 0)
        if lag == 0:
            self._caught_up_at = time.monotonic()
        metrics.LINK_LAG_RECORDS.labels(*self._labels).set(lag)
        metrics.LINK_LAG_SECONDS.labels(*self._labels).set(self._lag_seconds(lag))
