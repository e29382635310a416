"""Checkpoint batches: one object per broker session per checkpoint interval, for all its partitions.

Why: a per-partition checkpoint every interval makes the bucket's request
bill grow with partitions. Instead, every ``checkpoint_interval_ms`` a broker
session writes ONE batch ``meta/checkpoints/<node>/<session>/<seq>``
(create-only, CRC-32C over its body) holding the state a successor needs
(log start, next offset, segments, WAL ranges, producer state) of every
partition that changed, plus the session's WAL position (``wal_from``) and
the highest consolidated object whose swap it reflects (``data_seq``). The
per-partition checkpoint ``meta/partitions/<topic-id>/<p>`` is written only
where that is rare: on open (the epoch CAS that enforces I1), on close and on
a move.

Trust (docs/architecture.md#i1-single-writer): a successor opening a
partition reads its per-partition checkpoint first. Only if that checkpoint
is not clean does it look at batches, and only at the batches of the
session the checkpoint names, and only at entries for that partition at the
checkpoint's epoch; it takes the newest valid one and then recovers the WAL
tail after that batch's ``wal_from``. A fenced zombie can still create
batches under its own session, but once a successor has CAS-written the
per-partition checkpoint, nothing of the zombie's is ever read again for
that partition; before that, all a zombie batch can hold is state backed by
WAL objects that were durable before its fence (its WAL is tombstoned), which
the tail recovery would find anyway.

Window: a writer keeps its newest ``KEEP`` batches and deletes older ones;
a partition is re-written at least every ``REFRESH`` batches even when it did
not change, so every partition it leads appears at least twice in the
window, and one corrupt or truncated batch still leaves an older entry (plus
the WAL after it) to recover from. The WAL collector reads the same window.
"""

from __future__ import annotations

import asyncio
import functools
import json
import time
from collections import OrderedDict
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import structlog

from ..errors import BadObject, NotFound, PreconditionFailed
from ..storage import layout
from ..storage.objectstore import ObjectStore, retrying
from . import formats
from .partition import Partition

log = structlog.get_logger(__name__)

REFRESH = 4  # re-write an unchanged partition after this many batches without it
KEEP = 2 * REFRESH  # batches kept per session: every led partition appears at least twice
ENCODE_SLICE = 256  # partitions encoded between two turns of the event loop...
ENCODE_SLICE_PIECES = 4096  # ...or fewer when their segments and WAL ranges add up to this many


def entry_key(topic_id: str, partition: int, epoch: int) -> tuple[str, int, int]:
    return (topic_id, partition, epoch)


@dataclass(frozen=True, slots=True)
class Batch:
    """A decoded, checksum-verified checkpoint batch."""

    key: str
    seq: int
    wal_from: int
    data_seq: int
    entries: dict[tuple[str, int, int], dict[str, Any]]  # (topic id, partition, epoch) -> state

    @classmethod
    def decode(cls, key: str, raw: bytes) -> Batch:
        doc = formats.decode_batch(raw)
        try:
            entries = {entry_key(e["t"], int(e["p"]), int(e["e"])): e["s"] for e in doc["partitions"]}
            return cls(key, int(doc["seq"]), int(doc["wal_from"]), int(doc.get("data_seq", 0)), entries)
        except (KeyError, TypeError, ValueError) as exc:
            raise BadObject(f"checkpoint batch fields: {exc!r}") from None


class BatchWriter:
    """Writes this session's checkpoint batches in sequence, create-only."""

    def __init__(self, store: ObjectStore, *, node_id: int, session: str) -> None:
        self.store = store
        self.node_id = node_id
        self.session = session
        self.next_seq = 1
        self._prune: list[int] = []
        self.written = 0

    def due(self, batch_seq: int) -> bool:
        """Must a partition last carried by ``batch_seq`` be carried by the next batch anyway?"""
        return batch_seq <= self.next_seq - REFRESH

    async def write(self, parts: list[Partition], *, wal_from: int, data_seq: int) -> int:
        """Write one batch with these partitions' durable state; return its seq.

        Raises when the store stays unavailable: the caller keeps the
        partitions marked changed, so nothing is treated as checkpointed that
        is not in a batch that landed. A batch whose outcome is unknown may
        still land later; it holds true (older) state, so that is harmless.
        """
        # Thousands of partitions' state is megabytes of JSON: encode it a slice at a
        # time so the event loop (produce, fetch) keeps its turns meanwhile.
        # A partition not consolidated for a while carries one WAL range per flush it was in
        # (hundreds), so the slice is bounded by pieces too.
        fragments: list[bytes] = []
        count = pieces = 0
        for p in parts:
            entry = {"t": p.topic_id, "p": p.index, "e": p.epoch, "s": p.checkpoint_body()}
            fragments.append(json.dumps(entry, separators=(",", ":")).encode())
            count += 1
            pieces += len(p.pieces)
            if count >= ENCODE_SLICE or pieces >= ENCODE_SLICE_PIECES:
                count = pieces = 0
                await asyncio.sleep(0)
        entries = b",".join(fragments)
        while True:
            seq = self.next_seq
            head = json.dumps({
                "v": 1, "node": self.node_id, "session": self.session, "seq": seq,
                "wal_from": wal_from, "data_seq": data_seq, "written_ms": int(time.time() * 1000),
            }, separators=(",", ":")).encode()
            body = formats.encode_batch(head[:-1] + b',"partitions":[' + entries + b"]}")
            key = layout.batch_key(self.node_id, self.session, seq)
            try:
                await retrying(functools.partial(self.store.put, key, body, if_none_match=True), attempts=10)
            except PreconditionFailed:
                # An earlier attempt at this seq whose answer was lost (it holds
                # older true state): leave it and write at the next seq.
                got = await retrying(functools.partial(self.store.get, key))
                self.next_seq += 1
                if got.data == body:
                    break
                continue
            self.next_seq += 1
            break
        self.written += 1
        self._prune.append(seq - KEEP)
        await self._prune_old()
        return seq

    async def _prune_old(self) -> None:
        keep: list[int] = []
        for old in self._prune:
            if old < 1:
                continue
            try:
                await retrying(lambda o=old: self.store.delete(  # type: ignore[misc]
                    layout.batch_key(self.node_id, self.session, o)), attempts=3)
            except Exception as exc:  # the collector removes leftovers of dead sessions
                log.warning("could not delete an old checkpoint batch", seq=old, error=repr(exc))
                keep.append(old)
        self._prune = keep


