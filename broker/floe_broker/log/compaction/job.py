"""The key-compaction job of a partition leader: keep the last record per key, at its offset.

For every led partition whose topic has ``cleanup.policy`` ``compact`` (or
``compact,delete``), after each maintenance round:

1. **What is cleanable**: the leading run of consolidated segments, below the
   high watermark, whose newest record is older than
   ``min.compaction.lag.ms``; WAL chunks not consolidated yet are the active
   part and left alone, and the partition's newest batch is always kept
   whole (like Kafka's active segment, so a consumer at the end of the log
   always has a record to reach the high watermark with). It is due when
   its dirty part (offsets at or above ``compacted_upto``) is at least
   ``min.cleanable.dirty.ratio`` of it, or its oldest dirty piece is older
   than ``max.compaction.lag.ms``, or the delete horizon of a kept tombstone
   or transaction marker has come (``Partition.compaction_due_ms``, carried
   by checkpoints, so a successor removes them on time too).
2. **Map**: one read of the dirty part builds digest(key) -> last offset in a
   :class:`~.keymap.KeyMap` bounded by bytes; when it fills, the pass covers
   the dirty part only up to there and another pass follows.
3. **Rewrite**: one read of the whole cleanable range keeps what
   ``retain.filter_batch`` keeps and writes it, create-only, into new
   one-partition objects in the consolidated format (``data/s/<node>/<session>/<seq>``,
   keys from the consolidator's sequence), each one segment.
4. **Swap**, under the maintenance lock: if the partition's first pieces are
   still the ones read, they are replaced by the new segments in one
   synchronous step (``Partition.replace_prefix``), ``compacted_upto``
   advances and the partition is marked changed, so the next checkpoint
   batch names the new objects.

Crash safety: the new objects exist before anything references them, and the
old ones are deleted only by the collector once no checkpoint or batch a
successor could use references them. A crash before the batch leaves the
old, complete pieces referenced; after it, the new ones. Until its swap an
object is protected from the collector by holding the session's
``data_seq`` below it (:meth:`Compactor.data_seq_floor`). Compaction never
moves ``next_offset`` and never writes a value at an offset: it only
removes records, so no offset ever holds two values (I4).

Reading and rewriting records runs in a worker thread, a block at a time,
so the event loop keeps serving; produce stays per-batch.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import structlog

from ... import metrics
from ...errors import PreconditionFailed
from ...storage import layout
from ...storage.objectstore import ObjectStore, retrying
from .. import formats
from ..cache import BlockCache
from ..consolidation import Consolidator
from ..held import Held
from ..partition import Chunk, Partition, Segment, load_segment_entries
from . import records
from .keymap import KeyMap
from .retain import Aborted, Outcome, Rules, aborted_index, filter_batch, map_batch
from .settings import CompactionSettings

log = structlog.get_logger(__name__)

DEFAULT_MAP_BYTES = 64 * 1024 * 1024
MAX_PASSES = 64  # per partition per run: a pass always maps at least one batch
MAX_MARKS = 32
# The group coordinator keeps its own snapshots of __consumer_offsets (docs/architecture.md#key-compaction).
SKIPPED_TOPICS = frozenset({"__consumer_offsets"})


@dataclass(frozen=True)
class Plan:
    pieces: list[Segment]
    start: int
    end: int
    dirty_from: int


@dataclass
class PassStats:
    passes: int = 0
    bytes_in: int = 0
    bytes_out: int = 0
    records_in: int = 0
    records_out: int = 0
    peak_map_entries: int = 0
    peak_map_bytes: int = 0
    seconds: float = 0.0


@dataclass
class _Output:
    """The kept batches of one pass, cut into objects of about ``target`` bytes."""

    target: int
    index_block: int
    start: int
    batches: list[tuple[int, int, int, bytes | memoryview]] = field(default_factory=list)
    size: int = 0
    next_base: int = 0

    def __post_init__(self) -> None:
        self.next_base = self.start

    def add(self, data: bytes | memoryview) -> None:
        head = records.header(data)
        self.batches.append((head.base_offset, head.last_offset, head.max_timestamp, data))
        self.size += len(data)

    def full(self) -> bool:
        return self.size >= self.target

    def cut(self, last: int | None, topic_id: str, partition: int, epoch: int) -> tuple[bytes, list[Any]]:
        """This object's body and index row; its range runs from where the previous one ended."""
        base = self.next_base
        last = self.batches[-1][1] if last is None else last
        blocks: list[list[int]] = []
        pos = 0
        block: list[int] | None = None
        for _, b_last, b_ts, data in self.batches:
            if block is None or block[4] >= self.index_block:
                block = [base if block is None else block[1] + 1, b_last, b_ts, pos, 0]
                blocks.append(block)
            block[1] = b_last
            block[2] = max(block[2], b_ts)
            block[4] += len(data)
            pos += len(data)
        blocks[-1][1] = last
        max_ts = max(b[2] for b in blocks)
        row = [topic_id, partition, epoch, base, last, max_ts, 0, pos, blocks]
        body = b"".join(bytes(d) for *_, d in self.batches) + formats.object_tail([row], formats.CONSOLIDATED_MAGIC)
        self.batches, self.size, self.next_base = [], 0, last + 1
        return body, row


