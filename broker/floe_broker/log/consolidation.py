"""Consolidation: many partitions' durable WAL ranges rewritten into few large objects.

Why: one object per partition per round made consolidation's PUTs grow with
partitions (1,000 partitions: ~1,000 objects of a few KB a minute), and a
catch-up read then cost one GET per tiny object. Instead, each maintenance
round takes every partition whose durable WAL run below the high watermark
is due (``compact_after_bytes`` of it, or ``compact_after_ms`` since the
partition's last consolidation), packs the runs into objects of up to
``target_bytes`` (``data/s/<node>/<session>/<seq>``, create-only) and swaps
each run for a segment naming its range. A run that alone fills an object is
split at chunk boundaries into objects of its own. While the round's last
object has room, runs that are at least half due join it, so partitions
drift into the same rounds and share objects.

The object's index has one entry per partition range with that range's
block-level index (``formats.RangeEntry``), so a reader of one partition
finds its bytes with one suffix GET. Objects are never deleted here: the WAL
collector deletes one only when no checkpoint references any range in it.

(Kafka's key *compaction*, `cleanup.policy=compact`, is a different job: `log/compaction/`.)
"""

from __future__ import annotations

import asyncio
import bisect
import time
from dataclasses import dataclass
from typing import Any

import structlog

from ..errors import PreconditionFailed
from ..storage import layout
from ..storage.objectstore import ObjectStore, retrying
from . import formats
from .cache import BlockCache
from .held import Held
from .partition import Chunk, Segment

log = structlog.get_logger(__name__)

COPY_SLICE = 4 * 1024 * 1024
INDEX_SLICE = 4096  # chunks indexed between two turns of the event loop


@dataclass(eq=False)
class Run:
    """A partition's consecutive durable WAL chunks, at ``first`` in its pieces."""

    held: Held
    first: int
    chunks: list[Chunk]

    @property
    def size(self) -> int:
        return sum(c.size for c in self.chunks)


def durable_run(held: Held) -> Run | None:
    """The WAL chunks right after the partition's segments that are durable and below the HW."""
    part = held.partition
    first = next((i for i, p in enumerate(part.pieces) if isinstance(p, Chunk)), None)
    if first is None:
        return None
    chunks: list[Chunk] = []
    for piece in part.pieces[first:]:
        if not isinstance(piece, Chunk) or not piece.durable or piece.last >= part.high_watermark:
            break
        chunks.append(piece)
    return Run(held, first, chunks) if chunks else None


