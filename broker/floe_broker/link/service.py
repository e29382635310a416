"""The links on one broker: a mirror per linked partition it leads, group offsets, topics that follow.

Every broker runs one :class:`LinkService`. Each round it reads the links in
the cluster metadata and

* starts a :class:`~.mirror.PartitionMirror` for every linked, not yet
  promoted partition it leads, and forgets those it no longer leads (a mirror
  also stops by itself when its partition closes), so mirroring moves and
  fails over with leadership;
* on the controller's broker only, makes Floe's topics follow the source's
  (``topics``);
* copies the chosen groups' offsets for the groups it coordinates
  (``offsets``), and once more after a topic's promotion.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable

import structlog

from floe_api.internal import MetadataOp
from floe_api.links import (
    PROMOTED,
    CreateLink,
    DeleteLink,
    LinkDefinition,
    LinkedTopic,
    LinkLagReply,
    LinkRecord,
    LinkStatus,
    LinkTopicStatus,
    MirroredProducerIds,
    PartitionLag,
    PartitionPromoted,
    PromoteLink,
)

from ..cluster.metadata import ClusterState
from ..groups.coordinator import GroupCoordinator
from ..log.partition import Partition
from ..log.service import LogService
from .mirror import PartitionMirror, ProducerIdReservation
from .offsets import sync_groups
from .source import SourceCluster, SourceError
from .topics import follow_topics

log = structlog.get_logger(__name__)

ROUND_S = 1.0
FOLLOW_EVERY_S = 5.0  # topics, partitions, configs and group offsets: once per this many seconds

MirrorKey = tuple[str, str, int]  # link, topic, partition


class LinkService:
    def __init__(self, *, state: Callable[[], ClusterState], node_id: Callable[[], int],
                 is_controller: Callable[[], bool], apply: Callable[[MetadataOp], Awaitable[None]],
                 leader_partition: Callable[[str, int], Awaitable[Partition | None]],
                 log_service: Callable[[], LogService], groups: GroupCoordinator) -> None:
        self.state, self.node_id, self.is_controller = state, node_id, is_controller
        self.apply, self.leader_partition, self.log_service, self.groups = apply, leader_partition, log_service, groups
        self.mirrors: dict[MirrorKey, tuple[PartitionMirror, asyncio.Task[None]]] = {}
        self.sources: dict[str, SourceCluster] = {}
        self._followed_at: dict[str, float] = {}
        self._final_sync: dict[str, set[str]] = {}  # link -> promoted topics whose last group sync is done
        self._warned: set[str] = set()
        self.follow_errors: dict[str, str] = {}  # link -> why its last follow round failed
        self._producer_ids = ProducerIdReservation(
            highest=lambda: self.state().mirrored_producer_id_max,
            reserve=lambda pid: self.apply(MirroredProducerIds(highest=pid)))

    # ---- the admin API's calls -------------------------------------------------------------

    async def create(self, definition: LinkDefinition) -> None:
        await self.apply(CreateLink(definition=definition))

    async def delete(self, name: str) -> None:
        await self.apply(DeleteLink(name=name))

    async def promote(self, name: str, topics: list[str] | None, *, force: bool = False) -> None:
        await self.apply(PromoteLink(name=name, topics=topics, force=force))

    def local_lag(self) -> LinkLagReply:
        """The mirrors this broker runs (the admin API gathers every broker's)."""
        return LinkLagReply(partitions=[m.lag() for m, _ in self.mirrors.values()],
                            errors={n: e for n, e in self.follow_errors.items() if n in self.state().links})

    # ---- the loop ----------------------------------------------------------------------------

    async def run(self) -> None:
        try:
            while True:
                try:
                    await self.round()
                except Exception as exc:  # one bad round (a source down, a lost lease) must not end linking
                    log.warning("link round failed", error=repr(exc))
                await asyncio.sleep(ROUND_S)
        finally:
            await self.stop()

    async def stop(self) -> None:
        for _, task in self.mirrors.values():
            task.cancel()
        for _, task in self.mirrors.values():
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self.mirrors.clear()
        for source in self.sources.values():
            await source.close()
        self.sources.clear()

    async def round(self) -> None:
        state = self.state()
        await self._sources_for(state)
        wanted: set[MirrorKey] = set()
        for name, link in state.links.items():
            for topic, linked in link.topics.items():
                info = state.topics.get(topic)
                if info is None:
                    continue
                for index, p in enumerate(info.partitions):
                    if p.leader == self.node_id() and index not in linked.promoted:
                        wanted.add((name, topic, index))
        for key in [k for k in self.mirrors if k not in wanted or self.mirrors[k][1].done()]:
            _, task = self.mirrors.pop(key)
            task.cancel()
        for key in sorted(wanted - self.mirrors.keys()):
            await self._start_mirror(key)
        now = time.monotonic()
        for name, link in state.links.items():
            if now - self._followed_at.get(name, 0.0) < FOLLOW_EVERY_S:
                continue
            self._followed_at[name] = now
            try:
                await self._follow(name, link)
                self.follow_errors.pop(name, None)
            except SourceError as exc:
                self.follow_errors[name] = str(exc)
                log.warning("link cannot follow its source", link=name, error=str(exc))

    async def _sources_for(self, state: ClusterState) -> None:
        for name in [n for n in self.sources if n not in state.links
                     or state.links[n].definition != self.sources[n].definition]:
            for key in [k for k in self.mirrors if k[0] == name]:
                self.mirrors.pop(key)[1].cancel()
            await self.sources.pop(name).close()
        for name, link in state.links.items():
            if name not in self.sources:
                self.sources[name] = SourceCluster(link.definition)

    async def _start_mirror(self, key: MirrorKey) -> None:
        name, topic, index = key
        part = await self.leader_partition(topic, index)
        if part is None:
            return

        def linked() -> LinkedTopic | None:
            link = self.state().links.get(name)
            return link.topics.get(topic) if link is not None else None

        def promoting() -> bool:
            found = linked()
            return found is not None and found.promoting

        def forced() -> bool:
            found = linked()
            return found is not None and found.forced

        async def promoted(t: str, i: int) -> None:
            await self.apply(PartitionPromoted(name=name, topic=t, partition=i))

        mirror = PartitionMirror(name, self.sources[name], self.log_service(), part, promoting=promoting,
                                 promoted=promoted, node_id=self.node_id(), forced=forced,
                                 producer_ids=self._producer_ids)
        self.mirrors[key] = (mirror, asyncio.create_task(mirror.run(), name=f"mirror-{topic}-{index}"))

    async def _follow(self, name: str, link: LinkRecord) -> None:
        source = self.sources[name]
        if self.is_controller():
            await follow_topics(name, link, source, self.state, self.apply, self._warned)
        state = self.state()
        promoted = {t for t, lt in link.topics.items() if t in state.topics
                    and lt.state(len(state.topics[t].partitions)) == PROMOTED}
        done = self._final_sync.setdefault(name, set())
        topics = {t for t in link.topics if t not in done}
        if topics:
            copied = await sync_groups(source, self.groups, topics)
            if copied:
                log.info("group offsets copied", link=name, groups=copied)
        done.update(promoted)  # a promoted topic's offsets were copied once more, after its promotion

    # ---- status ----------------------------------------------------------------------------------

    @staticmethod
    def status(name: str, link: LinkRecord, state: ClusterState, lags: list[PartitionLag],
               error: str | None = None) -> LinkStatus:
        """A link's status from the metadata and every broker's mirrors."""
        by_key = {(p.topic, p.partition): p for p in lags}
        topics = []
        for topic, linked in sorted(link.topics.items()):
            info = state.topics.get(topic)
            count = len(info.partitions) if info is not None else 0
            parts = [by_key.get((topic, i)) or PartitionLag(
                topic=topic, partition=i, node=info.partitions[i].leader if info else -1, floe_end=-1,
                source_end=-1, lag_records=0 if i in linked.promoted else -1, lag_seconds=0.0, bytes_mirrored=0,
                state=PROMOTED if i in linked.promoted else "starting") for i in range(count)]
            topics.append(LinkTopicStatus(topic=topic, state=linked.state(count), partitions=parts))
        lag = sum(max(p.lag_records, 0) for t in topics for p in t.partitions)
        d = link.definition
        return LinkStatus(name=name, bootstrap_servers=d.source.bootstrap_servers, topics=topics,
                          groups=d.groups + ([f"regex:{d.group_regex}"] if d.group_regex else []), lag_records=lag,
                          error=error)
