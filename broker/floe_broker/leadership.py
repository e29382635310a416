"""Which partitions this broker serves: the join of cluster metadata and the log.

The metadata says who leads what at which epoch; the partition manager opens
and closes logs. This module keeps the two in step: open what we lead, close
what we no longer lead (gracefully when we still lead it at another epoch),
give a partition up for a move, and reclaim partitions stranded by a move
that was released but never committed.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Iterable, Mapping

import structlog

from floe_api.internal import Reclaim

from .cluster.client import ControllerClient
from .cluster.metadata import ClusterState, LedPartitions
from .log.manager import PartitionManager
from .log.partition import Partition

log = structlog.get_logger(__name__)

RECLAIM_AFTER_S = 3.0  # a move commits within milliseconds; this long means it never will
OPEN_IN_PARALLEL = 64


class Leadership:
    def __init__(
        self,
        *,
        state: Callable[[], ClusterState],
        node_id: Callable[[], int],
        draining: Callable[[], bool],
        controller: ControllerClient,
    ) -> None:
        self._state = state
        self._node_id = node_id
        self._draining = draining
        self._controller = controller
        self.partitions: PartitionManager | None = None  # set once this broker has a node id and a WAL
        self._sync_lock = asyncio.Lock()
        self._waiters: set[asyncio.Future[None]] = set()
        self._stranded: dict[tuple[str, int, int], float] = {}  # released, still ours: since when
        self._led = LedPartitions()
        # led by us but not open after the last sync (released at this epoch, or the open failed)
        self._unopened: set[tuple[str, int]] = set()
        self.last_sync_looked_at = 0  # partitions the last sync looked at (what a push costs)

    async def leader_partition(self, topic: str, index: int) -> Partition | None:
        if self.partitions is None:
            return None
        part = self.partitions.get(topic, index)
        if part is not None and part.accepting:
            return part
        info = self._state().topics.get(topic)
        if info is None or not 0 <= index < len(info.partitions) or self._draining():
            return None
        p = info.partitions[index]
        if p.leader != self._node_id():
            return None
        return await self.partitions.open(info.name, info.topic_id, index, p.epoch)

    async def sync(self, state: ClusterState) -> None:
        """Open what we lead, close what we no longer lead.

        A push changes a handful of partitions, so only those are looked at (what
        :class:`LedPartitions` reports as changed, and the few we lead but could not
        open last time); every held partition is walked only on the first sync.
        """
        pm = self.partitions
        if pm is None:
            return
        node = self._node_id()
        async with self._sync_lock:
            try:
                await self._sync(pm, state, node)
            except BaseException:
                # Something was not closed or opened as it should be: walk everything next time.
                self._led = LedPartitions()
                raise

    async def _sync(self, pm: PartitionManager, state: ClusterState, node: int) -> None:
        """One sync, under the lock: the changed partitions (all of them the first time)."""
        changed = self._led.update(state, node)
        mine = self._led.led
        if changed is None:
            keys: Iterable[tuple[str, int]] = {*pm.held, *mine}
        else:
            keys = changed | self._unopened
        self.last_sync_looked_at = 0
        opens = []
        for key in keys:
            self.last_sync_looked_at += 1
            want, held = mine.get(key), pm.held.get(key)
            if held is not None and (want is None or want != (held.partition.topic_id, held.partition.epoch)):
                await pm.close(*key, graceful=want is not None)
                held = None
            if want is not None and held is None:
                opens.append(key)
        self._unopened = set()
        for start in range(0, len(opens), OPEN_IN_PARALLEL):
            chunk = opens[start : start + OPEN_IN_PARALLEL]
            await asyncio.gather(*(pm.open(name, *self._at(mine, (name, i))) for name, i in chunk),
                                 return_exceptions=True)
            self._unopened.update(k for k in chunk if k in mine and pm.get(*k) is None)

    @staticmethod
    def _at(mine: Mapping[tuple[str, int], tuple[str, int]], key: tuple[str, int]) -> tuple[str, int, int]:
        topic_id, epoch = mine[key]
        return topic_id, key[1], epoch

    def metadata_changed(self) -> None:
        for fut in self._waiters:
            if not fut.done():
                fut.set_result(None)
        self._waiters.clear()

    async def wait_for_new_leaders(self, keys: list[tuple[str, int]], within_s: float) -> None:
        """Wait (up to ``within_s``) until none of these partitions is led by us any more.

        A produce that reaches us while a partition is moving away would otherwise get
        NOT_LEADER_OR_FOLLOWER without the new leader, and the client would go through a
        metadata refresh; the move commits within milliseconds, so we wait for it and
        answer with the new leader (KIP-951) instead.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within_s
        while True:
            state, node = self._state(), self._node_id()
            if not any((p := state.partition(t, i)) is not None and p.leader == node for t, i in keys):
                return
            remaining = deadline - loop.time()
            if remaining <= 0:
                return
            fut: asyncio.Future[None] = loop.create_future()
            self._waiters.add(fut)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(fut, remaining)

    async def release_partition(self, topic: str, index: int, epoch: int) -> None:
        """Our half of a move: stop produce, flush, clean checkpoint, never reopen <= epoch."""
        pm = self.partitions
        if pm is None:
            return
        pm.released[(topic, index)] = max(epoch, pm.released.get((topic, index), -1))
        await pm.close(topic, index, graceful=True)

    async def reclaim_stranded(self) -> None:
        """Partitions we released for a move that never committed (its controller died or
        gave up) are still ours in the metadata, at an epoch we may not reopen. After a grace
        period, ask for a new epoch so they are served again."""
        pm = self.partitions
        if pm is None or self._draining():
            return
        now = time.monotonic()
        state, node = self._state(), self._node_id()
        stranded: set[tuple[str, int, int]] = set()
        for (name, index), released in pm.released.items():
            p = state.partition(name, index)
            if p is not None and p.leader == node and p.epoch <= released:
                stranded.add((name, index, p.epoch))
        self._stranded = {k: v for k, v in self._stranded.items() if k in stranded}
        for key in stranded:
            first = self._stranded.setdefault(key, now)
            if now - first >= RECLAIM_AFTER_S:
                name, index, epoch = key
                log.warning("reclaiming a partition released for a move that never committed",
                            topic=name, partition=index, epoch=epoch)
                await self._controller.apply(Reclaim(name=name, index=index, node=node, epoch=epoch))
                self._stranded.pop(key, None)

    async def reclaim_loop(self, interval_s: float) -> None:
        while True:
            await asyncio.sleep(interval_s)
            try:
                await self.reclaim_stranded()
            except Exception as exc:
                log.warning("reclaiming released partitions failed", error=repr(exc))
