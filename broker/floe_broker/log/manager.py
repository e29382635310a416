"""The partitions this broker leads: open (with recovery), checkpoint, consolidate, retain, close.

Opening partition P at epoch E (I1, docs/architecture.md#i1-single-writer):
  1. read its checkpoint ``meta/partitions/<topic-id>/<p>``; a higher epoch
     there means someone else owns it: refuse;
  2. unless the previous leader closed it cleanly, take the newest valid
     checkpoint batch of the session that checkpoint names carrying P at its
     epoch (``log.checkpoints``), then recover the tail: read the footers of
     that session's WAL objects after the batch's (or checkpoint's)
     ``wal_from`` (in sequence order, up to the first tombstone or gap -- the
     controller fenced that session first) and take the entries of P at the
     old epoch;
  3. CAS-write the checkpoint with epoch E, our node and session, and our
     WAL position. From then on only this session may write P, and no batch
     of another session is read for P again.

Every ``checkpoint_interval_ms`` one maintenance round consolidates due WAL
ranges of all partitions into shared objects (``log.consolidation``), drops
expired segments (retention moves ``log_start`` forward, never
``next_offset``: I4), and writes ONE checkpoint batch for every partition
that changed. The per-partition checkpoint is written again only on close
(clean) and move. Objects are deleted by the collector (``log.gc``), never
here, because a consolidated object is shared by partitions this broker may
no longer lead.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

import structlog

from .. import metrics
from ..errors import NotFound, NotLeader, PreconditionFailed
from ..storage import layout
from ..storage.objectstore import ObjectStore, retrying
from . import formats
from .cache import BlockCache
from .checkpoints import BatchReader, BatchWriter
from .compaction.job import DEFAULT_MAP_BYTES, Compactor
from .compaction.settings import deletes
from .consolidation import Consolidator
from .held import Held
from .partition import Chunk, Partition, Segment
from .wal import WalWriter

log = structlog.get_logger(__name__)

FORGET_BATCHES_AFTER_S = 5.0


@dataclass
class Settings:
    checkpoint_interval_ms: int
    compact_after_bytes: int
    compact_after_ms: int
    retention_ms: int
    retention_bytes: int
    memory_cache_bytes: int
    block_size: int
    consolidation_target_bytes: int = 32 * 1024 * 1024
    compaction_map_bytes: int = DEFAULT_MAP_BYTES  # the key map of one key-compaction pass


class PartitionManager:
    def __init__(
        self,
        store: ObjectStore,
        wal: WalWriter,
        cache: BlockCache,
        *,
        node_id: int,
        session: str,
        settings: Settings,
        topic_config: Any,
    ) -> None:
        self.store = store
        self.wal = wal
        self.cache = cache
        self.node_id = node_id
        self.session = session
        self.settings = settings
        self.topic_config = topic_config  # callable (topic, key) -> str|None
        self.held: dict[tuple[str, int], Held] = {}
        self.batches = BatchWriter(store, node_id=node_id, session=session)
        self.batch_reader = BatchReader(store, capacity=16)
        self._forget_batches: asyncio.TimerHandle | None = None
        self.consolidator = Consolidator(
            store, cache, node_id=node_id, session=session,
            target_bytes=settings.consolidation_target_bytes, after_bytes=settings.compact_after_bytes,
            after_ms=settings.compact_after_ms, index_block=settings.block_size,
        )
        self._memory: deque[Chunk] = deque()
        self._memory_bytes = 0
        self._opening: dict[tuple[str, int], asyncio.Task[Partition | None]] = {}
        self._maintenance_lock = asyncio.Lock()
        # (topic, partition) -> highest epoch we handed over: never reopen at or below it
        self.released: dict[tuple[str, int], int] = {}
        self.compactor = Compactor(
            store, cache, self.consolidator, node_id=node_id, session=session, topic_config=topic_config,
            lock=self._maintenance_lock, is_current=self._is_current, map_bytes=settings.compaction_map_bytes,
            target_bytes=settings.consolidation_target_bytes, index_block=settings.block_size,
        )

    # ---- lookup -------------------------------------------------------------------

    def get(self, topic: str, index: int) -> Partition | None:
        held = self.held.get((topic, index))
        return held.partition if held else None

    # ---- memory budget for recent data ----------------------------------------

    def trim_before(self, topic: str, index: int, offset: int) -> None:
        """Advance a led partition's log start; the next checkpoint makes it durable."""
        held = self.held.get((topic, index))
        if held is not None:
            held.partition.trim_before(offset)
            held.dirty = True

    def track(self, chunk: Chunk) -> None:
        self._memory.append(chunk)
        self._memory_bytes += chunk.size
        while self._memory_bytes > self.settings.memory_cache_bytes and self._memory:
            oldest = self._memory[0]
            if not oldest.durable:
                break
            self._memory.popleft()
            self._memory_bytes -= oldest.size
            oldest.data = None

    # ---- open / close -----------------------------------------------------------

    async def open(self, topic: str, topic_id: str, index: int, epoch: int) -> Partition | None:
        """Lead ``topic``/``index`` at ``epoch``; None if we promised never to reopen it there.

        ``topic_id`` tells a re-created topic of the same name apart: its
        checkpoint and data live under the new id.
        """
        key = (topic, index)
        if epoch <= self.released.get(key, -1):
            return None  # we released it at this epoch: the next leader may already write
        held = self.held.get(key)
        if held and held.partition.epoch == epoch and held.partition.topic_id == topic_id:
            return held.partition
        task = self._opening.get(key)
        if task is None:
            if self._forget_batches is not None:
                self._forget_batches.cancel()
                self._forget_batches = None
            task = asyncio.create_task(self._open(topic, topic_id, index, epoch))
            self._opening[key] = task
            task.add_done_callback(lambda _t: self._opened(key))
        return await asyncio.shield(task)

    def _opened(self, key: tuple[str, int]) -> None:
        self._opening.pop(key, None)
        if not self._opening and self._forget_batches is None:
            # Decoded batches serve opens in progress (a failed session's partitions
            # come in groups): forget them once opening has been quiet for a while.
            self._forget_batches = asyncio.get_running_loop().call_later(
                FORGET_BATCHES_AFTER_S, self._forget_decoded_batches)

    def _forget_decoded_batches(self) -> None:
        self._forget_batches = None
        if not self._opening:
            self.batch_reader.clear()

    async def _open(self, topic: str, topic_id: str, index: int, epoch: int) -> Partition | None:
        ck_key = layout.checkpoint_key(topic_id, index)
        t0 = time.perf_counter()
        while True:
            try:
                got = await retrying(lambda: self.store.get(ck_key))
                body: dict[str, Any] | None = json.loads(got.data)
                etag: str | None = got.etag
            except NotFound:
                body, etag = None, None
            assert body is None or etag is not None
            if body is not None and body["epoch"] > epoch:
                log.warning("not opening: checkpoint has a higher epoch", topic=topic,
                            partition=index, ours=epoch, theirs=body["epoch"])
                return None
            part = Partition(topic, topic_id, index, epoch)
            recovered = 0
            if body is not None:
                part.load_checkpoint_body(body)
                if not body.get("clean") and body.get("session"):
                    recovered = await self._recover(part, body)
            part.epoch_history.assign(epoch, part.next_offset)  # durable with the checkpoint below
            new_body = self._body(part, clean=False)
            cond = {"if_none_match": True} if etag is None else {"if_match": etag}
            try:
                new_etag = await retrying(functools.partial(self.store.put, ck_key, new_body, **cond))
            except PreconditionFailed:
                continue  # changed under us (old leader's last checkpoint): read again
            self.held[(topic, index)] = Held(
                part, new_etag, part.high_watermark, len(part.pieces), time.monotonic()
            )
            metrics.PARTITIONS_LED.set(len(self.held))
            log.info("partition opened", topic=topic, partition=index, epoch=epoch,
                     log_start=part.log_start, next_offset=part.next_offset,
                     recovered_chunks=recovered, ms=round((time.perf_counter() - t0) * 1000, 1))
            return part

    async def _recover(self, part: Partition, body: dict[str, Any]) -> int:
        """State after an unclean close: the newest batch carrying it, then the WAL tail."""
        node, session, epoch = int(body["node"]), str(body["session"]), int(body["epoch"])
        start = int(body.get("wal_from", 0))
        upto: int | None = None
        if session == self.session:
            # Our own partition, closed without a clean checkpoint and led again:
            # what we appended to it must be durable before we read our WAL back.
            await self.wal.barrier()
            upto = self.wal.completed_seq
        found = await self.batch_reader.find(node, session, part.topic_id, part.index, epoch)
        if found is not None:
            batch, state = found
            part.load_checkpoint_body(state)
            start = batch.wal_from
        return await self._recover_tail(part, node, session, epoch, start, upto)

    async def _recover_tail(self, part: Partition, node: int, session: str, epoch: int, start: int,
                            upto: int | None) -> int:
        keys = await retrying(lambda: self.store.list(layout.wal_prefix(node, session)))
        # The closed prefix: consecutive seqs after the checkpoint, up to the first gap.
        chain: list[str] = []
        expected = start + 1
        for key in keys:
            seq = layout.seq_of(key)
            if seq <= start:
                continue
            if seq != expected or (upto is not None and seq > upto):
                break  # a gap: nothing after it can have been acknowledged
            chain.append(key)
            expected += 1
        # Footers are independent reads: fetch them concurrently, apply in order.
        sem = asyncio.Semaphore(16)

        async def footer(key: str) -> tuple[list[Any], bytes]:
            async with sem:
                # Through the cache: the partitions of one failed session read the same footers.
                suffix = await self.cache.read_suffix(key, formats.SUFFIX_GUESS)
                index, length, magic = formats.index_from_suffix(suffix)
                if index is None:
                    suffix = await self.cache.read_suffix(key, length + formats.FOOTER_SIZE)
                    index, _, _ = formats.index_from_suffix(suffix)
                    assert index is not None
                return index, magic

        footers = await asyncio.gather(*(footer(k) for k in chain))
        found = 0
        first_recovered = len(part.pieces)
        for key, (index, magic) in zip(chain, footers, strict=True):
            if magic == layout.TOMBSTONE:
                break
            for entry in formats.wal_entries(index):
                if (
                    entry.topic_id == part.topic_id
                    and entry.partition == part.index
                    and entry.epoch == epoch
                ):
                    part.add_recovered(entry, key)
                    found += 1
        # Idempotent producers: retries of batches that were durable but never
        # acknowledged must be recognised, so rebuild their state from the tail.
        recovered = [p for p in part.pieces[first_recovered:] if isinstance(p, Chunk)]

        async def read(c: Chunk) -> bytes:
            async with sem:
                # Through the cache too: the partitions of one failed session share its WAL objects
                # (one GET per object, not per partition), and the first catch-up fetch after the
                # failover finds the tail already there.
                return await self.cache.read(c.key or "", c.pos, c.size)

        for data in await asyncio.gather(*(read(c) for c in recovered)):
            part.rebuild_producers(data)
        return found

    def _body(self, part: Partition, *, clean: bool) -> bytes:
        doc = part.checkpoint_body()
        doc.update(
            epoch=part.epoch,
            node=self.node_id,
            session=self.session,
            wal_from=self.wal.completed_seq,
            clean=clean,
            written_ms=int(time.time() * 1000),
        )
        return json.dumps(doc, separators=(",", ":")).encode()

    async def close(self, topic: str, index: int, *, graceful: bool = True) -> None:
        """Stop serving a partition. Graceful: drain pending data and write a clean checkpoint."""
        held = self.held.get((topic, index))
        if held is None:
            return
        part = held.partition
        part.accepting = False
        if graceful:
            await self.wal.barrier()
            async with self._maintenance_lock:
                try:
                    await self._write_checkpoint(held, clean=True)
                except NotLeader:
                    pass
        elif not self.wal.fenced:
            # Not moved by us (its leader changed under us): our batches will stop
            # carrying it, so leave its durable state where a successor looks first.
            async with self._maintenance_lock:
                with contextlib.suppress(Exception):
                    await self._write_checkpoint(held, clean=False, attempts=3)
        self.held.pop((topic, index), None)
        part.close()
        metrics.PARTITIONS_LED.set(len(self.held))
        with contextlib.suppress(KeyError):  # the new leader exports it now: no stale series here
            metrics.HIGH_WATERMARK.remove(topic, str(index))
        log.info("partition closed", topic=topic, partition=index, epoch=part.epoch, graceful=graceful)

    async def close_all(self) -> None:
        await self.compactor.stop()
        for topic, index in list(self.held):
            await self.close(topic, index, graceful=True)

    # ---- checkpoints -----------------------------------------------------------

    async def _write_checkpoint(self, held: Held, *, clean: bool = False, attempts: int = 10) -> None:
        """CAS the per-partition checkpoint (close and move only: the rare writes)."""
        part = held.partition
        ck_key = layout.checkpoint_key(part.topic_id, part.index)
        body = self._body(part, clean=clean)
        try:
            held.etag = await retrying(lambda: self.store.put(ck_key, body, if_match=held.etag), attempts=attempts)
        except PreconditionFailed:
            got = await retrying(lambda: self.store.get(ck_key))
            theirs = json.loads(got.data)
            if theirs.get("epoch") == part.epoch and theirs.get("session") == self.session:
                held.etag = got.etag  # our own write whose answer was lost
                return
            log.warning("checkpoint CAS lost: partition has a new leader", topic=part.topic,
                        partition=part.index, epoch=part.epoch, theirs=theirs.get("epoch"))
            self.held.pop((part.topic, part.index), None)
            part.close()
            raise NotLeader(part.topic) from None
        held.mark_checkpointed(part.high_watermark, len(part.pieces))

    async def _write_batch(self, helds: list[Held]) -> None:
        """One checkpoint batch: every partition that changed, or is due for a refresh."""
        carried = [h for h in helds if h.changed or h.carry_again or self.batches.due(h.batch_seq)]
        if not carried:
            return
        marks = [(h, h.partition.high_watermark, len(h.partition.pieces), h.dirty) for h in carried]
        seq = await self.batches.write(
            [h.partition for h in carried], wal_from=self.wal.completed_seq,
            data_seq=self.compactor.data_seq_floor(self.consolidator.swapped_seq),
        )
        for held, hw, pieces, structural in marks:
            held.batch_seq = seq
            held.carry_again = structural
            if held.partition.high_watermark == hw and len(held.partition.pieces) == pieces:
                held.mark_checkpointed(hw, pieces)

    async def maintenance(self) -> None:
        """One round of consolidation, retention and one checkpoint batch (called periodically)."""
        async with self._maintenance_lock:
            helds = [h for h in self.held.values() if h.partition.accepting]
            try:
                await self.consolidator.run(helds)
            except Exception as exc:  # keep serving; the runs stay WAL chunks until next round
                log.warning("consolidation failed", error=repr(exc))
            for held in helds:
                try:
                    self._retain(held)
                except Exception as exc:
                    part = held.partition
                    log.warning("retention failed", topic=part.topic, partition=part.index, error=repr(exc))
            helds = [h for h in helds if h.partition.accepting and self.held.get(
                (h.partition.topic, h.partition.index)) is h]
            try:
                await self._write_batch(helds)
            except Exception as exc:  # retried next round; nothing counts as checkpointed meanwhile
                log.warning("checkpoint batch failed; retrying next round", error=repr(exc))
        self.compactor.kick(helds)  # key compaction runs beside the rounds, taking the lock only to swap

    # ---- key compaction and DeleteRecords ------------------------------------------------

    def _is_current(self, held: Held) -> bool:
        part = held.partition
        return part.accepting and self.held.get((part.topic, part.index)) is held

    async def delete_records(self, topic: str, index: int, offset: int) -> int:
        """Move a led partition's log start to ``offset`` and make it durable; the new log start.

        Durable means in a checkpoint batch, so a successor after a crash or
        a move starts there too; the maintenance round's retention then drops
        the segments wholly below it, and the collector their objects.
        """
        async with self._maintenance_lock:
            held = self.held.get((topic, index))
            if held is None or not self._is_current(held):
                raise NotLeader(f"{topic}-{index} is not led here")
            held.partition.trim_before(offset)
            held.dirty = True
            # A batch as a round writes it (every partition due is carried too, so the window
            # of kept batches still holds each one twice); raises if it could not be written.
            await self._write_batch([h for h in self.held.values() if self._is_current(h)])
            return held.partition.log_start

    # ---- retention -----------------------------------------------------------------

    def _retain(self, held: Held) -> list[Segment]:
        part = held.partition
        retention_ms = self._topic_int(part.topic, "retention.ms", self.settings.retention_ms)
        retention_bytes = self._topic_int(part.topic, "retention.bytes", self.settings.retention_bytes)
        if not deletes(self.topic_config(part.topic, "cleanup.policy")):
            retention_ms = retention_bytes = -1  # cleanup.policy=compact: only trimmed segments go
        now = int(time.time() * 1000)
        count = 0
        total = sum(p.size for p in part.pieces)
        for piece in part.pieces:
            if not isinstance(piece, Segment):
                break
            if piece.last < part.log_start:  # trimmed (trim_before): nothing in it is served any more
                total -= piece.size
                count += 1
                continue
            expired = retention_ms >= 0 and piece.max_ts < now - retention_ms
            too_big = retention_bytes >= 0 and total - piece.size >= retention_bytes
            if not (expired or too_big):
                break
            if retention_bytes >= 0 and not expired and total - piece.size < retention_bytes:
                break
            total -= piece.size
            count += 1
        if not count:
            return []
        dropped = [p for p in part.drop_prefix(count) if isinstance(p, Segment)]
        held.dirty = True
        log.info("retention dropped segments", topic=part.topic, partition=part.index,
                 segments=count, log_start=part.log_start)
        return dropped  # their objects go once no checkpoint references them (log.gc)

    def _topic_int(self, topic: str, key: str, default: int) -> int:
        value = self.topic_config(topic, key)
        return int(value) if value is not None else default