class Consolidator:
    def __init__(self, store: ObjectStore, cache: BlockCache, *, node_id: int, session: str,
                 target_bytes: int, after_bytes: int, after_ms: int, index_block: int) -> None:
        self.store = store
        self.cache = cache
        self.node_id = node_id
        self.session = session
        self.target_bytes = max(1, target_bytes)
        self.after_bytes = after_bytes
        self.after_s = after_ms / 1000
        self.index_block = index_block
        self.next_seq = 1
        self.swapped_seq = 0  # every object <= this is swapped into its partitions
        self.objects_written = 0
        self.bytes_written = 0

    def _due(self, run: Run, now: float, fraction: float) -> bool:
        age = now - run.held.last_consolidation
        return run.size >= self.after_bytes * fraction or age >= self.after_s * fraction

    async def run(self, helds: list[Held]) -> None:
        """One round over the partitions this broker leads (under the maintenance lock)."""
        now = time.monotonic()
        runs = [r for h in helds if h.partition.accepting and (r := durable_run(h)) is not None]
        due = [r for r in runs if self._due(r, now, 1.0)]
        if not due:
            return
        bins = self._pack(due)
        fill = bins[-1]
        room = self.target_bytes - sum(r.size for r in fill)
        chosen = {id(r) for r in due}
        for r in runs:
            if room <= 0:
                break
            if id(r) not in chosen and r.size <= room and self._due(r, now, 0.5):
                fill.append(r)
                room -= r.size
        for group in bins:
            await self._write(group)

    def _pack(self, runs: list[Run]) -> list[list[Run]]:
        """Runs into objects of up to ``target_bytes``; a run that fills one alone is split."""
        bins: list[list[Run]] = []
        current: list[Run] = []
        size = 0
        for run in runs:
            if run.size >= self.target_bytes:
                for piece in self._split(run):
                    bins.append([piece])
                continue
            if current and size + run.size > self.target_bytes:
                bins.append(current)
                current, size = [], 0
            current.append(run)
            size += run.size
        if current:
            bins.append(current)
        return bins

    def _split(self, run: Run) -> list[Run]:
        out: list[Run] = []
        chunks: list[Chunk] = []
        size = 0
        first = run.first
        for c in run.chunks:
            if chunks and size + c.size > self.target_bytes:
                out.append(Run(run.held, first, chunks))
                first += len(chunks)
                chunks, size = [], 0
            chunks.append(c)
            size += c.size
        if chunks:
            out.append(Run(run.held, first, chunks))
        return out

    async def _write(self, group: list[Run]) -> None:
        parts: list[bytes | bytearray] = []
        index: list[list[Any]] = []
        pos = 0
        indexed = 0
        for run in group:
            part = run.held.partition
            start = pos
            blocks: list[list[int]] = []
            block: list[int] | None = None
            for c in run.chunks:
                # A round over thousands of partitions indexes a chunk per flush each was in:
                # let produce and fetch have their turns meanwhile.
                indexed += 1
                if indexed % INDEX_SLICE == 0:
                    await asyncio.sleep(0)
                data = c.data if c.data is not None else await self.cache.read(c.key or "", c.pos, c.size)
                parts.append(data)
                if block is None or block[4] >= self.index_block:
                    block = [c.base, c.last, c.max_ts, pos, 0]
                    blocks.append(block)
                block[1] = c.last
                block[2] = max(block[2], c.max_ts)
                block[4] += c.size
                pos += c.size
            index.append([part.topic_id, part.index, part.epoch, run.chunks[0].base, run.chunks[-1].last,
                          max(c.max_ts for c in run.chunks), start, pos - start, blocks])
        # Tens of MiB: copy a few MiB at a time so the event loop keeps its turns.
        buf = bytearray()
        copied = 0
        for data in parts:
            buf += data
            copied += len(data)
            if copied >= COPY_SLICE:
                copied = 0
                await asyncio.sleep(0)
        buf += formats.object_tail(index, formats.CONSOLIDATED_MAGIC)
        body = buf
        seq = self.next_seq
        self.next_seq += 1
        key = layout.consolidated_key(self.node_id, self.session, seq)
        try:
            await retrying(lambda: self.store.put(key, body, if_none_match=True), attempts=10)
        except PreconditionFailed:
            existing = await retrying(lambda: self.store.get(key))
            if existing.data != body:
                log.error("consolidation target exists with other content", key=key)
                return
        self.objects_written += 1
        self.bytes_written += len(body)
        now = time.monotonic()
        for run, row in zip(group, index, strict=True):
            self._swap(run, key, row, now)
        self.swapped_seq = seq
        log.debug("consolidated", key=key, partitions=len(group), bytes=len(body))

    @staticmethod
    def _swap(run: Run, key: str, row: list[Any], now: float) -> None:
        part = run.held.partition
        count = len(run.chunks)
        # Appends only grow the list at the end, and an earlier piece of a split
        # run may just have been swapped: find the run by its base offset.
        first = bisect.bisect_left(part.bases, run.chunks[0].base)
        if part.pieces[first : first + count] != run.chunks:
            return  # the partition was closed or changed meanwhile: leave its WAL chunks
        end = row[6] + row[7]
        entries = [Chunk(b, lst, ts, sz, key=key, pos=p, span_end=end) for b, lst, ts, p, sz in row[8]]
        segment = Segment(run.chunks[0].base, run.chunks[-1].last, row[5], row[7], key, entries=entries)
        part.pieces[first : first + count] = [segment]
        part.bases[first : first + count] = [segment.base]
        run.held.last_consolidation = now
        run.held.dirty = True
