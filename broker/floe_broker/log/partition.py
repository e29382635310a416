"""One partition led by this broker: offsets, high watermark, and where bytes live.

The log is a sorted list of *chunks*. A chunk is the record batches of one
produce request for this partition (contiguous offsets), or, once loaded
from a checkpoint or recovered, one contiguous byte range of a WAL object.
Consolidated history is a list of :class:`Segment` objects: ranges of data
objects (a consolidated object holds many partitions' ranges), whose
fine-grained index sits in the object's footer and is loaded on first read.

Offsets are assigned at append time (``next_offset``). The high watermark
only moves when the WAL object holding a chunk, and every earlier WAL object
of this session, is durable (I2, docs/architecture.md#i2-ack--durable); consumers never see beyond it (I5).
``log_start`` only grows (retention) and ``next_offset`` never goes back, even
when every byte has expired (I4).
"""

from __future__ import annotations

import asyncio
import bisect
import struct
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from ..errors import BadObject, NotLeader, OffsetOutOfRange, SequenceError
from ..protocol import records
from . import formats, record_times
from .epochs import EpochHistory


@dataclass(slots=True, eq=False)
class Chunk:
    base: int
    last: int
    max_ts: int
    size: int
    key: str | None = None  # the object holding these bytes; None until durable
    pos: int = 0
    data: bytes | bytearray | None = None  # in-memory copy (recent data)
    # End of this partition's range in a shared object: read-ahead stops there (0: no bound).
    span_end: int = 0

    @property
    def durable(self) -> bool:
        return self.key is not None


@dataclass(slots=True, eq=False)
class Segment:
    """One partition's range of a data object: many chunks' worth of its batches."""

    base: int
    last: int
    max_ts: int
    size: int
    key: str
    entries: list[Chunk] | None = None  # loaded from the object's footer on demand


Piece = Chunk | Segment

class RangeReader(Protocol):
    """Reads an object byte range (through the block cache); ``until`` bounds read-ahead."""

    def __call__(self, key: str, pos: int, size: int, until: int = 0) -> Awaitable[bytes]: ...


SuffixReader = Callable[[str, int], Awaitable[bytes]]

# Starts loading an object byte range in the background (``BlockCache.prefetch``).
Prefetcher = Callable[[str, int, int], None]

# How many pieces past the one being read a fetch starts loading at once.
READ_AHEAD_PIECES = 16


SEQ_MOD = 1 << 31
RECENT_BATCHES = 5  # Kafka clients keep at most 5 requests in flight with idempotence


@dataclass(slots=True)
class ProducerState:
    """Per producer id: epoch, last sequence, and its last few batches for retries."""

    epoch: int
    last_seq: int
    last_offset: int
    # (first_seq, last_seq, base_offset, last_offset) of recent batches, oldest first
    recent: list[list[int]] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Duplicate:
    """A retried batch already in the log: answer with its original offsets."""

    base: int
    last: int


