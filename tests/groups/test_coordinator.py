"""The coordinator's persistence and waiting logic over a fake journal with group-commit timing.

The fake journal assigns offsets at once and makes appends durable together a
moment later, like the WAL; replaying it is what a new coordinator would see.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Awaitable

import pytest
from kio.schema.errors import ErrorCode

from floe_broker.errors import JournalClosed
from floe_broker.groups.coordinator import Shard
from floe_broker.groups.state import JoinReply, Limits, OffsetEntry, SyncReply


class FakeJournal:
    def __init__(self, flush_s: float = 0.005) -> None:
        self.identity = object()
        self.log: list[tuple[bytes, bytes | None]] = []
        self.start = 0
        self.flush_s = flush_s
        self._flush: asyncio.Future[None] | None = None
        self.closed = False

    @property
    def open(self) -> bool:
        return not self.closed

    async def reserve(self, nbytes: int) -> None:
        await asyncio.sleep(0)

    def append(self, entries: list[tuple[bytes, bytes | None]]) -> tuple[int, Awaitable[None]]:
        if self.closed:
            raise JournalClosed("closed")
        base = len(self.log)
        self.log.extend(entries)
        if self._flush is None:
            loop = asyncio.get_running_loop()
            fut = self._flush = loop.create_future()

            def done() -> None:
                self._flush = None
                fut.set_result(None)

            loop.call_later(self.flush_s * random.random(), done)
        flush = self._flush

        async def durable() -> None:
            await asyncio.shield(flush)
            if self.closed:
                raise JournalClosed("closed")

        return base, durable()

    def trim_before(self, offset: int) -> None:
        self.start = max(self.start, offset)

    async def replay(self) -> AsyncIterator[tuple[bytes, bytes | None]]:
        for kv in self.log[self.start :]:
            yield kv


def entry(offset: int) -> OffsetEntry:
    return OffsetEntry(offset, -1, None, 0)


@pytest.mark.parametrize("seed", [1, 7, 42])
async def test_snapshots_never_trim_an_acknowledged_commit(seed: int) -> None:
    random.seed(seed)
    journal = FakeJournal()
    shard = Shard(0, journal, Limits(), snapshot_after=20)
    acked: dict[tuple[str, str, int], int] = {}

    async def committer(group: str) -> None:
        for i in range(150):
            p = random.randrange(6)
            code = await shard.commit(group, member_id="", instance_id=None, generation=-1,
                                      offsets=[("t", p, entry(i))])
            assert code == ErrorCode.none
            acked[(group, "t", p)] = i

    await asyncio.gather(*(committer(f"g{n}") for n in range(5)))
    if shard._snapshot_task is not None:
        await shard._snapshot_task
    assert journal.start > 0, "snapshots trimmed the journal"
    reloaded = Shard(0, journal, Limits())
    await reloaded.load()
    got = {(g, t, p): e.offset for g, grp in reloaded.groups.items() for (t, p), e in grp.offsets.items()}
    assert got == acked


async def test_delete_racing_a_join_never_leaves_the_join_unanswered() -> None:
    journal = FakeJournal(flush_s=0.05)
    shard = Shard(0, journal, Limits(initial_rebalance_delay_ms=0))
    assert await shard.commit("g", member_id="", instance_id=None, generation=-1, offsets=[("t", 0, entry(1))]) \
        == ErrorCode.none
    deleting = asyncio.create_task(shard.delete_group("g"))
    await asyncio.sleep(0)  # the delete is writing its tombstones
    join = shard.join("g", member_id="", instance_id="i-1", client_id="c", client_host="/h",
                      session_timeout_ms=10_000, rebalance_timeout_ms=10_000, protocol_type="consumer",
                      protocols=[("range", b"")], require_known_member=True)
    reply = await asyncio.wait_for(join, 5)
    assert await deleting == ErrorCode.none
    assert reply.error == ErrorCode.none and reply.generation == 1, "a fresh group, not the deleted one"
    reloaded = Shard(0, journal, Limits())
    await reloaded.load()
    assert "g" not in reloaded.groups or not reloaded.groups["g"].offsets


async def test_a_rejoin_whose_persist_fails_is_told_not_coordinator() -> None:
    journal = FakeJournal()
    shard = Shard(0, journal, Limits())
    kw = dict(instance_id="pod-0", client_id="c", client_host="/h", session_timeout_ms=10_000,
              rebalance_timeout_ms=10_000, protocol_type="consumer", protocols=[("range", b"m")],
              require_known_member=True)
    first = await shard.join("g", member_id="", **kw)  # type: ignore[arg-type]
    synced = await shard.sync("g", member_id=first.member_id, instance_id="pod-0", generation=first.generation,
                              protocol_type=None, protocol_name=None, assignments={first.member_id: b"A"})
    assert isinstance(synced, SyncReply) and synced.assignment == b"A"
    journal.closed = True  # the partition moves away before the rejoin is persisted
    again = await shard.join("g", member_id="", **kw)  # type: ignore[arg-type]
    assert isinstance(again, JoinReply) and again.error == ErrorCode.not_coordinator


async def test_first_commit_of_a_new_group_survives_a_tick_during_its_write() -> None:
    """The tick forgets unused groups; a group whose first commit is still being written is not one."""
    journal = FakeJournal(flush_s=0.05)
    shard = Shard(0, journal, Limits())
    commit = asyncio.create_task(shard.commit("g", member_id="", instance_id=None, generation=-1,
                                              offsets=[("t", 0, entry(5))]))
    await asyncio.sleep(0)
    await shard.tick()  # runs while the commit waits for durability
    assert await commit == ErrorCode.none
    assert shard.fetch_offsets("g") == {("t", 0): entry(5)}
    assert await shard.delete_group("g") == ErrorCode.none


async def test_consumer_protocol_group_survives_snapshots_and_reload() -> None:
    """A KIP-848 group's record is kept by the offsets snapshot, and a new coordinator resumes its epochs."""
    from floe_broker.groups.consumer_protocol import HeartbeatRequest, TopicMeta

    journal = FakeJournal()
    shard = Shard(0, journal, Limits(), snapshot_after=20)
    topics = {"t": TopicMeta("id-t", "t", 4)}
    joined = await shard.consumer_heartbeat("g", HeartbeatRequest(
        member_id="m", member_epoch=0, rebalance_timeout_ms=10_000, subscribed_names=("t",), owned={}), topics)
    assert joined.epoch == 1 and joined.assignment == {"id-t": {0, 1, 2, 3}}
    for i in range(100):
        assert await shard.commit("g", member_id="m", instance_id=None, generation=1,
                                  offsets=[("t", i % 4, entry(i))]) == ErrorCode.none
    if shard._snapshot_task is not None:
        await shard._snapshot_task
    assert journal.start > 0, "snapshots trimmed the journal"
    reloaded = Shard(0, journal, Limits())
    await reloaded.load()
    group = reloaded.groups["g"]
    assert group.consumer is not None and group.consumer.members["m"].epoch == 1
    assert group.consumer.members["m"].assigned == {"id-t": {0, 1, 2, 3}}
    assert reloaded.fetch_offsets("g")[("t", 3)].offset == 99
    again = await reloaded.consumer_heartbeat("g", HeartbeatRequest(member_id="m", member_epoch=1), topics)
    assert again.error == ErrorCode.none and again.epoch == 1
    assert await reloaded.delete_group("g") == ErrorCode.non_empty_group