class Compactor:
    def __init__(self, store: ObjectStore, cache: BlockCache, consolidator: Consolidator, *, node_id: int,
                 session: str, topic_config: Callable[[str, str], str | None], lock: asyncio.Lock,
                 is_current: Callable[[Held], bool], map_bytes: int = DEFAULT_MAP_BYTES,
                 target_bytes: int = 32 * 1024 * 1024, index_block: int = 1024 * 1024,
                 clock_ms: Callable[[], int] | None = None) -> None:
        self.store = store
        self.cache = cache
        self.consolidator = consolidator
        self.node_id = node_id
        self.session = session
        self.topic_config = topic_config
        self.lock = lock
        self.is_current = is_current
        self.map_bytes = map_bytes
        self.target_bytes = max(1, target_bytes)
        self.index_block = index_block
        self.clock_ms = clock_ms or (lambda: int(time.time() * 1000))
        self.stats = PassStats()
        self._unswapped: set[int] = set()
        self._task: asyncio.Task[None] | None = None

    # ---- scheduling -----------------------------------------------------------------

    def data_seq_floor(self, swapped_seq: int) -> int:
        """The ``data_seq`` a checkpoint batch may claim: below every object not swapped in yet."""
        return min(swapped_seq, min(self._unswapped) - 1) if self._unswapped else swapped_seq

    def kick(self, helds: list[Held]) -> None:
        """Start a run over these partitions unless one is still going (called every maintenance round)."""
        if self._task is not None and not self._task.done():
            return
        compacted = [h for h in helds if self.settings(h.partition.topic).compact]
        if compacted:
            self._task = asyncio.get_running_loop().create_task(self.run(compacted))

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass

    def settings(self, topic: str) -> CompactionSettings:
        if topic in SKIPPED_TOPICS:
            return CompactionSettings()
        return CompactionSettings.of_topic(self.topic_config, topic)

    async def run(self, helds: list[Held]) -> None:
        for held in helds:
            part = held.partition
            try:
                await self.compact(held)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the partition stays as it was; the next run tries again
                log.warning("key compaction failed", topic=part.topic, partition=part.index, error=repr(exc))

    # ---- one partition --------------------------------------------------------------

    async def compact(self, held: Held) -> int:
        """Compact one partition as far as it is due; returns the number of passes made."""
        passes = 0
        while passes < MAX_PASSES and self.is_current(held):
            settings = self.settings(held.partition.topic)
            if not settings.compact:
                break
            now = self.clock_ms()
            plan = self.plan(held.partition, settings, now, continuing=passes > 0)
            if plan is None or not await self._pass(held, plan, settings, now):
                break
            passes += 1
        return passes

    def plan(self, part: Partition, settings: CompactionSettings, now_ms: int, *,
             continuing: bool = False) -> Plan | None:
        prefix: list[Segment] = []
        stable = min(part.high_watermark, part.last_stable_offset)  # an open transaction is never read
        for piece in part.pieces:
            if not isinstance(piece, Segment) or piece.last >= stable:
                break
            if piece.max_ts > now_ms - settings.min_compaction_lag_ms:
                break
            prefix.append(piece)
        if not prefix:
            return None
        start, end = prefix[0].base, prefix[-1].last
        dirty_from = max(part.compacted_upto, start)
        dirty = [p for p in prefix if p.last >= dirty_from]
        due = part.compaction_due_ms is not None and now_ms >= part.compaction_due_ms
        if dirty:
            ratio = sum(p.size for p in dirty) / max(1, sum(p.size for p in prefix))
            due = (due or continuing or ratio >= settings.min_cleanable_dirty_ratio
                   or now_ms - dirty[0].max_ts >= settings.max_compaction_lag_ms)
        return Plan(prefix, start, end, dirty_from) if due else None

    async def _batches(self, part: Partition, segments: list[Segment]) -> Any:
        """The bytes of the segments, a block at a time (through the block cache)."""
        for segment in segments:
            entries = await load_segment_entries(segment, self.cache.read_suffix, part.topic_id, part.index)
            for entry in entries:
                yield await self._entry_bytes(entry)

    async def _entry_bytes(self, entry: Chunk) -> bytes | bytearray:
        if entry.data is not None:
            return entry.data
        return await self.cache.read(entry.key or "", entry.pos, entry.size, entry.span_end)

    async def _pass(self, held: Held, plan: Plan, settings: CompactionSettings, now_ms: int) -> bool:
        part = held.partition
        t0 = time.perf_counter()
        keys = KeyMap(self.map_bytes)
        mapped_upto = plan.end + 1
        aborted = aborted_index(part.txn_aborted)  # every transaction below the plan's end is decided
        dirty = [s for s in plan.pieces if s.last >= plan.dirty_from]
        async for data in self._batches(part, dirty):
            stop = await asyncio.to_thread(_map_block, data, keys, plan.dirty_from, aborted)
            if stop is not None:
                mapped_upto = stop
                break
        if not dirty:
            mapped_upto = plan.dirty_from
        cleaned_before = part.compacted_upto
        marks = [list(m) for m in part.compaction_marks]

        def expired(offset: int) -> bool:
            first = next((ms for upto, ms in marks if upto > offset), None)
            return first is not None and first + settings.delete_retention_ms <= now_ms

        rules = Rules(keys, mapped_upto, part.log_start, cleaned_before, expired, keep_from=part.next_offset - 1,
                      now_ms=now_ms, delete_retention_ms=settings.delete_retention_ms, aborted=aborted)
        out = _Output(self.target_bytes, self.index_block, plan.start)
        written: list[tuple[int, str, list[Any]]] = []
        oldest_tombstone: int | None = None
        horizons: list[int] = []
        removed_markers: set[int] = set()
        stats = PassStats(passes=1, peak_map_entries=keys.peak_entries, peak_map_bytes=keys.peak_bytes)
        try:
            async for data in self._batches(part, plan.pieces):
                stats.bytes_in += len(data)
                for outcome in await asyncio.to_thread(_filter_block, data, rules):
                    stats.records_in += outcome.records_in
                    stats.records_out += outcome.records_out
                    if outcome.oldest_clean_tombstone is not None and oldest_tombstone is None:
                        oldest_tombstone = outcome.oldest_clean_tombstone
                    if outcome.horizon is not None:
                        horizons.append(outcome.horizon)
                    if outcome.removed_marker is not None:
                        removed_markers.add(outcome.removed_marker)
                    if outcome.data is not None:
                        out.add(outcome.data)
                if out.full():
                    written.append(await self._write(out, None, part))
            if out.batches:
                written.append(await self._write(out, plan.end, part))
            async with self.lock:
                new = [_segment(key, row) for _, key, row in written]
                if not self.is_current(held) or not part.replace_prefix(plan.pieces, new):
                    log.info("key compaction result dropped: the partition changed meanwhile",
                             topic=part.topic, partition=part.index)
                    return False
                if removed_markers:  # with its marker gone, an aborted-index entry would hide later data
                    part.txn_aborted = [a for a in part.txn_aborted if a[2] not in removed_markers]
                if mapped_upto > part.compacted_upto:
                    part.compacted_upto = mapped_upto
                    part.compaction_marks = _pruned([*marks, [mapped_upto, now_ms]], part.log_start)
                first_cleaned = next((ms for upto, ms in part.compaction_marks if oldest_tombstone is not None
                                      and upto > oldest_tombstone), None)
                due = [*horizons, *([first_cleaned + settings.delete_retention_ms] if first_cleaned is not None
                                    else [])]
                part.compaction_due_ms = min(due, default=None)  # in the checkpoint: a successor knows too
                held.dirty = True
                if written:
                    self.consolidator.swapped_seq = max(self.consolidator.swapped_seq,
                                                        max(seq for seq, _, _ in written))
        finally:
            for seq, _, _ in written:
                self._unswapped.discard(seq)
        stats.bytes_out = sum(row[7] for _, _, row in written)
        stats.seconds = time.perf_counter() - t0
        self._account(stats)
        log.info("key compaction pass", topic=part.topic, partition=part.index, start=plan.start, end=plan.end,
                 mapped_upto=mapped_upto, records_in=stats.records_in, records_out=stats.records_out,
                 bytes_in=stats.bytes_in, bytes_out=stats.bytes_out, map_entries=keys.peak_entries,
                 objects=len(written), ms=round(stats.seconds * 1000, 1))
        return True

    async def _write(self, out: _Output, last: int | None, part: Partition) -> tuple[int, str, list[Any]]:
        seq = self.consolidator.next_seq
        self.consolidator.next_seq += 1
        self._unswapped.add(seq)
        body, row = out.cut(last, part.topic_id, part.index, part.epoch)
        key = layout.consolidated_key(self.node_id, self.session, seq)
        try:
            await retrying(lambda: self.store.put(key, body, if_none_match=True), attempts=10)
        except PreconditionFailed:
            existing = await retrying(lambda: self.store.get(key))
            if existing.data != body:
                raise
        return seq, key, row

    def _account(self, s: PassStats) -> None:
        t = self.stats
        t.passes += s.passes
        t.bytes_in += s.bytes_in
        t.bytes_out += s.bytes_out
        t.records_in += s.records_in
        t.records_out += s.records_out
        t.peak_map_entries = max(t.peak_map_entries, s.peak_map_entries)
        t.peak_map_bytes = max(t.peak_map_bytes, s.peak_map_bytes)
        t.seconds += s.seconds
        metrics.KEY_COMPACTION_PASSES.inc(s.passes)
        metrics.KEY_COMPACTION_BYTES.labels("in").inc(s.bytes_in)
        metrics.KEY_COMPACTION_BYTES.labels("out").inc(s.bytes_out)
        metrics.KEY_COMPACTION_MAP_PEAK_BYTES.set(t.peak_map_bytes)


