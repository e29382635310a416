"""SyncGroup against a real broker, over raw requests: Kafka's order, and nothing handed out is forgotten.

The broker's WAL flush interval is stretched so the leader's assignment takes
long to become durable; the follower sends its SyncGroup inside that window.
It must be answered after the leader, and once it has its assignment a
kill -9 of the coordinator must not lose it: the next coordinator answers the
same SyncGroup with the same bytes.
"""

from __future__ import annotations

import asyncio
import uuid

from kio.schema.errors import ErrorCode

from tests.infra.broker import BrokerProcess, wait_until
from tests.test_group_bad_input import Raw, coordinator, join, sync

SLOW_FLUSH = ("--flush-interval-ms", "1500", "--group-initial-rebalance-delay-ms", "300")


async def member(broker: BrokerProcess, group: str) -> tuple[Raw, Joined]:
    conn = await coordinator(broker, group)
    first = await join(conn, group)
    assert first.error_code == ErrorCode.member_id_required
    return conn, Joined(conn, first.member_id)


class Joined:
    def __init__(self, conn: Raw, member_id: str) -> None:
        self.conn, self.member_id = conn, member_id


def test_follower_sync_waits_for_the_durable_assignment_and_survives_kill9(brokers, file_store) -> None:  # type: ignore[no-untyped-def]
    group = f"g-{uuid.uuid4().hex[:6]}"
    broker = brokers(file_store, *SLOW_FLUSH)
    order: list[str] = []

    async def scenario() -> tuple[str, int, bytes]:
        (ca, a), (cb, b) = await member(broker, group), await member(broker, group)
        ja, jb = await asyncio.gather(join(ca, group, a.member_id), join(cb, group, b.member_id))
        assert ja.error_code == jb.error_code == ErrorCode.none and ja.generation_id == jb.generation_id
        leader, follower = (ja, jb) if ja.leader == ja.member_id else (jb, ja)
        lconn, fconn = (ca, cb) if leader is ja else (cb, ca)
        plan = ((leader.member_id, b"for-the-leader"), (follower.member_id, b"for-the-follower"))

        async def timed(label: str, coro):  # type: ignore[no-untyped-def]
            reply = await coro
            order.append(label)
            return reply

        lead = asyncio.create_task(timed("leader", sync(lconn, group, leader.member_id, leader.generation_id, plan)))
        await asyncio.sleep(0.1)  # the leader's assignment is being written (1.5 s flush interval)
        got = await timed("follower", sync(fconn, group, follower.member_id, follower.generation_id))
        assert got.error_code == ErrorCode.none and got.assignment == b"for-the-follower"
        broker.kill9()  # right after the follower got its assignment
        lead.cancel()
        for c in (ca, cb):
            c.writer.close()
        return follower.member_id, follower.generation_id, got.assignment

    follower_id, generation, assignment = asyncio.run(scenario())
    assert order[0] == "leader", f"the follower was answered before the leader: {order}"
    successor = brokers(file_store, *SLOW_FLUSH)

    async def again() -> bytes:
        conn = await coordinator(successor, group)
        try:
            r = await sync(conn, group, follower_id, generation)
            assert r.error_code == ErrorCode.none, f"the new coordinator forgot the group: {r.error_code!r}"
            return bytes(r.assignment)
        finally:
            await conn.close()

    assert wait_until(lambda: asyncio.run(again()) == assignment, 60, message="the same assignment after kill -9")
