"""The log service: append batches to a partition, await durability, read them back.

This is the one write path of the broker. Produce, the group coordinator's
journal (``__consumer_offsets``) and transaction markers all go
through :meth:`LogService.append`, so the rules live in one place:

* backpressure: callers :meth:`reserve` WAL buffer room first, once for
  everything they are about to append;
* :meth:`append` never awaits, so a caller appending to several partitions in
  a row puts them all in the same WAL flush (one PUT, one wait);
* idempotent producers: a batch whose sequence was already appended is not
  appended again but answered with its original offsets, and only once those
  are durable (I2, docs/architecture.md#i2-ack--durable); out-of-order or stale-epoch batches raise SequenceError;
* recent data stays in memory (within the memory budget) for fetches;
* an answer is given only once the data is durable: :meth:`wait_durable`
  raises Fenced when the session was fenced, and its caller bounds it with a
  timeout.

Batches are opaque bytes plus the :class:`~floe_broker.protocol.records.BatchInfo`
list the caller got from ``records.scan_batches``: nothing here looks at
individual records.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

from ..errors import NotLeader, SequenceError, WriteBufferFull
from ..ordering import CURRENT_TURN
from ..protocol.records import ATTR_CONTROL, ATTR_TRANSACTIONAL, BatchInfo, base_offsets
from . import record_times
from .cache import BlockCache
from .manager import PartitionManager
from .partition import SEQ_MOD, Duplicate, Partition
from .wal import Flush, WalWriter


@dataclass(frozen=True, slots=True, eq=False)
class Appended:
    """Where appended batches landed: offsets ``base..last`` of ``partition``.

    ``size`` is the number of bytes added to the log; 0 for a retried batch
    answered from the idempotent producer state (``duplicate``), which adds
    nothing.
    """

    partition: Partition
    base: int
    last: int
    size: int
    flush: Flush | None  # the WAL flush carrying the bytes; None for a duplicate

    @property
    def duplicate(self) -> bool:
        return self.flush is None

    @property
    def records(self) -> int:
        return self.last - self.base + 1


class LogService:
    def __init__(self, wal: WalWriter, partitions: PartitionManager, cache: BlockCache) -> None:
        self.wal = wal
        self.partitions = partitions
        self.cache = cache

    # ---- write path ---------------------------------------------------------------------

    async def reserve(self, nbytes: int) -> None:
        """Wait until the WAL buffer has room for ``nbytes`` (backpressure)."""
        await self.wal.reserve(nbytes)

    @contextlib.asynccontextmanager
    async def appending(self, nbytes: int, room_timeout: float | None = None) -> AsyncIterator[LogService]:
        """Wait for this connection's turn and for WAL room, then let the caller append.

        Requests pipelined on one connection take effect in order
        (``ordering``): the turn is held while the caller appends and released
        on exit, before anyone waits for durability, so the next request can
        join the same flush.

        With ``room_timeout``, waiting for room ends after that many seconds
        with WriteBufferFull, and so does, at once, a request that was already
        pipelined behind one refused that way (it must not overtake it).
        """
        turn = CURRENT_TURN.get()
        if turn is not None:
            await turn.wait()
        try:
            if turn is not None and room_timeout is not None and turn.refused_behind():
                raise WriteBufferFull("write buffer full: an earlier request on this connection was refused; retry")
            try:
                await self.wal.reserve(nbytes, room_timeout)
            except WriteBufferFull:
                if turn is not None:
                    turn.refuse()
                raise
            yield self
        finally:
            if turn is not None:
                turn.release()

    def append(self, part: Partition, data: bytes | bytearray | memoryview, batches: list[BatchInfo]) -> Appended:
        """Append validated batches now (offsets assigned, no await).

        Raises NotLeader when the partition is moving or closed, Fenced when
        this session was fenced, SequenceError for an idempotent producer's
        out-of-order or stale batch. The batches of one call come from one
        producer (as in one Kafka partition entry of a produce request).
        """
        if not part.accepting:
            raise NotLeader(f"{part.topic}-{part.index} is moving")
        first, last_batch = batches[0], batches[-1]
        idempotent = first.producer_id >= 0
        if idempotent:
            last_seq = (last_batch.base_sequence + last_batch.record_count - 1) % SEQ_MOD
            dup = part.check_sequence(first.producer_id, first.producer_epoch, first.base_sequence, last_seq)
            if isinstance(dup, Duplicate):
                return Appended(part, dup.base, dup.last, 0, None)
        chunk = part.append(data, batches)
        flush = self.wal.add(part, chunk)
        if idempotent:
            part.record_producer(first.producer_id, first.producer_epoch, first.base_sequence, last_seq,
                                 chunk.base, chunk.last)
            if first.attributes & ATTR_TRANSACTIONAL:
                part.note_transactional(first.producer_id, chunk.base)
        self.partitions.track(chunk)
        return Appended(part, chunk.base, chunk.last, chunk.size, flush)

    async def wait_durable(self, appended: Sequence[Appended]) -> None:
        """Return once everything in ``appended`` is durable.

        Raises Fenced if the session was fenced before that, and TimeoutError
        if a retried batch's partition closed before its original offsets
        became durable. Callers bound the wait with ``asyncio.wait_for``.
        """
        flushes = [a.flush for a in appended if a.flush is not None]
        if flushes:
            # Flushes complete in sequence order: the last one implies the others.
            await self.wal.durable(max(flushes, key=lambda f: f.seq))
        for a in appended:
            if a.duplicate:
                await _durable_up_to(a.partition, a.last)

    async def append_durably(self, part: Partition, data: bytes | bytearray | memoryview,
                             batches: list[BatchInfo]) -> Appended:
        """Reserve, append and wait for durability: one partition, no deadline."""
        await self.reserve(len(data))
        appended = self.append(part, data, batches)
        await self.wait_durable([appended])
        return appended

    async def append_marker(self, part: Partition, data: bytes, batches: list[BatchInfo], *,
                            commit: bool) -> int:
        """Append a transaction's commit or abort marker (one control batch) and wait until durable.

        The marker carries the producer's epoch: an older one is refused
        (SequenceError 47, a zombie coordinator's), and from the append on the
        producer's older epochs are fenced here. Only once the marker is durable
        does the partition close the transaction (its last stable offset moves,
        an abort joins the aborted index), so read_committed never runs ahead
        of what a successor would rebuild (I5). Returns the marker's offset.
        """
        if not part.accepting:
            raise NotLeader(f"{part.topic}-{part.index} is moving")
        marker = batches[0]
        state = part.producers.get(marker.producer_id)
        if state is not None and marker.producer_epoch < state.epoch:
            raise SequenceError(47, f"marker epoch {marker.producer_epoch} is older than {state.epoch}")
        await self.reserve(len(data))
        if not part.accepting:
            raise NotLeader(f"{part.topic}-{part.index} is moving")
        part.fence_epoch(marker.producer_id, marker.producer_epoch)
        chunk = part.append(data, batches)
        flush = self.wal.add(part, chunk)
        self.partitions.track(chunk)
        await self.wal.durable(flush)
        part.end_transaction(marker.producer_id, commit, chunk.base)
        return chunk.base

    async def append_mirrored(self, part: Partition, data: bytes | bytearray | memoryview,
                              batches: list[BatchInfo]) -> Appended:
        """Append a linked topic's batches at the offsets they carry and wait until durable.

        The one writer of a linked partition is its mirror on the leader
        (produce is refused there), so the single-writer rule holds as on
        produce; the offsets are the source's, never reassigned, and never
        below the log's next offset (I4). Transactions close as on a marker:
        a transactional batch opens its producer's transaction at append, and
        a commit or abort marker closes it only once durable (I5), so
        read_committed on the mirror never runs ahead of the source's decision.
        A run of batches is appended up to and including each marker, in turn,
        so a transaction that follows a marker in the same answer opens after
        the one before it closed.
        """
        appended: Appended | None = None
        view = memoryview(data)
        for run in _runs_to_markers(batches):
            start = run[0].position
            end = run[-1].position + run[-1].size
            appended = await self._append_mirrored_run(
                part, view[start:end], [dataclasses.replace(b, position=b.position - start) for b in run])
        assert appended is not None
        return Appended(part, batches_base(data, batches), appended.last, len(data), appended.flush)

    async def _append_mirrored_run(self, part: Partition, data: memoryview, batches: list[BatchInfo]) -> Appended:
        await self.reserve(len(data))
        chunk = part.append_at(data, batches)
        flush = self.wal.add(part, chunk)
        self.partitions.track(chunk)
        marker = batches[-1] if batches[-1].attributes & ATTR_CONTROL else None
        for info, base in zip(batches, base_offsets(data, batches), strict=True):
            if info.attributes & ATTR_TRANSACTIONAL and not info.attributes & ATTR_CONTROL:
                part.note_transactional(info.producer_id, base)
        await self.wal.durable(flush)
        if marker is not None and marker.attributes & ATTR_TRANSACTIONAL:
            part.close_mirrored_transactions(data, [marker])
        return Appended(part, chunk.base, chunk.last, chunk.size, flush)

    # ---- partitions ---------------------------------------------------------------------

    def is_current(self, part: Partition) -> bool:
        """True while ``part`` is the open, accepting instance of its partition here."""
        return part.accepting and self.partitions.get(part.topic, part.index) is part

    def trim_before(self, part: Partition, offset: int) -> None:
        """Move the log start forward; the next checkpoint makes it durable."""
        self.partitions.trim_before(part.topic, part.index, offset)

    async def delete_records(self, part: Partition, offset: int) -> int:
        """DeleteRecords: move the log start forward and return once that is durable (the new log start)."""
        return await self.partitions.delete_records(part.topic, part.index, offset)

    # ---- read path ----------------------------------------------------------------------

    async def read(self, part: Partition, offset: int, max_bytes: int, *,
                   strict_max: bool = False, committed: bool = False,
                   deadline: float | None = None) -> list[memoryview]:
        """Whole batches from ``offset`` below the high watermark (below the last stable offset when
        ``committed``), through the memory tail and the block cache (see :meth:`Partition.read`),
        stopping early once ``deadline`` has passed and something is read."""
        return await part.read(offset, max_bytes, self.cache.read, self.cache.read_suffix, strict_max=strict_max,
                               until=part.last_stable_offset if committed else None,
                               prefetch=self.cache.prefetch, deadline=deadline)

    async def offset_for_timestamp(self, part: Partition, ts: int) -> record_times.Found | None:
        """The first record at or after ``ts``, below the high watermark (offset, its timestamp, epoch)."""
        return await part.offset_for_timestamp(ts, self.cache.read, self.cache.read_suffix)


async def _durable_up_to(part: Partition, last: int) -> None:
    while part.high_watermark <= last:
        if not part.accepting:
            raise TimeoutError("partition closed")
        await part.waiter()




def _runs_to_markers(batches: list[BatchInfo]) -> list[list[BatchInfo]]:
    """``batches`` cut after every control batch (a transaction marker ends its run)."""
    runs: list[list[BatchInfo]] = [[]]
    for b in batches:
        runs[-1].append(b)
        if b.attributes & ATTR_CONTROL:
            runs.append([])
    return [r for r in runs if r]


def batches_base(data: bytes | bytearray | memoryview, batches: list[BatchInfo]) -> int:
    return base_offsets(data, batches[:1])[0]