def _map_block(data: bytes | bytearray, keys: KeyMap, first: int, aborted: Aborted) -> int | None:
    """Map a block's keys; the base offset of the first batch that no longer fits, or None."""
    for batch in records.iter_batches(data):
        head = records.header(batch)
        if head.last_offset < first:
            continue
        if not keys.has_room_for(head.records_count):
            return head.base_offset
        map_batch(batch, keys, first, aborted)
    return None


def _filter_block(data: bytes | bytearray, rules: Rules) -> list[Outcome]:
    return [filter_batch(batch, rules) for batch in records.iter_batches(data)]


def _segment(key: str, row: list[Any]) -> Segment:
    end = row[6] + row[7]
    entries = [Chunk(b, lst, ts, sz, key=key, pos=p, span_end=end) for b, lst, ts, p, sz in row[8]]
    return Segment(row[3], row[4], row[5], row[7], key, entries=entries)


def _pruned(marks: list[list[int]], log_start: int) -> list[list[int]]:
    """Marks still needed: those above the log start, at most MAX_MARKS (merging keeps the later time)."""
    kept = [m for m in marks if m[0] > log_start]
    while len(kept) > MAX_MARKS:
        del kept[0]  # its offsets now take the next mark's (later) time: tombstones stay longer, never shorter
    return kept
