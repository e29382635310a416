"""Garbage collection of WAL objects no checkpoint needs any more (scheduled by the controller).

A WAL object ``wal/<node>/<session>/<seq>`` may be deleted when all hold:

* no partition checkpoint lists it among its WAL ranges (compaction moved
  those bytes into ``data/`` objects, or retention dropped them);
* it is at or below the lowest ``wal_from`` of every checkpoint written by its
  session: anything above may be the un-checkpointed tail a successor must
  recover. A live session with no checkpoint yet keeps everything;
* it is not a tombstone: deleting one would let a paused zombie fill that key
  and acknowledge again (I3, docs/architecture.md#i3-fencing), so tombstones stay (they are 14 bytes);
* it has been a candidate for at least the grace period, so fetches that
  located it just before compaction can still read it.

Checkpoints are read one by one, not as a snapshot, but every state a
checkpoint passes through protects the same objects (either by ``wal_from``
or by listing them), and ``wal_from`` only grows, so a concurrent change
cannot expose an object that is still needed.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from typing import Any

import structlog

from ..errors import NotFound
from ..storage import layout
from ..storage.objectstore import ObjectStore, retrying

log = structlog.get_logger(__name__)


@dataclass
class WalCollector:
    store: ObjectStore
    grace_s: float
    candidates: dict[str, float] = field(default_factory=dict)  # key -> first seen unreferenced
    tombstones: set[str] = field(default_factory=set)
    deleted_total: int = 0

    async def run_once(self, *, live_sessions: set[str], now: float | None = None) -> int:
        now = time.monotonic() if now is None else now
        referenced, low_water = await self._scan_checkpoints()
        keys = await retrying(lambda: self.store.list(layout.WAL_PREFIX))
        keep: dict[str, float] = {}
        doomed: list[str] = []
        for key in keys:
            if key in referenced or key in self.tombstones:
                continue
            session, seq = layout.session_of(key), layout.seq_of(key)
            floor = low_water.get(session)
            if floor is None and session in live_sessions:
                continue  # a live session without any checkpoint yet: all of it may be tail
            if floor is not None and seq > floor:
                continue
            first = self.candidates.get(key, now)
            if now - first >= self.grace_s:
                doomed.append(key)
            else:
                keep[key] = first
        self.candidates = keep
        deleted = 0
        for key in doomed:
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
        if deleted:
            log.info("deleted unreferenced WAL objects", count=deleted, pending=len(self.candidates))
        return deleted

    async def _scan_checkpoints(self) -> tuple[set[str], dict[str, int]]:
        keys = await retrying(lambda: self.store.list(layout.CHECKPOINT_PREFIX))
        sem = asyncio.Semaphore(32)

        async def read(key: str) -> dict[str, Any] | None:
            async with sem:
                try:
                    got = await retrying(lambda: self.store.get(key))
                except NotFound:
                    return None
                return json.loads(got.data)  # type: ignore[no-any-return]

        referenced: set[str] = set()
        low_water: dict[str, int] = {}
        for body in await asyncio.gather(*(read(k) for k in keys)):
            if body is None:
                continue
            for row in body.get("wal", []):
                referenced.add(row[0])
            session = body.get("session")
            if session:
                low_water[session] = min(low_water.get(session, 1 << 62), int(body.get("wal_from", 0)))
        return referenced, low_water