class BatchReader:
    """Reads sessions' checkpoint batches, newest first, skipping invalid ones with a log line.

    Batches never change once written, so decoded ones are cached by key;
    listings are cached for ``list_ttl_s`` so the many partitions of one
    failed session, opened together, list its batches once.
    """

    def __init__(self, store: ObjectStore, *, list_ttl_s: float = 2.0, capacity: int = 64) -> None:
        self.store = store
        self.list_ttl_s = list_ttl_s
        self.capacity = capacity
        self._docs: OrderedDict[str, Batch | None] = OrderedDict()
        self._lists: dict[str, tuple[float, asyncio.Task[list[str]]]] = {}

    async def _listing(self, prefix: str, *, fresh: bool = False) -> list[str]:
        now = time.monotonic()
        cached = self._lists.get(prefix)
        if fresh or cached is None or now - cached[0] > self.list_ttl_s or (
                cached[1].done() and cached[1].exception() is not None):
            task = asyncio.ensure_future(retrying(lambda: self.store.list(prefix)))
            self._lists[prefix] = (now, task)
            cached = self._lists[prefix]
        return list(await asyncio.shield(cached[1]))

    async def load(self, key: str) -> Batch | None:
        """The batch at ``key``, or None when it is invalid (logged once). NotFound propagates."""
        if key in self._docs:
            self._docs.move_to_end(key)
            return self._docs[key]
        got = await retrying(lambda: self.store.get(key))
        batch: Batch | None
        try:
            batch = Batch.decode(key, got.data)
        except BadObject as exc:
            log.warning("checkpoint batch is corrupt or truncated; using an older one and the WAL",
                        key=key, error=str(exc))
            batch = None
        self._docs[key] = batch
        while len(self._docs) > self.capacity:
            self._docs.popitem(last=False)
        return batch

    def retain(self, keys: set[str]) -> None:
        """Forget decoded batches not in ``keys`` (pruned or collected): they are megabytes each."""
        for key in [k for k in self._docs if k not in keys]:
            del self._docs[key]

    def clear(self) -> None:
        self._docs.clear()
        self._lists.clear()

    async def session_batches(self, node: int, session: str) -> list[Batch]:
        """The session's valid batches, newest first."""
        return [b async for b in self._newest_first(node, session)]

    async def _newest_first(self, node: int, session: str) -> AsyncIterator[Batch]:
        prefix = layout.batch_prefix(node, session)
        keys = await self._listing(prefix)
        i = len(keys) - 1
        relisted = False
        while i >= 0:
            try:
                batch = await self.load(keys[i])
            except NotFound:
                if relisted:
                    i -= 1  # pruned meanwhile; an older one may still serve
                    continue
                # Pruned since the listing: list again and go on below this key.
                relisted = True
                below = keys[i]
                keys = [k for k in await self._listing(prefix, fresh=True) if k < below]
                i = len(keys) - 1
                continue
            if batch is not None:
                yield batch
            i -= 1

    async def find(self, node: int, session: str, topic_id: str, partition: int,
                   epoch: int) -> tuple[Batch, dict[str, Any]] | None:
        """The newest valid batch of ``session`` carrying the partition at ``epoch``, and its entry.

        Reads only as far back as it must: usually the newest batch alone.
        """
        k = entry_key(topic_id, partition, epoch)
        async for batch in self._newest_first(node, session):
            state = batch.entries.get(k)
            if state is not None:
                return batch, state
        return None
