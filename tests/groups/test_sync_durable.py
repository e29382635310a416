"""SyncGroup is answered only from durable state, leader first.

A gated journal holds every append until the test lets it become durable, and
replays only what became durable: exactly what a coordinator taking over after
a kill -9 would see.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable
from typing import Any

from kio.schema.errors import ErrorCode

from floe_broker.groups.coordinator import Shard
from floe_broker.groups.state import JoinReply, Limits, SyncReply


class GatedJournal:
    def __init__(self) -> None:
        self.identity = object()
        self.durable_log: list[tuple[bytes, bytes | None]] = []
        self.held: list[tuple[list[tuple[bytes, bytes | None]], asyncio.Future[None]]] = []
        self.next_offset = 0

    @property
    def open(self) -> bool:
        return True

    async def reserve(self, nbytes: int) -> None:
        return None

    def append(self, entries: list[tuple[bytes, bytes | None]]) -> tuple[int, Awaitable[None]]:
        base = self.next_offset
        self.next_offset += len(entries)
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.held.append((entries, fut))
        return base, asyncio.shield(fut)

    def release(self) -> None:
        """Everything appended so far becomes durable, in order."""
        held, self.held = self.held, []
        for entries, fut in held:
            self.durable_log.extend(entries)
            fut.set_result(None)

    def trim_before(self, offset: int) -> None:
        return None

    async def replay(self) -> AsyncIterator[tuple[bytes, bytes | None]]:
        for kv in list(self.durable_log):
            yield kv


JOIN: dict[str, Any] = dict(client_id="c", client_host="/h", session_timeout_ms=10_000,
                            rebalance_timeout_ms=10_000, protocol_type="consumer",
                            protocols=[("range", b"m")], require_known_member=False)


async def completing_group(shard: Shard, journal: GatedJournal) -> tuple[JoinReply, JoinReply]:
    a = asyncio.create_task(shard.join("g", member_id="", instance_id="pod-a", **JOIN))
    b = asyncio.create_task(shard.join("g", member_id="", instance_id="pod-b", **JOIN))
    deadline = asyncio.get_running_loop().time() + 10
    while not (a.done() and b.done()):
        assert asyncio.get_running_loop().time() < deadline, "the join round never completed"
        journal.release()
        await shard.tick()  # ends the initial rebalance delay
        await asyncio.sleep(0.01)
    ra, rb = a.result(), b.result()
    leader, follower = (ra, rb) if ra.member_id == ra.leader else (rb, ra)
    assert leader.member_id == leader.leader and follower.leader == leader.member_id
    return leader, follower


async def sync(shard: Shard, reply: JoinReply, instance: str, assignments: dict[str, bytes]) -> SyncReply:
    return await shard.sync("g", member_id=reply.member_id, instance_id=instance, generation=reply.generation,
                            protocol_type=None, protocol_name=None, assignments=assignments)


async def answered(task: asyncio.Task[SyncReply], order: list[str], label: str) -> SyncReply:
    reply = await task
    order.append(label)
    return reply


async def test_followers_are_answered_only_once_the_assignment_is_durable_and_after_the_leader() -> None:
    journal = GatedJournal()
    shard = Shard(0, journal, Limits(initial_rebalance_delay_ms=50))
    leader, follower = await completing_group(shard, journal)
    instance = {m: i for m, i, _ in leader.members}
    order: list[str] = []
    plan = {leader.member_id: b"L", follower.member_id: b"F"}
    lead = asyncio.create_task(answered(asyncio.create_task(
        sync(shard, leader, instance[leader.member_id], plan)), order, "leader"))
    await asyncio.sleep(0.05)
    # The follower's SyncGroup arrives while the leader's assignment is still being written.
    follow = asyncio.create_task(answered(asyncio.create_task(
        sync(shard, follower, instance[follower.member_id], {})), order, "follower"))
    await asyncio.sleep(0.05)
    assert not follow.done(), "a follower was handed an assignment that is not durable yet"
    assert not lead.done()
    journal.release()
    got_leader, got_follower = await asyncio.wait_for(asyncio.gather(lead, follow), 5)
    assert (got_leader.error, got_leader.assignment) == (ErrorCode.none, b"L")
    assert (got_follower.error, got_follower.assignment) == (ErrorCode.none, b"F")
    assert order == ["leader", "follower"], "Kafka answers the leader's SyncGroup first"


async def test_an_assignment_a_follower_got_survives_a_coordinator_crash() -> None:
    journal = GatedJournal()
    shard = Shard(0, journal, Limits(initial_rebalance_delay_ms=50))
    leader, follower = await completing_group(shard, journal)
    instance = {m: i for m, i, _ in leader.members}
    plan = {leader.member_id: b"L", follower.member_id: b"F"}
    lead = asyncio.create_task(sync(shard, leader, instance[leader.member_id], plan))
    follow = asyncio.create_task(sync(shard, follower, instance[follower.member_id], {}))
    # Keep making whatever is written durable until the follower has its answer, then "kill -9".
    deadline = asyncio.get_running_loop().time() + 10
    while not follow.done():
        assert asyncio.get_running_loop().time() < deadline, "the follower was never answered"
        journal.release()
        await asyncio.sleep(0.01)
    assert follow.result().assignment == b"F"
    crashed = GatedJournal()
    crashed.durable_log = list(journal.durable_log)  # what the bucket holds at the moment of the kill
    journal.release()
    await lead
    successor = Shard(0, crashed, Limits())
    await successor.load()
    group = successor.groups["g"]
    assert group.generation == follower.generation
    assert group.members[follower.member_id].assignment == b"F", "the new coordinator forgot the assignment"
    again = await sync(successor, follower, instance[follower.member_id], {})
    assert (again.error, again.assignment) == (ErrorCode.none, b"F")
