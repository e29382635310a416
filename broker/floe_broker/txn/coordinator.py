"""The transaction coordinator: shards of transactional ids per ``__transaction_state`` partition.

A transactional id lives in the ``__transaction_state`` partition its id
hashes to (Kafka's formula), and the broker leading that partition is its
coordinator. Each led partition gets a :class:`TxnShard`. Every state change
is a record (key: the transactional id, value: :class:`~.state.TxnMeta` as
JSON) appended through the shard's :class:`Journal`, and the client is
answered only once it is durable (I2, docs/architecture.md#i2-ack--durable).

A broker that starts leading a partition replays it; transactions left in
PrepareCommit or PrepareAbort are completed (markers written again: a
duplicate marker changes nothing), and Ongoing ones are aborted once their
``transaction.timeout.ms`` has passed since they started, so a crashed
coordinator never leaves a partition's last stable offset stuck.

Operations on one transactional id are serialised by a lock; markers and
group offsets are written by a :class:`Markers` implementation
(``txn_journal``), which reaches the partitions' leaders wherever they are.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Protocol

import structlog
from kio.schema.errors import ErrorCode

from ..errors import JournalClosed
from ..shards import Journal, ShardSet, partition_for
from . import state as sm
from .state import Init, Limits, Refused, Shelf, TxnMeta, TxnState

log = structlog.get_logger(__name__)

TXN_TOPIC = "__transaction_state"
TICK_S = 0.2
LOAD_EVERY_TICKS = 5
RETRY_S = 0.1
RETRY_MAX_S = 2.0
SNAPSHOT_AFTER = 10_000  # records in a partition before its live state is rewritten and the rest trimmed


class Markers(Protocol):
    async def write(self, meta: TxnMeta, commit: bool) -> None:
        """Make the transaction's end durable everywhere: a commit or abort marker on every partition
        and the end of its offsets in every group. Raises on any failure (the caller retries)."""


def _now_ms() -> int:
    return int(time.time() * 1000)


async def _quietly(durable: Awaitable[None]) -> None:
    try:
        await durable
    except JournalClosed:
        pass


class TxnShard:
    """The transactional ids of one ``__transaction_state`` partition led by this broker."""

    def __init__(self, partition: int, journal: Journal, markers: Markers, limits: Limits, *,
                 clock: Callable[[], int] = _now_ms, snapshot_after: int = SNAPSHOT_AFTER) -> None:
        self.partition = partition
        self.journal = journal
        self.markers = markers
        self.limits = limits
        self.clock = clock
        self.shelf = Shelf()
        self.closed = False
        self._locks: dict[str, asyncio.Lock] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        # Snapshots keep the replay short (see maybe_snapshot)
        self.snapshot_after = snapshot_after
        self.appended = 0  # records since the partition's start or the last snapshot
        self._inflight: dict[int, str] = {}  # first offset -> id, of appends not yet applied
        self._snapshotting = False

    @property
    def txns(self) -> dict[str, TxnMeta]:
        return self.shelf.txns

    async def load(self) -> None:
        records = 0
        async for key, value in self.journal.replay():
            records += 1
            try:
                self.shelf.apply(key.decode(), json.loads(value) if value is not None else None)
            except (ValueError, KeyError):
                log.warning("skipping undecodable record in transaction state", partition=self.partition)
        self.appended = records
        unfinished = [m for m in self.txns.values() if m.state.preparing]
        for meta in unfinished:
            self._spawn(self._finish_locked(meta.transactional_id))
        log.info("transaction coordinator loaded", partition=self.partition, transactions=len(self.txns),
                 records=records, completing=len(unfinished))

    def _lock(self, transactional_id: str) -> asyncio.Lock:
        return self._locks.setdefault(transactional_id, asyncio.Lock())

    def _spawn(self, coro: Awaitable[None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _persist(self, meta: TxnMeta) -> None:
        """Append the new state and apply it only once durable. Raises JournalClosed."""
        if self.closed:
            raise JournalClosed(f"{TXN_TOPIC}-{self.partition} is no longer led here")
        entry = (meta.transactional_id.encode(), json.dumps(meta.to_json()).encode())
        await self.journal.reserve(len(entry[0]) + len(entry[1]) + 64)
        base, durable = self.journal.append([entry])
        self._inflight[base] = meta.transactional_id
        try:
            await durable
        finally:
            del self._inflight[base]
        self.txns[meta.transactional_id] = meta
        self._appended(1)

    async def _finish(self, meta: TxnMeta) -> TxnMeta:
        """Write the markers of a prepared end until they are durable, then persist Complete*."""
        delay = RETRY_S
        while True:
            if self.closed:
                raise JournalClosed("coordinator moved")
            try:
                await self.markers.write(meta, meta.state is TxnState.PREPARE_COMMIT)
                break
            except JournalClosed:
                raise
            except Exception as exc:
                log.info("writing transaction markers failed; retrying", transactional_id=meta.transactional_id,
                         error=repr(exc))
                await asyncio.sleep(delay)
                delay = min(delay * 2, RETRY_MAX_S)
        done = sm.complete(meta, self.clock())
        await self._persist_behind(done)
        return done

    async def _persist_behind(self, meta: TxnMeta) -> None:
        """Append Complete* and apply it at once, without waiting for it to be durable.

        The markers are durable already, so the outcome is fixed everywhere; if
        this record is lost, a new coordinator finds Prepare* and writes the
        same markers again (a duplicate marker changes nothing). Anything the
        client does next is appended after it, so the journal stays in order.
        """
        if self.closed:
            raise JournalClosed(f"{TXN_TOPIC}-{self.partition} is no longer led here")
        entry = (meta.transactional_id.encode(), json.dumps(meta.to_json()).encode())
        await self.journal.reserve(len(entry[0]) + len(entry[1]) + 64)
        _, durable = self.journal.append([entry])
        self.txns[meta.transactional_id] = meta
        self._spawn(_quietly(durable))
        self._appended(1)

    # ---- snapshots ---------------------------------------------------------------------

    def _appended(self, n: int) -> None:
        self.appended += n
        if self.appended >= self.snapshot_after and not self._snapshotting and not self.closed:
            self._snapshotting = True
            self._spawn(self._snapshot())

    async def _snapshot(self) -> None:
        """Once the partition holds far more records than ids, append every id's current state and
        move the log start behind it, so a new coordinator replays little (the partition is
        otherwise only ever appended to). Ids whose new state is still on its way to durability
        stay out, and the cut stays at or below their records, which then win on replay."""
        try:
            if self.appended < 4 * max(len(self.txns), 1):
                return
            await self.journal.reserve(sum(len(k) + 300 for k in self.txns))
            pending = dict(self._inflight)
            skip = set(pending.values())
            entries: list[tuple[bytes, bytes | None]] = [
                (m.transactional_id.encode(), json.dumps(m.to_json()).encode())
                for m in self.txns.values() if m.transactional_id not in skip]
            if not entries:
                return
            base, durable = self.journal.append(entries)
            await durable
            cut = min([base, *pending])
            self.journal.trim_before(cut)
            log.info("transaction state snapshot", partition=self.partition, records=len(entries),
                     replaced=self.appended, log_start=cut)
            self.appended = len(entries)
        except JournalClosed:
            pass
        finally:
            self._snapshotting = False

    async def _finish_locked(self, transactional_id: str) -> None:
        try:
            async with self._lock(transactional_id):
                meta = self.txns.get(transactional_id)
                if meta is not None and meta.state.preparing:
                    await self._finish(meta)
        except JournalClosed:
            pass

    # ---- the APIs ----------------------------------------------------------------------

    async def init_producer(self, transactional_id: str, timeout_ms: int, expected: tuple[int, int],
                            new_producer_id: Callable[[], Awaitable[int]]) -> TxnMeta | Refused:
        async with self._lock(transactional_id):
            meta = self.txns.get(transactional_id)
            fresh = -1
            if meta is None or meta.producer_epoch >= sm.MAX_EPOCH - 2:
                fresh = await new_producer_id()
            plan = sm.init_producer(meta, transactional_id, timeout_ms, self.clock(), new_producer_id=fresh,
                                    expected=expected, limits=self.limits)
            if isinstance(plan, Refused):
                return plan
            assert isinstance(plan, Init)
            if plan.abort_first is not None:
                log.info("fencing a producer with an open transaction; aborting it",
                         transactional_id=transactional_id, producer_id=plan.abort_first.producer_id)
                await self._persist(plan.abort_first)
                await self._finish(plan.abort_first)
            await self._persist(plan.then)
            return plan.then

    async def add_partitions(self, transactional_id: str, producer_id: int, epoch: int,
                             partitions: set[tuple[str, int]]) -> ErrorCode:
        async with self._lock(transactional_id):
            meta = self.txns.get(transactional_id)
            if meta is None:
                return ErrorCode.invalid_producer_id_mapping
            new = sm.add_partitions(meta, producer_id, epoch, partitions, self.clock())
            return await self._apply(meta, new)

    async def add_group(self, transactional_id: str, producer_id: int, epoch: int, group: str) -> ErrorCode:
        async with self._lock(transactional_id):
            meta = self.txns.get(transactional_id)
            if meta is None:
                return ErrorCode.invalid_producer_id_mapping
            return await self._apply(meta, sm.add_group(meta, producer_id, epoch, group, self.clock()))

    async def _apply(self, meta: TxnMeta, new: TxnMeta | Refused) -> ErrorCode:
        if isinstance(new, Refused):
            return new.error
        if new is not meta:
            await self._persist(new)
        return ErrorCode.none

    async def end(self, transactional_id: str, producer_id: int, epoch: int, commit: bool) -> ErrorCode:
        async with self._lock(transactional_id):
            meta = self.txns.get(transactional_id)
            if meta is None:
                return ErrorCode.invalid_producer_id_mapping
            new = sm.end_txn(meta, producer_id, epoch, commit, self.clock())
            if isinstance(new, Refused):
                return new.error
            if new is not meta:
                await self._persist(new)
            if new.state.preparing:
                await self._finish(new)
            return ErrorCode.none

    def verify(self, transactional_id: str, producer_id: int, epoch: int, topic: str, partition: int) -> ErrorCode:
        return sm.in_transaction(self.txns.get(transactional_id), producer_id, epoch, topic, partition)

    # ---- timers ------------------------------------------------------------------------

    def tick(self) -> None:
        now = self.clock()
        for meta in list(self.txns.values()):
            if sm.expired(meta, now):
                self._spawn(self._abort_expired(meta.transactional_id))

    async def _abort_expired(self, transactional_id: str) -> None:
        lock = self._lock(transactional_id)
        if lock.locked():
            return  # a request is working on it; the next tick looks again
        try:
            async with lock:
                meta = self.txns.get(transactional_id)
                if meta is None or not sm.expired(meta, self.clock()):
                    return
                log.info("aborting a transaction past its timeout", transactional_id=transactional_id,
                         producer_id=meta.producer_id, timeout_ms=meta.timeout_ms)
                aborting = sm.timeout_abort(meta, self.clock())
                await self._persist(aborting)
                await self._finish(aborting)
        except JournalClosed:
            pass

    def close(self) -> None:
        self.closed = True
        for task in list(self._tasks):
            task.cancel()


class TxnCoordinator:
    """All transaction shards of this broker; finds (and loads) the shard for a transactional id."""

    def __init__(self, journal_for: Callable[[int], Awaitable[Journal | None]],
                 txn_partitions: Callable[[], int], markers: Markers, limits: Limits) -> None:
        self.journal_for = journal_for
        self.txn_partitions = txn_partitions  # 0 while the topic does not exist
        self.markers = markers
        self.limits = limits
        self.shard_set: ShardSet[TxnShard] = ShardSet(
            journal_for, lambda p, journal: TxnShard(p, journal, self.markers, self.limits),
            what="transaction state partition",
        )
        self.shards = self.shard_set.shards
        self._ticker: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._ticker = asyncio.create_task(self._tick_loop(), name="txn-ticker")

    async def stop(self) -> None:
        if self._ticker is not None:
            self._ticker.cancel()
        self.shard_set.close()

    def partition_of(self, transactional_id: str) -> int | None:
        n = self.txn_partitions()
        return partition_for(transactional_id, n) if n > 0 and transactional_id else None

    async def shard_for(self, transactional_id: str) -> TxnShard | None:
        """The id's shard if this broker coordinates it, else None (NOT_COORDINATOR)."""
        p = self.partition_of(transactional_id)
        return None if p is None else await self.shard_at(p)

    async def shard_at(self, p: int) -> TxnShard | None:
        return await self.shard_set.shard_at(p)

    def all_txns(self) -> Iterator[TxnMeta]:
        for shard in self.shards.values():
            yield from shard.txns.values()

    async def _tick_loop(self) -> None:
        rounds = 0
        while True:
            await asyncio.sleep(TICK_S)
            rounds += 1
            try:
                if rounds % LOAD_EVERY_TICKS == 0:
                    # Load what we lead without waiting for a client: Prepare* must be completed and
                    # Ongoing transactions timed out even if their producer never comes back.
                    await self.shard_set.load_led(self.txn_partitions())
                for _, shard in self.shard_set.live():
                    shard.tick()
            except Exception:
                log.exception("transaction coordinator tick failed")
