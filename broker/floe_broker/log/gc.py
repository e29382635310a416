"""Garbage collection of WAL objects, data objects and checkpoint batches no one needs (scheduled
by the controller).

The reference view. For every per-partition checkpoint
``meta/partitions/<topic-id>/<p>``:

* clean (closed or moved): its own segments and WAL ranges are referenced;
* not clean, naming session S at epoch E: a successor would take the newest
  valid batch of S carrying the partition at E (``log.checkpoints``), or the
  one before it when that one is corrupt or not listed yet, or the
  checkpoint itself when there is none; so the references of the newest two
  valid batches of S carrying it at E count (or the checkpoint's when none
  does), and S's WAL from the lower ``wal_from`` of the two must stay: that
  is the tail a successor may need.

Batch entries of a partition whose checkpoint names another session or epoch
are ignored: a fenced zombie's batches can keep nothing alive.

A WAL object ``wal/<node>/<session>/<seq>`` may be deleted when all hold:

* nothing in the reference view lists it among its WAL ranges;
* it is at or below its session's low-water mark from the view (a live
  session the view says nothing about keeps everything);
* it is not a tombstone: deleting one would let a paused zombie fill that key
  and acknowledge again (I3, docs/architecture.md#i3-fencing), so tombstones stay (they are 14 bytes);
* it has been a candidate for at least the grace period, so fetches that
  located it just before consolidation can still read it.

A data object (consolidated ``data/s/<node>/<session>/<seq>`` or a
one-partition ``data/<topic-id>/<p>/...``) may be deleted when no range of
it is in the reference view, it is not a live session's object newer than
that session's newest batch (``data_seq``: written, maybe not yet
checkpointed), and it has been a candidate for the grace period. So an
object shared by two partitions stays until both stop referencing it.

Checkpoint batches of a session that is not live and that no unclean
checkpoint names are deleted after the grace period; live writers prune
their own.

Re-reading every per-partition checkpoint each pass would cost one GET per
partition per pass. The pass lists them anyway, and the listing carries each
object's ETag, so a checkpoint is read again only when its ETag differs from
the cached copy's: a pass costs its LIST pages plus one GET per checkpoint
written since the last pass (opens, closes, moves), however many partitions
there are, and a change is seen on the first pass after it.
Where a store's listing gives no ETag for a key, the pass falls back to
guessing from the cluster metadata: it re-reads a checkpoint when it is new,
the metadata names another leader epoch or session for its partition than
the cached copy (every open follows such a change, and so does every close
but a lone broker's drain), its session is no longer live and it was not
clean (that drain), or every ``FULL_PASS_EVERY`` passes anyway; a close the
metadata has not yet caught up with is then seen one pass later, which the
grace period (longer than a pass) covers.

Checkpoints are read one by one, not as a snapshot, but every state a
checkpoint passes through protects the same objects (by ``wal_from`` or by
listing them), the window of batches only moves forward, and the grace
period covers a successor between reading a batch and writing its own
checkpoint.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import structlog

from ..errors import NotFound
from ..storage import layout
from ..storage.objectstore import ObjectStore, retrying
from .checkpoints import Batch, BatchReader, entry_key

log = structlog.get_logger(__name__)

FULL_PASS_EVERY = 20  # passes between re-reads of every checkpoint, changed or not

# (topic id, partition) -> (leader epoch, leader session), from the cluster metadata
Leaders = Mapping[tuple[str, int], tuple[int, str]]


@dataclass
class ReferenceView:
    referenced: set[str] = field(default_factory=set)  # WAL and data keys
    low_water: dict[str, int] = field(default_factory=dict)  # session -> lowest needed wal_from
    data_seq: dict[str, int] = field(default_factory=dict)  # session -> newest batch's data_seq
    needed_sessions: set[str] = field(default_factory=set)  # named by an unclean checkpoint
    batch_keys: dict[str, list[str]] = field(default_factory=dict)  # session -> its batch keys

    def add_state(self, state: dict[str, Any]) -> None:
        for row in state.get("segments", []):
            self.referenced.add(row[0])
        for row in state.get("wal", []):
            self.referenced.add(row[0])

    def lower(self, session: str, wal_from: int) -> None:
        self.low_water[session] = min(self.low_water.get(session, 1 << 62), wal_from)


@dataclass
class WalCollector:
    store: ObjectStore
    grace_s: float
    candidates: dict[str, float] = field(default_factory=dict)  # key -> first seen unreferenced
    tombstones: set[str] = field(default_factory=set)
    deleted_total: int = 0
    data_deleted_total: int = 0
    batches_deleted_total: int = 0
    checkpoint_reads: int = 0
    reader: BatchReader = field(init=False)
    _checkpoints_seen: dict[str, tuple[str, dict[str, Any]]] = field(default_factory=dict)  # key -> (etag, body)
    _passes: int = 0

    def __post_init__(self) -> None:
        self.reader = BatchReader(self.store, list_ttl_s=0.0, capacity=4096)

    async def run_once(self, *, live_sessions: set[str], now: float | None = None,
                       leaders: Leaders | None = None) -> int:
        """One pass; returns the number of WAL and data objects deleted.

        ``leaders`` (from the cluster metadata) lets unchanged checkpoints be
        skipped; without it every checkpoint is read.
        """
        now = time.monotonic() if now is None else now
        view = await self.reference_view(live_sessions=live_sessions, leaders=leaders)
        wal_keys = await retrying(lambda: self.store.list(layout.WAL_PREFIX))
        data_keys = await retrying(lambda: self.store.list(layout.DATA_PREFIX))
        keep: dict[str, float] = {}
        doomed_wal: list[str] = []
        doomed_data: list[str] = []
        doomed_batches: list[str] = []

        def consider(key: str, into: list[str]) -> None:
            first = self.candidates.get(key, now)
            if now - first >= self.grace_s:
                into.append(key)
            else:
                keep[key] = first

        for key in wal_keys:
            if key in view.referenced or key in self.tombstones:
                continue
            session, seq = layout.session_of(key), layout.seq_of(key)
            floor = view.low_water.get(session)
            if floor is None and session in live_sessions:
                continue  # a live session without any checkpoint yet: all of it may be tail
            if floor is not None and seq > floor:
                continue
            consider(key, doomed_wal)
        for key in data_keys:
            if key in view.referenced:
                continue
            if layout.is_consolidated(key):
                session, seq = layout.owner_session(key), layout.seq_of(key)
                if session in live_sessions and seq > view.data_seq.get(session, 0):
                    continue  # written by a live session, maybe not in a batch yet
            consider(key, doomed_data)
        for session, keys in view.batch_keys.items():
            if session in live_sessions or session in view.needed_sessions:
                continue
            for key in keys:
                consider(key, doomed_batches)
        self.candidates = keep

        deleted = 0
        for key in doomed_wal:
            try:
                info = await retrying(lambda k=key: self.store.head(k), attempts=5)  # type: ignore[misc]
            except NotFound:
                continue
            if info.size == len(layout.TOMBSTONE):
                self.tombstones.add(key)
                continue
            await retrying(lambda k=key: self.store.delete(k), attempts=5)  # type: ignore[misc]
            deleted += 1
        self.deleted_total += deleted
        data_deleted = 0
        for key in doomed_data:
            await retrying(lambda k=key: self.store.delete(k), attempts=5)  # type: ignore[misc]
            data_deleted += 1
        self.data_deleted_total += data_deleted
        for key in doomed_batches:
            await retrying(lambda k=key: self.store.delete(k), attempts=5)  # type: ignore[misc]
        self.batches_deleted_total += len(doomed_batches)
        if deleted or data_deleted or doomed_batches:
            log.info("deleted unreferenced objects", wal=deleted, data=data_deleted,
                     batches=len(doomed_batches), pending=len(self.candidates))
        return deleted + data_deleted

    async def reference_view(self, *, live_sessions: set[str] | None = None,
                             leaders: Leaders | None = None) -> ReferenceView:
        """What every partition's successor could need, from checkpoints and batches."""
        view = ReferenceView()
        batches = await self._batches(view)
        for body in await self._checkpoints(live_sessions, leaders):
            session = body.get("session")
            if body.get("clean") or not session:
                view.add_state(body)
                continue
            view.needed_sessions.add(session)
            k = entry_key(body["topic_id"], body["_partition"], int(body.get("epoch", -1)))
            # A successor takes the newest batch carrying it, or the one before when
            # that one is corrupt or not listed yet: both keep what they name.
            carried = [(b, b.entries[k]) for b in batches.get(session, []) if k in b.entries][:2]
            if carried:
                for batch, state in carried:
                    view.add_state(state)
                    view.lower(session, batch.wal_from)
            else:
                view.add_state(body)
                view.lower(session, int(body.get("wal_from", 0)))
        return view

    def _unchanged(self, key: str, body: dict[str, Any], live: set[str] | None,
                   leaders: Leaders | None) -> bool:
        """Can the cached copy of this checkpoint still be what is stored?"""
        if leaders is None or live is None:
            return False
        session = body.get("session")
        if leaders.get((body["topic_id"], body["_partition"])) != (body.get("epoch"), session):
            return False
        return bool(body.get("clean")) or session in live

    async def _checkpoints(self, live: set[str] | None, leaders: Leaders | None) -> list[dict[str, Any]]:
        listed = await retrying(lambda: self.store.list_etags(layout.CHECKPOINT_PREFIX))
        sem = asyncio.Semaphore(32)
        self._passes += 1
        full = self._passes % FULL_PASS_EVERY == 1
        seen = self._checkpoints_seen

        def current(key: str, etag: str) -> dict[str, Any] | None:
            """The cached body when it is still what is stored, else None (read it)."""
            cached = seen.get(key)
            if cached is None:
                return None
            if etag:
                return cached[1] if cached[0] == etag else None
            body = cached[1]  # the listing does not say: guess from the metadata
            return body if not full and self._unchanged(key, body, live, leaders) else None

        async def read(key: str, etag: str) -> dict[str, Any] | None:
            async with sem:
                self.checkpoint_reads += 1
                try:
                    got = await retrying(lambda: self.store.get(key))
                except NotFound:
                    seen.pop(key, None)
                    return None
                body = json.loads(got.data)
                # The key says which partition this is (older checkpoints do not).
                topic_id, index = key.removeprefix(layout.CHECKPOINT_PREFIX).split("/")
                body["topic_id"], body["_partition"] = topic_id, int(index)
                # The ETag of what was read, which may be newer than the listed one.
                seen[key] = (got.etag if etag else "", body)
                return body

        out: list[dict[str, Any]] = []
        stale: list[tuple[str, str]] = []
        for key, etag in listed:
            body = current(key, etag)
            if body is None:
                stale.append((key, etag))
            else:
                out.append(body)
        out += [b for b in await asyncio.gather(*(read(k, e) for k, e in stale)) if b is not None]
        keys = {k for k, _ in listed}
        for gone in set(seen) - keys:
            del seen[gone]
        return out

    async def _batches(self, view: ReferenceView) -> dict[str, list[Batch]]:
        keys = await retrying(lambda: self.store.list(layout.BATCH_PREFIX))
        by_session: defaultdict[str, list[str]] = defaultdict(list)
        for key in keys:
            by_session[layout.owner_session(key)].append(key)
        view.batch_keys = dict(by_session)
        self.reader.retain(set(keys))
        out: dict[str, list[Batch]] = {}
        for session, skeys in by_session.items():
            valid: list[Batch] = []
            for key in skeys:
                try:
                    batch = await self.reader.load(key)
                except NotFound:
                    continue
                if batch is not None:
                    valid.append(batch)
            out[session] = sorted(valid, key=lambda b: b.seq, reverse=True)
            if valid:
                view.data_seq[session] = max(b.data_seq for b in valid)
        return out
