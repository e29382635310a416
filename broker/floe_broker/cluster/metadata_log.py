"""Cluster metadata in the bucket: a snapshot now and then, a small delta per change.

``meta/cluster`` is a snapshot (the whole ``ClusterState``, the same JSON a
bucket from before deltas holds, so such a bucket opens as a snapshot with no
deltas). Every commit adds ``meta/log/<version>``, the :class:`~.delta.Delta`
making that version, written **create-only**: whoever creates the next
version's key is its one writer, so a deposed controller's next commit fails
on the key its successor took (docs/architecture.md#controller-and-membership).

The snapshot is rewritten once the deltas since it add up to a fraction of its
own size (``snapshot_ratio``, at least ``snapshot_min_bytes``), so the bytes
written per change stay proportional to the change, whatever the partition
count, and a reader replays a bounded tail. Snapshots are CAS-written and
never replaced by an older version. Deltas at or below the *previous*
snapshot are deleted, oldest first, which leaves a whole snapshot period for
a reader that read the older snapshot.

Deleting old keys would let a controller that slept through all of this
create a deleted version again. :meth:`MetadataLog.append` therefore checks,
after creating version V, that V - 1 still exists: deletion goes oldest
first, so a missing predecessor proves V was deleted before, and the stale
write is withdrawn and reported as a conflict. The first version of a
snapshot that has no delta of its own gets a base marker so the check holds
there too.
"""

from __future__ import annotations

import asyncio
import functools
import json

import structlog

from ..errors import NotFound, PreconditionFailed
from ..storage.layout import CLUSTER_KEY, METADATA_LOG_PREFIX, metadata_delta_key, metadata_delta_version
from ..storage.objectstore import ObjectStore, retrying
from .delta import Delta, Gap, apply
from .metadata import ClusterState

log = structlog.get_logger(__name__)

READ_AHEAD = 16  # deltas fetched concurrently while catching up
SNAPSHOT_MIN_BYTES = 64 << 10  # a snapshot is due once the deltas since the last one add up to this
SNAPSHOT_RATIO = 0.1  # ... or to this fraction of the snapshot's size, whichever is more


class Conflict(Exception):
    """Another controller wrote this version first (or the version was long since retired)."""