@dataclass(eq=False)
class Partition:
    topic: str
    topic_id: str
    index: int
    epoch: int
    log_start: int = 0
    next_offset: int = 0
    high_watermark: int = 0
    pieces: list[Piece] = field(default_factory=list)
    bases: list[int] = field(default_factory=list)
    producers: dict[int, ProducerState] = field(default_factory=dict)
    accepting: bool = True  # False while moving away: produce gets NOT_LEADER
    # Transactions (docs/architecture.md#transactions): producer id -> first offset of its open
    # transaction here, and the aborted-transaction index [producer id, first offset, marker offset].
    txn_open: dict[int, int] = field(default_factory=dict)
    txn_aborted: list[list[int]] = field(default_factory=list)
    _waiters: set[asyncio.Future[None]] = field(default_factory=set)
    # Key compaction (log.compaction): offsets below compacted_upto were compacted at least once;
    # compaction_marks are [upto, ms] pairs, ascending: offsets below upto were first compacted at ms.
    compacted_upto: int = 0
    compaction_marks: list[list[int]] = field(default_factory=list)
    compaction_due_ms: int | None = None  # the first delete horizon of a kept tombstone or marker
    # Which leader epoch wrote which offsets (log.epochs): OffsetForLeaderEpoch, ListOffsets' epochs.
    epoch_history: EpochHistory = field(default_factory=EpochHistory)

    # ---- write path -------------------------------------------------------

    def append(self, data: bytes | bytearray | memoryview, batches: list[records.BatchInfo]) -> Chunk:
        """Assign offsets to validated batches and add them as one pending chunk."""
        if not self.accepting:
            raise NotLeader(f"{self.topic}-{self.index} is moving")
        patched, last = records.assign_offsets(data, batches, self.next_offset, self.epoch)
        chunk = Chunk(
            base=self.next_offset,
            last=last,
            max_ts=max(b.max_timestamp for b in batches),
            size=len(patched),
            data=patched,
        )
        self._add(chunk)
        self.next_offset = last + 1
        return chunk

    def append_at(self, data: bytes | bytearray | memoryview, batches: list[records.BatchInfo]) -> Chunk:
        """Add batches that carry their own offsets (a linked topic's mirror), as one pending chunk.

        Nothing is reassigned: each batch keeps the base offset it has on the
        source, so gaps between batches (key compaction, a retention start)
        stay gaps; only the leader epoch is stamped, outside the CRC, as on
        produce. Offsets never go back (I4): the first batch must start at or
        after ``next_offset`` and each one after the one before.
        """
        if not self.accepting:
            raise NotLeader(f"{self.topic}-{self.index} is moving")
        patched, bases = records.stamp_leader_epoch(data, batches, self.epoch)
        expected = self.next_offset
        for base, info in zip(bases, batches, strict=True):
            if base < expected:
                raise records.OffsetOrderError(
                    f"{self.topic}-{self.index}: batch at {base} is below the next offset {expected}")
            expected = base + info.record_count
        chunk = Chunk(base=bases[0], last=expected - 1, max_ts=max(b.max_timestamp for b in batches),
                      size=len(patched), data=patched)
        self._add(chunk)
        self.next_offset = expected
        return chunk

    def _add(self, piece: Piece) -> None:
        self.pieces.append(piece)
        self.bases.append(piece.base)

    def advance_high_watermark(self, offset: int) -> None:
        if offset > self.high_watermark:
            self.high_watermark = offset
            self._wake()

    def _wake(self) -> None:
        for fut in self._waiters:
            if not fut.done():
                fut.set_result(None)
        self._waiters.clear()

    def waiter(self) -> asyncio.Future[None]:
        """A future completed the next time the high watermark moves (long-poll fetch)."""
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.add(fut)
        return fut

    def notify(self, fut: asyncio.Future[None]) -> None:
        """Complete ``fut`` the next time the high watermark moves: one future can wait on
        many partitions (a long-poll fetch of thousands), where a future each costs as much
        again in callbacks. Pair with :meth:`forget`."""
        self._waiters.add(fut)

    def forget(self, fut: asyncio.Future[None]) -> None:
        self._waiters.discard(fut)

    def close(self) -> None:
        self.accepting = False
        self._wake()

    # ---- idempotent producers ---------------------------------------------

    def check_sequence(self, pid: int, epoch: int, first_seq: int, last_seq: int) -> Duplicate | None:
        """Decide what to do with a batch from an idempotent producer.

        Returns a Duplicate for a retry of a batch already appended, None to
        append; raises SequenceError for a stale epoch (47) or a gap (45).
        """
        state = self.producers.get(pid)
        if state is None:
            return None  # first batch we see from it (or its state expired): accept
        if epoch < state.epoch:
            raise SequenceError(47, f"producer {pid} epoch {epoch} is older than {state.epoch}")
        if epoch > state.epoch:
            if first_seq != 0:
                raise SequenceError(45, f"producer {pid} new epoch {epoch} must start at sequence 0")
            return None
        for f, last, base, last_off in state.recent:
            if f == first_seq and last == last_seq:
                return Duplicate(base, last_off)
        if first_seq == (state.last_seq + 1) % SEQ_MOD:
            return None
        if state.recent and _seq_before(first_seq, state.recent[0][0]):
            raise SequenceError(46, f"producer {pid} sequence {first_seq} is an old duplicate")
        raise SequenceError(45, f"producer {pid} expected sequence {(state.last_seq + 1) % SEQ_MOD}, got {first_seq}")

    def record_producer(self, pid: int, epoch: int, first_seq: int, last_seq: int, base: int, last: int) -> None:
        state = self.producers.get(pid)
        if state is None or epoch != state.epoch:
            state = self.producers[pid] = ProducerState(epoch, last_seq, last)
        state.last_seq, state.last_offset = last_seq, last
        state.recent.append([first_seq, last_seq, base, last])
        del state.recent[:-RECENT_BATCHES]

    def rebuild_producers(self, data: bytes | bytearray | memoryview) -> None:
        """Producer state from stored batches (tail recovery after a crash)."""
        for h in records.iter_headers(data):
            pid, epoch, seq, count = records.producer_fields(data, h.position)
            if pid >= 0 and not _attributes(data, h.position) & records.ATTR_CONTROL:
                self.record_producer(pid, epoch, seq, (seq + count - 1) % SEQ_MOD, h.base_offset, h.last_offset)
        self.rebuild_transactions(data)

    # ---- transactions -------------------------------------------------------------------

    @property
    def last_stable_offset(self) -> int:
        """First offset of the earliest open transaction, else the high watermark (never above it)."""
        return min(min(self.txn_open.values(), default=self.high_watermark), self.high_watermark)

    def note_transactional(self, pid: int, base: int) -> None:
        """A transactional batch was appended at ``base``: its transaction is open here from its first one."""
        self.txn_open.setdefault(pid, base)

    def fence_epoch(self, pid: int, epoch: int) -> None:
        """A marker of ``epoch`` is on its way: older epochs of the producer may not write any more."""
        state = self.producers.get(pid)
        if state is not None and epoch > state.epoch:
            state.epoch, state.last_seq, state.recent = epoch, -1, []

    def end_transaction(self, pid: int, commit: bool, marker_offset: int) -> None:
        """The producer's commit or abort marker at ``marker_offset`` is durable: close its transaction."""
        first = self.txn_open.pop(pid, None)
        if not commit and first is not None:
            self.txn_aborted.append([pid, first, marker_offset])
        self._wake()  # the last stable offset may have moved: read_committed fetches look again

    def close_mirrored_transactions(self, data: bytes | bytearray | memoryview,
                                    markers: list[records.BatchInfo]) -> None:
        """A linked topic's durable commit and abort markers close their transactions here too."""
        for info in markers:
            kind = _control_type(data, info.position)
            if kind in (CONTROL_ABORT, CONTROL_COMMIT):
                base = records.base_offsets(data, [info])[0]
                self.fence_epoch(info.producer_id, info.producer_epoch)
                self.end_transaction(info.producer_id, kind == CONTROL_COMMIT, base)

    def aborted_between(self, first: int, last: int) -> list[tuple[int, int]]:
        """(producer id, first offset) of aborted transactions overlapping ``first..last`` (Fetch's list)."""
        return [(pid, f) for pid, f, end in self.txn_aborted if end >= first and f <= last]

    def rebuild_transactions(self, data: bytes | bytearray | memoryview) -> None:
        """Open transactions and the aborted index from stored batches (after the checkpoint's)."""
        for h in records.iter_headers(data):
            attrs = _attributes(data, h.position)
            if not attrs & records.ATTR_TRANSACTIONAL:
                continue
            pid = records.producer_fields(data, h.position)[0]
            if attrs & records.ATTR_CONTROL:
                kind = _control_type(data, h.position)
                if kind in (CONTROL_ABORT, CONTROL_COMMIT):
                    self.fence_epoch(pid, records.producer_fields(data, h.position)[1])
                    self.end_transaction(pid, kind == CONTROL_COMMIT, h.base_offset)
            else:
                self.note_transactional(pid, h.base_offset)

    def _txn_body(self) -> dict[str, Any]:
        """The durable part, as of the high watermark the checkpoint stops at.

        A transaction whose abort marker is durable but not yet below the high
        watermark is still open as far as the checkpoint goes: a successor
        finds the marker in the WAL tail and closes it again, adding the abort
        to its index. Left out of both lists, the successor would see the
        marker with no open transaction and serve the aborted data as committed.
        """
        hw = self.high_watermark
        still_open = {pid: first for pid, first in self.txn_open.items() if first < hw}
        for pid, first, end in self.txn_aborted:
            if end >= hw and first < hw:
                still_open.setdefault(pid, first)
        return {"open": {str(pid): first for pid, first in still_open.items()},
                "aborted": [a for a in self.txn_aborted if a[2] >= self.log_start and a[2] < hw]}

    def _load_txn_body(self, body: dict[str, Any]) -> None:
        self.txn_open = {int(pid): int(first) for pid, first in body.get("open", {}).items()}
        self.txn_aborted = [[int(x) for x in a] for a in body.get("aborted", [])]

    # ---- read path --------------------------------------------------------

    async def read(
        self,
        offset: int,
        max_bytes: int,
        read_range: RangeReader,
        read_suffix: SuffixReader,
        *,
        strict_max: bool = False,
        until: int | None = None,
        prefetch: Prefetcher | None = None,
        deadline: float | None = None,
    ) -> list[memoryview]:
        """Whole batches from the one containing ``offset`` up to the high watermark
        (or ``until``, below it: the last stable offset for read_committed).

        Returns at least one batch when any is available, even if it is larger
        than ``max_bytes`` (Kafka's rule, so consumers always make progress),
        unless ``strict_max`` is set because an earlier partition in the same
        response already used the budget.

        ``prefetch`` starts the GETs of the next durable chunks the budget will
        likely reach, so a tail spread over many WAL objects is fetched in
        parallel rather than one round trip at a time. Once ``deadline``
        (``time.monotonic()``) has passed and something is read, the read stops
        there: on a slow store a consumer gets what is ready within its
        ``max_wait`` instead of one answer after all of it.
        """
        if offset < self.log_start or offset > self.high_watermark:
            raise OffsetOutOfRange(
                f"offset {offset} outside [{self.log_start}, {self.high_watermark}]"
            )
        out: list[memoryview] = []
        total = 0
        wanted = offset
        stop = self.high_watermark if until is None else min(until, self.high_watermark)
        while wanted < stop and total < max_bytes:
            if out and deadline is not None and time.monotonic() >= deadline:
                return out
            i = bisect.bisect_right(self.bases, wanted) - 1
            piece = self.pieces[i] if i >= 0 and self.pieces[i].last >= wanted else None
            if piece is not None and prefetch is not None:
                self._read_ahead(i, max_bytes - total, prefetch)
            if piece is None:
                # Key compaction may leave a range with no batch at all: go on at the next piece.
                following = self._next_base_after(wanted)
                if following is None:
                    break
                wanted = following
                continue
            chunk = await self._chunk_for(piece, wanted, read_suffix)
            if chunk is None or chunk.last >= self.high_watermark and not chunk.durable:
                break
            data = await self._chunk_bytes(chunk, read_range)
            progressed = False
            for h in records.iter_headers(data):
                if h.last_offset < wanted:
                    continue
                if h.base_offset >= stop:
                    break
                if total + h.size > max_bytes and (out or strict_max):
                    return out
                out.append(memoryview(data)[h.position : h.position + h.size])
                total += h.size
                wanted = h.last_offset + 1
                progressed = True
                if total >= max_bytes:
                    return out
            if not progressed:
                # Nothing usable in this chunk (e.g. trimmed): skip past it.
                wanted = max(wanted, chunk.last + 1)
        return out

    def _read_ahead(self, i: int, budget: int, prefetch: Prefetcher) -> None:
        """Start loading the durable chunks after ``pieces[i]`` that ``budget`` more bytes reach.

        Consolidated segments are skipped: their objects are read in large
        blocks with their own read-ahead (``BlockCache``).
        """
        end = min(len(self.pieces), i + 1 + READ_AHEAD_PIECES)
        for piece in self.pieces[i + 1 : end]:
            if budget <= 0:
                return
            if isinstance(piece, Chunk) and piece.data is None and piece.key is not None:
                prefetch(piece.key, piece.pos, piece.size)
            budget -= piece.size

    def _next_base_after(self, offset: int) -> int | None:
        i = bisect.bisect_right(self.bases, offset)
        return self.bases[i] if i < len(self.bases) else None

    async def _chunk_for(self, piece: Piece, offset: int, read_suffix: SuffixReader) -> Chunk | None:
        if isinstance(piece, Chunk):
            return piece
        entries = await load_segment_entries(piece, read_suffix, self.topic_id, self.index)
        bases = [e.base for e in entries]
        i = bisect.bisect_right(bases, offset) - 1
        return entries[i] if i >= 0 else None

    @staticmethod
    async def _chunk_bytes(chunk: Chunk, read_range: RangeReader) -> bytes | bytearray:
        if chunk.data is not None:
            return chunk.data
        assert chunk.key is not None
        return await read_range(chunk.key, chunk.pos, chunk.size, chunk.span_end)

    async def offset_for_timestamp(
        self, ts: int, read_range: RangeReader, read_suffix: SuffixReader
    ) -> record_times.Found | None:
        """The first record at or after the log start with timestamp >= ts, below the HW.

        Only the batches whose max timestamp allows it are decoded, one at a
        time, compressed ones in a thread (``log.record_times``).
        """
        for piece in list(self.pieces):
            if piece.max_ts < ts or piece.base >= self.high_watermark or piece.last < self.log_start:
                continue
            chunks = ([piece] if isinstance(piece, Chunk)
                      else await load_segment_entries(piece, read_suffix, self.topic_id, self.index))
            for chunk in chunks:
                if chunk.max_ts < ts or chunk.base >= self.high_watermark or chunk.last < self.log_start:
                    continue
                data = await self._chunk_bytes(chunk, read_range)
                for h in records.iter_headers(data):
                    if h.max_timestamp < ts or h.last_offset < self.log_start:
                        continue
                    if h.base_offset >= self.high_watermark:
                        return None
                    batch = memoryview(data)[h.position : h.position + h.size]
                    if record_times.is_compressed(batch):
                        found = await asyncio.to_thread(record_times.first_at_or_after, bytes(batch), ts,
                                                        self.log_start)
                    else:
                        found = record_times.first_at_or_after(batch, ts, self.log_start)
                    if found is not None:
                        return found if found.offset < self.high_watermark else None
        return None

    def max_timestamp(self) -> tuple[int, int] | None:
        best: tuple[int, int] | None = None
        for piece in self.pieces:
            if piece.base >= self.high_watermark:
                break
            if best is None or piece.max_ts > best[1]:
                best = (piece.base, piece.max_ts)
        return best

    # ---- retention helpers ---------------------------------------------------

    def trim_before(self, offset: int) -> None:
        """Move the log start forward to ``offset`` (never past the high watermark, never back: I4).

        Records below it are no longer served; whole segments below it are
        dropped by the next maintenance round, and their objects deleted by the
        collector once no checkpoint references them.
        """
        self.log_start = max(self.log_start, min(offset, self.high_watermark))

    def drop_prefix(self, count: int) -> list[Piece]:
        dropped = self.pieces[:count]
        del self.pieces[:count]
        del self.bases[:count]
        if self.pieces:
            self.log_start = max(self.log_start, self.pieces[0].base)
        else:
            self.log_start = max(self.log_start, self.next_offset)
        return dropped

    # ---- key compaction (log.compaction) ---------------------------------------

    def compaction_body(self) -> dict[str, Any]:
        """The compaction progress a checkpoint carries (nothing for a never-compacted partition)."""
        if not self.compacted_upto:
            return {}
        state: dict[str, Any] = {"upto": self.compacted_upto, "marks": self.compaction_marks}
        if self.compaction_due_ms is not None:
            state["due"] = self.compaction_due_ms
        return {"compaction": state}

    def load_compaction_body(self, body: dict[str, Any]) -> None:
        state = body.get("compaction") or {}
        self.compacted_upto = int(state.get("upto", 0))
        self.compaction_marks = [list(m) for m in state.get("marks", [])]
        self.compaction_due_ms = int(state["due"]) if state.get("due") is not None else None

    def replace_prefix(self, old: Sequence[Piece], new: Sequence[Segment]) -> bool:
        """Swap the first pieces, if they are still ``old``, for ``new`` (a compacted copy of them).

        One synchronous step, so a reader sees either the old pieces or the
        new ones; both hold the same value at every offset they hold.
        """
        count = len(old)
        if len(self.pieces) < count or any(a is not b for a, b in zip(self.pieces[:count], old, strict=True)):
            return False
        self.pieces[:count] = new
        self.bases[:count] = [s.base for s in new]
        return True

    # ---- checkpoint --------------------------------------------------------

    def checkpoint_body(self) -> dict[str, Any]:
        """Durable state only: segments and durable WAL ranges below the HW."""
        segments: list[list[Any]] = []
        wal: list[list[Any]] = []
        for piece in self.pieces:
            if isinstance(piece, Segment):
                segments.append([piece.key, piece.base, piece.last, piece.max_ts, piece.size])
            elif piece.durable and piece.last < self.high_watermark:
                prev = wal[-1] if wal else None
                if prev and prev[0] == piece.key and prev[1] + prev[2] == piece.pos:
                    prev[2] += piece.size
                    prev[4] = piece.last
                    prev[5] = max(prev[5], piece.max_ts)
                else:
                    wal.append([piece.key, piece.pos, piece.size, piece.base, piece.last, piece.max_ts])
        return {
            "log_start": self.log_start,
            "next_offset": self.high_watermark,
            "segments": segments,
            "wal": wal,
            "producers": {
                str(pid): [s.epoch, s.last_seq, s.last_offset, s.recent] for pid, s in self.producers.items()
            },
            "txn": self._txn_body(),
            "epochs": self.epoch_history.to_body(self.log_start),
            **self.compaction_body(),
        }

    def load_checkpoint_body(self, body: dict[str, Any]) -> None:
        self.pieces.clear()
        self.bases.clear()
        for key, base, last, max_ts, size in body.get("segments", []):
            self._add(Segment(base, last, max_ts, size, key))
        for key, pos, size, base, last, max_ts in body.get("wal", []):
            self._add(Chunk(base, last, max_ts, size, key=key, pos=pos))
        self.log_start = body.get("log_start", 0)
        self.next_offset = body.get("next_offset", 0)
        self.high_watermark = self.next_offset
        self.producers = {
            int(pid): ProducerState(v[0], v[1], v[2], [list(r) for r in (v[3] if len(v) > 3 else [])])
            for pid, v in body.get("producers", {}).items()
        }
        self._load_txn_body(body.get("txn", {}))
        self.load_compaction_body(body)
        self.epoch_history = EpochHistory.from_body(body.get("epochs", []))

    def add_recovered(self, entry: formats.WalEntry, key: str) -> None:
        """A chunk found in a dead (fenced) session's WAL after the checkpoint."""
        if entry.last < self.next_offset:
            return  # already covered by the checkpoint
        self._add(Chunk(entry.base, entry.last, entry.max_ts, entry.size, key=key, pos=entry.pos))
        self.next_offset = entry.last + 1
        self.high_watermark = self.next_offset


