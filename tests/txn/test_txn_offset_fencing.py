"""TxnOffsetCommit with the consumer group's metadata (exactly-once v2, KIP-447), on the coordinator.

Under exactly_once_v2 a Kafka Streams thread's producer sends its offsets with the consumer's
generation, member id and group.instance.id: the group coordinator is what fences a zombie that
lost its partitions in a rebalance (its transaction must fail rather than commit offsets its
successor also commits). A stale generation gets ILLEGAL_GENERATION, a member no longer in the
group UNKNOWN_MEMBER_ID, a static member replaced by a new incarnation FENCED_INSTANCE_ID; the
current member's offsets stay pending (and answer UNSTABLE_OFFSET_COMMIT to a stable fetch) until
the transaction ends.
"""

from __future__ import annotations

from kio.schema.errors import ErrorCode

from floe_broker.groups.coordinator import Shard
from floe_broker.groups.state import JoinReply, Limits, SyncReply
from tests.groups.test_coordinator import FakeJournal, entry

JOIN = dict(client_id="c", client_host="/h", session_timeout_ms=10_000, rebalance_timeout_ms=10_000,
            protocol_type="consumer", protocols=[("range", b"m")], require_known_member=True)


async def test_only_the_current_member_commits_offsets_in_a_transaction() -> None:
    shard = Shard(0, FakeJournal(), Limits(initial_rebalance_delay_ms=0))
    first = await shard.join("streams", member_id="", instance_id="pod-0", **JOIN)  # type: ignore[arg-type]
    assert isinstance(first, JoinReply) and first.error == ErrorCode.none
    synced = await shard.sync("streams", member_id=first.member_id, instance_id="pod-0",
                              generation=first.generation, protocol_type=None, protocol_name=None,
                              assignments={first.member_id: b"A"})
    assert isinstance(synced, SyncReply)
    offsets = [("in", 0, entry(7))]

    async def commit(member: str, instance: str | None, generation: int) -> ErrorCode:
        return await shard.txn_commit("streams", 42, member_id=member, instance_id=instance,
                                      generation=generation, offsets=offsets)

    assert await commit(first.member_id, "pod-0", first.generation - 1) == ErrorCode.illegal_generation
    assert await commit("ghost", None, first.generation) == ErrorCode.unknown_member_id
    assert shard.pending_txn_partitions("streams") == set(), "a refused commit left offsets pending"
    # a new incarnation of pod-0 takes its place: the old member id is now a zombie
    second = await shard.join("streams", member_id="", instance_id="pod-0", **JOIN)  # type: ignore[arg-type]
    assert isinstance(second, JoinReply) and second.member_id != first.member_id
    assert await commit(first.member_id, "pod-0", first.generation) == ErrorCode.fenced_instance_id
    assert await commit(second.member_id, "pod-0", second.generation) == ErrorCode.none
    assert shard.pending_txn_partitions("streams") == {("in", 0)}
    assert ("in", 0) not in shard.fetch_offsets("streams")
    await shard.end_txn("streams", 42, commit=True)
    assert shard.pending_txn_partitions("streams") == set()
    assert shard.fetch_offsets("streams")[("in", 0)].offset == 7