class MetadataLog:
    def __init__(self, store: ObjectStore, *, snapshot_min_bytes: int = SNAPSHOT_MIN_BYTES,
                 snapshot_ratio: float = SNAPSHOT_RATIO, state_type: type[ClusterState] = ClusterState) -> None:
        self.store = store
        self.snapshot_min_bytes = snapshot_min_bytes
        self.snapshot_ratio = snapshot_ratio
        self.state_type = state_type
        self.snapshot_version = 0
        self.snapshot_size = 0
        self._snapshot_etag: str | None = None
        self.bytes_since_snapshot = 0
        self._snapshot_lock = asyncio.Lock()

    # ---- reading ------------------------------------------------------------------------

    async def load(self) -> ClusterState:
        """The latest committed metadata: the snapshot plus every delta after it."""
        try:
            got = await retrying(lambda: self.store.get(CLUSTER_KEY))
        except NotFound:
            state = self.state_type()
            self._snapshot_etag, self.snapshot_size = None, 0
        else:
            state = await asyncio.to_thread(self.state_type.from_bytes, got.data)
            self._snapshot_etag, self.snapshot_size = got.etag, len(got.data)
        self.snapshot_version = state.version
        self.bytes_since_snapshot = 0
        deltas = await self._read_after(state.version)
        for delta, size in deltas:
            try:
                state = apply(state, delta)
            except Gap:
                break
            self.bytes_since_snapshot += size
        return state

    async def catch_up(self, state: ClusterState, target: int | None = None) -> ClusterState:
        """``state`` brought forward by the deltas after it; from the snapshot again when
        those are gone or do not reach ``target`` (a version known to be committed)."""
        for delta, _ in await self._read_after(state.version, target):
            try:
                state = apply(state, delta)
            except Gap:
                break
        if target is not None and state.version < target:
            fresh = await self.load()
            if fresh.version > state.version:
                return fresh
        return state

    async def _read_after(self, version: int, target: int | None = None) -> list[tuple[Delta, int]]:
        """The deltas after ``version`` in order, up to the first missing one.

        Read ahead concurrently, but only as far as ``target`` (when known) at first, so
        catching up one version costs one GET, not a batch of misses.
        """
        out: list[tuple[Delta, int]] = []
        nxt = version + 1
        batch = READ_AHEAD if target is None else max(1, min(READ_AHEAD, target - version))
        while True:
            got = await asyncio.gather(*(self._get_delta(v) for v in range(nxt, nxt + batch)))
            for item in got:
                if item is None:
                    return out
                out.append(item)
            nxt += batch
            if target is not None and nxt > target:
                return out  # far enough: anything newer comes with its own push or heartbeat
            batch = READ_AHEAD

    async def _get_delta(self, version: int) -> tuple[Delta, int] | None:
        try:
            got = await retrying(lambda: self.store.get(metadata_delta_key(version)))
        except NotFound:
            return None
        return Delta.from_bytes(got.data), len(got.data)

    # ---- writing (the controller) ----------------------------------------------------

    async def ensure_base(self, state: ClusterState, by: str) -> None:
        """Give the loaded version a delta key if it has none (a new cluster, an old bucket)."""
        if await self._get_delta(state.version) is not None:
            return
        marker = Delta(version=state.version, by=by, base=True).to_bytes()
        try:
            await retrying(lambda: self.store.put(metadata_delta_key(state.version), marker, if_none_match=True),
                           attempts=20)
        except PreconditionFailed:
            pass  # there is one now

    async def append(self, delta: Delta) -> bytes:
        """Create the key of ``delta.version``; raise :class:`Conflict` if it is someone else's."""
        data = delta.to_bytes()
        key = metadata_delta_key(delta.version)
        put = functools.partial(self.store.put, key, data, if_none_match=True)
        try:
            await retrying(put, attempts=20)
        except PreconditionFailed:
            got = await retrying(lambda: self.store.get(key))
            if got.data != data:  # not our own earlier attempt whose answer was lost
                raise Conflict(f"metadata version {delta.version} was committed by another controller") from None
        if await self._get_delta(delta.version - 1) is None:
            # Our predecessor was retired, so this version was too, long ago: we are stale.
            await retrying(lambda: self.store.delete(key))
            raise Conflict(f"metadata version {delta.version} is long retired")
        self.bytes_since_snapshot += len(data)
        return data

    def snapshot_due(self) -> bool:
        return self.bytes_since_snapshot >= max(self.snapshot_min_bytes, self.snapshot_ratio * self.snapshot_size)

    async def snapshot(self, state: ClusterState) -> None:
        """Write ``state`` as the snapshot unless a newer one is there; retire old deltas."""
        async with self._snapshot_lock:
            if state.version <= self.snapshot_version:
                return
            since = self.bytes_since_snapshot
            data = await asyncio.to_thread(state.to_bytes)
            while True:
                etag = self._snapshot_etag
                cond = {"if_none_match": True} if etag is None else {"if_match": etag}
                try:
                    new_etag = await retrying(functools.partial(self.store.put, CLUSTER_KEY, data, **cond),
                                              attempts=20)
                    break
                except PreconditionFailed:
                    got = await retrying(lambda: self.store.get(CLUSTER_KEY))
                    stored = (await asyncio.to_thread(json.loads, got.data))["version"]
                    self._snapshot_etag = got.etag
                    if stored >= state.version:
                        self.snapshot_version, self.snapshot_size = stored, len(got.data)
                        return
            previous = self.snapshot_version
            self.snapshot_version, self.snapshot_size, self._snapshot_etag = state.version, len(data), new_etag
            self.bytes_since_snapshot = max(0, self.bytes_since_snapshot - since)
            log.info("metadata snapshot written", version=state.version, bytes=len(data))
            await self._retire(upto=previous)

    async def _retire(self, upto: int) -> None:
        """Delete the deltas at or below ``upto``, oldest first (see the module docstring)."""
        keys = await retrying(lambda: self.store.list(METADATA_LOG_PREFIX))
        for key in keys:
            if metadata_delta_version(key) > upto:
                break
            await retrying(lambda k=key: self.store.delete(k))  # type: ignore[misc]