async def load_segment_entries(segment: Segment, read_suffix: SuffixReader, topic_id: str,
                               partition: int) -> list[Chunk]:
    """Fine-grained index of a segment, from its object's footer (cached on the segment).

    A one-partition data object's index is the segment's; a consolidated
    object's index holds every partition's range, and this segment's is the
    one for this partition starting at the segment's base offset.
    """
    if segment.entries is not None:
        return segment.entries
    suffix = await read_suffix(segment.key, formats.SUFFIX_GUESS)
    index, length, magic = formats.index_from_suffix(suffix)
    if index is None:
        suffix = await read_suffix(segment.key, length + formats.FOOTER_SIZE)
        index, _, _ = formats.index_from_suffix(suffix)
    assert index is not None
    if magic == formats.CONSOLIDATED_MAGIC:
        rows = [r for r in formats.range_entries(index)
                if r.topic_id == topic_id and r.partition == partition and r.base == segment.base]
        if not rows:
            raise BadObject(f"{segment.key} has no range of {topic_id}/{partition} at {segment.base}")
        end = rows[0].pos + rows[0].size
        segment.entries = [Chunk(base, last, max_ts, size, key=segment.key, pos=pos, span_end=end)
                           for base, last, max_ts, pos, size in rows[0].blocks]
    else:
        segment.entries = [Chunk(base, last, max_ts, size, key=segment.key, pos=pos)
                           for base, last, max_ts, pos, size in index]
    return segment.entries


CONTROL_ABORT, CONTROL_COMMIT = 0, 1
_ATTRS = struct.Struct(">h")


def _attributes(data: bytes | bytearray | memoryview, position: int) -> int:
    return int(_ATTRS.unpack_from(data, position + 21)[0])


def _control_type(data: bytes | bytearray | memoryview, position: int) -> int:
    """The type (0 abort, 1 commit) in a control batch's one record key: version int16, type int16.

    Control batches are never compressed, so the key sits right after the record's
    length, attributes, timestamp delta, offset delta and key length varints.
    """
    view = memoryview(data)
    pos = position + records.HEADER_SIZE
    for _ in range(4):  # length, timestamp delta, offset delta, key length (attributes byte in between)
        while view[pos] & 0x80:
            pos += 1
        pos += 1
        if _ == 0:
            pos += 1  # the record's attributes byte
    return int(struct.unpack_from(">h", view, pos + 2)[0])


def _seq_before(a: int, b: int) -> bool:
    """a comes before b in the 31-bit sequence space."""
    return a != b and (b - a) % SEQ_MOD < SEQ_MOD // 2
