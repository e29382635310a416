"""Bad group traffic gets the right Kafka error code; the group and the coordinator stay healthy.

These speak the protocol directly (kio requests over asyncio streams) because
real clients never send most of this: unknown member ids, stale generations,
commits for partitions that do not exist, oversized metadata, a client
writing into ``__consumer_offsets``, and a group of hundreds of members.
"""

from __future__ import annotations

import asyncio
import io
import struct
import uuid
from typing import Any

import pytest
from kio.index import load_request_schema
from kio.schema.errors import ErrorCode
from kio.serial import entity_reader, entity_writer
from kio.static.primitive import i16, i32

from floe_broker.protocol.build import response_class
from tests.infra.broker import BrokerProcess
from tests.test_clients import create_topic

FIND, JOIN, HEARTBEAT, LEAVE, SYNC, COMMIT, FETCH_OFFSETS, DESCRIBE, OFFSET_DELETE = 10, 11, 12, 13, 14, 8, 9, 15, 47


class Raw:
    """One Kafka connection speaking kio-encoded requests, one at a time."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer, self.correlation = reader, writer, 0

    @classmethod
    async def open(cls, broker: BrokerProcess) -> Raw:
        reader, writer = await asyncio.open_connection("127.0.0.1", broker.kafka_port)
        return cls(reader, writer)

    async def call(self, api: int, version: int, **fields: Any) -> Any:
        schema = load_request_schema(api, version)
        self.correlation += 1
        header = schema.__header_schema__(request_api_key=i16(api), request_api_version=i16(version),
                                           correlation_id=i32(self.correlation), client_id="raw")
        buf = io.BytesIO()
        entity_writer(schema.__header_schema__)(buf, header)
        entity_writer(schema)(buf, schema(**fields))
        frame = buf.getvalue()
        self.writer.write(struct.pack(">i", len(frame)) + frame)
        size = struct.unpack(">i", await self.reader.readexactly(4))[0]
        body = await self.reader.readexactly(size)
        cls = response_class(api, version)
        _, off = entity_reader(cls.__header_schema__)(body, 0)
        return entity_reader(cls)(body, off)[0]

    async def close(self) -> None:
        self.writer.close()
        await self.writer.wait_closed()


def nested(api: int, version: int, name: str) -> Any:
    import sys

    return getattr(sys.modules[load_request_schema(api, version).__module__], name)


def subscription(*topics: str) -> bytes:
    out = b"\x00\x00" + struct.pack(">i", len(topics))
    for t in topics:
        out += struct.pack(">h", len(t)) + t.encode()
    return out + b"\xff\xff\xff\xff"


async def join(conn: Raw, group: str, member_id: str = "", meta: bytes = b"", session_ms: int = 30000,
               version: int = 5) -> Any:
    import datetime

    proto = nested(JOIN, version, "JoinGroupRequestProtocol")
    return await conn.call(JOIN, version, group_id=group, session_timeout=datetime.timedelta(milliseconds=session_ms),
                           rebalance_timeout=datetime.timedelta(milliseconds=60000), member_id=member_id,
                           group_instance_id=None, protocol_type="consumer",
                           protocols=(proto(name="range", metadata=meta),))


async def sync(conn: Raw, group: str, member_id: str, generation: int,
               assignments: tuple[tuple[str, bytes], ...] = ()) -> Any:
    a = nested(SYNC, 3, "SyncGroupRequestAssignment")
    return await conn.call(SYNC, 3, group_id=group, generation_id=i32(generation), member_id=member_id,
                           group_instance_id=None,
                           assignments=tuple(a(member_id=m, assignment=x) for m, x in assignments))


async def heartbeat(conn: Raw, group: str, member_id: str, generation: int) -> ErrorCode:
    r = await conn.call(HEARTBEAT, 3, group_id=group, generation_id=i32(generation), member_id=member_id,
                        group_instance_id=None)
    return r.error_code


async def commit(conn: Raw, group: str, member_id: str, generation: int, topic: str, partition: int, offset: int,
                 metadata: str = "") -> ErrorCode:
    part = nested(COMMIT, 8, "OffsetCommitRequestPartition")
    top = nested(COMMIT, 8, "OffsetCommitRequestTopic")
    r = await conn.call(COMMIT, 8, group_id=group, generation_id_or_member_epoch=i32(generation),
                        member_id=member_id, group_instance_id=None,
                        topics=(top(name=topic, partitions=(part(partition_index=i32(partition),
                                                                 committed_offset=offset,
                                                                 committed_leader_epoch=i32(-1),
                                                                 committed_metadata=metadata),)),))
    return r.topics[0].partitions[0].error_code


async def coordinator(broker: BrokerProcess, group: str) -> Raw:
    """Connect to the group's coordinator (a single-broker cluster: the broker itself, once it says so)."""
    conn = await Raw.open(broker)
    for _ in range(100):
        r = await conn.call(FIND, 2, key=group, key_type=0)
        if r.error_code == ErrorCode.none:
            return conn
        await asyncio.sleep(0.1)
    raise AssertionError(f"no coordinator: {r}")


async def one_member_group(broker: BrokerProcess, group: str, topic: str) -> tuple[Raw, str, int]:
    conn = await coordinator(broker, group)
    first = await join(conn, group, meta=subscription(topic))
    assert first.error_code == ErrorCode.member_id_required
    joined = await join(conn, group, first.member_id, meta=subscription(topic))
    assert joined.error_code == ErrorCode.none and joined.leader == first.member_id
    synced = await sync(conn, group, first.member_id, joined.generation_id, ((first.member_id, b"all"),))
    assert synced.error_code == ErrorCode.none and synced.assignment == b"all"
    return conn, first.member_id, joined.generation_id


@pytest.fixture
def one_broker(brokers, file_store):  # type: ignore[no-untyped-def]
    return brokers(file_store, "--group-initial-rebalance-delay-ms", "300")


def test_wrong_members_generations_and_partitions_get_kafka_errors(one_broker: BrokerProcess) -> None:
    topic, group = f"bad-{uuid.uuid4().hex[:6]}", f"g-{uuid.uuid4().hex[:6]}"
    create_topic(one_broker.bootstrap, topic, 2)

    async def scenario() -> None:
        conn, member, gen = await one_member_group(one_broker, group, topic)
        assert await heartbeat(conn, group, "who-is-this", gen) == ErrorCode.unknown_member_id
        assert await heartbeat(conn, group, member, gen + 7) == ErrorCode.illegal_generation
        assert await commit(conn, group, member, gen - 1, topic, 0, 5) == ErrorCode.illegal_generation
        assert await commit(conn, group, "stranger", gen, topic, 0, 5) == ErrorCode.unknown_member_id
        assert await commit(conn, group, member, gen, "no-such-topic", 0, 5) == ErrorCode.unknown_topic_or_partition
        assert await commit(conn, group, member, gen, topic, 99, 5) == ErrorCode.unknown_topic_or_partition
        assert await commit(conn, group, member, gen, topic, 0, 5, "x" * 5000) == ErrorCode.offset_metadata_too_large
        assert await commit(conn, group, member, gen, topic, 0, 5, "ok") == ErrorCode.none
        bad_sync = await sync(conn, group, member, gen + 1)
        assert bad_sync.error_code == ErrorCode.illegal_generation
        bad_session = await join(conn, group, member, meta=subscription(topic), session_ms=10)
        assert bad_session.error_code == ErrorCode.invalid_session_timeout
        # A member subscribed to the topic keeps its offsets from OffsetDelete.
        dpart = nested(OFFSET_DELETE, 0, "OffsetDeleteRequestPartition")
        dtop = nested(OFFSET_DELETE, 0, "OffsetDeleteRequestTopic")
        deleted = await conn.call(OFFSET_DELETE, 0, group_id=group,
                                  topics=(dtop(name=topic, partitions=(dpart(partition_index=i32(0)),)),))
        assert deleted.topics[0].partitions[0].error_code == ErrorCode.group_subscribed_to_topic
        # The group is still healthy: heartbeats succeed and the commit is there.
        assert await heartbeat(conn, group, member, gen) == ErrorCode.none
        ftop = nested(FETCH_OFFSETS, 7, "OffsetFetchRequestTopic")
        fetched = await conn.call(FETCH_OFFSETS, 7, group_id=group, topics=(ftop(name=topic, partition_indexes=(
            i32(0),)),), require_stable=False)
        assert fetched.topics[0].partitions[0].committed_offset == 5
        assert fetched.topics[0].partitions[0].metadata == "ok"
        leave_member = nested(LEAVE, 3, "MemberIdentity")
        left = await conn.call(LEAVE, 3, group_id=group, members=(
            leave_member(member_id=member, group_instance_id=None), leave_member(member_id="ghost",
                                                                                 group_instance_id=None)))
        assert [m.error_code for m in left.members] == [ErrorCode.none, ErrorCode.unknown_member_id]
        # Now empty: OffsetDelete works.
        deleted = await conn.call(OFFSET_DELETE, 0, group_id=group,
                                  topics=(dtop(name=topic, partitions=(dpart(partition_index=i32(0)),)),))
        assert deleted.error_code == ErrorCode.none and deleted.topics[0].partitions[0].error_code == ErrorCode.none
        fetched = await conn.call(FETCH_OFFSETS, 7, group_id=group, topics=(ftop(name=topic, partition_indexes=(
            i32(0),)),), require_stable=False)
        assert fetched.topics[0].partitions[0].committed_offset == -1
        await conn.close()

    asyncio.run(asyncio.wait_for(scenario(), 60))


def test_clients_cannot_write_the_offsets_topic(one_broker: BrokerProcess) -> None:
    from confluent_kafka import KafkaError, Producer

    async def make_topic() -> None:
        conn = await coordinator(one_broker, "any-group")
        await conn.close()

    asyncio.run(make_topic())
    errors: list[Any] = []
    p = Producer({"bootstrap.servers": one_broker.bootstrap, "message.timeout.ms": 10000})
    p.produce("__consumer_offsets", value=b"junk", partition=0, on_delivery=lambda e, m: errors.append(e))
    p.flush(20)
    assert errors and errors[0] is not None and errors[0].code() == KafkaError.TOPIC_EXCEPTION


def test_group_of_three_hundred_members_settles(one_broker: BrokerProcess) -> None:
    """Hundreds of members joining at once end in one Stable generation where each has its assignment."""
    topic, group = f"big-{uuid.uuid4().hex[:6]}", f"g-{uuid.uuid4().hex[:6]}"
    create_topic(one_broker.bootstrap, topic, 1)
    n = 300

    async def scenario() -> None:
        finished = asyncio.Event()
        state: dict[str, tuple[int, bytes]] = {}

        async def member(i: int) -> None:
            conn = await coordinator(one_broker, group)
            meta = subscription(topic) + b"#" * 200
            member_id = ""
            while not finished.is_set():
                j = await join(conn, group, member_id, meta=meta)
                if j.error_code == ErrorCode.member_id_required:
                    member_id = j.member_id
                    continue
                assert j.error_code == ErrorCode.none, j
                member_id = j.member_id
                plan = tuple((m.member_id, m.member_id.encode()) for m in j.members) if j.leader == member_id else ()
                s = await sync(conn, group, member_id, j.generation_id, plan)
                if s.error_code == ErrorCode.rebalance_in_progress:
                    continue
                assert s.error_code == ErrorCode.none, s
                state[member_id] = (j.generation_id, s.assignment)
                while not finished.is_set():
                    code = await heartbeat(conn, group, member_id, j.generation_id)
                    if code != ErrorCode.none:
                        assert code == ErrorCode.rebalance_in_progress, code
                        break
                    await asyncio.sleep(1.0)
            await conn.close()

        tasks = [asyncio.create_task(member(i)) for i in range(n)]
        try:
            while True:
                await asyncio.sleep(0.5)
                for t in tasks:
                    if t.done() and t.exception() is not None:
                        raise t.exception()  # type: ignore[misc]
                gens = {g for g, _ in state.values()}
                if len(state) >= n and len(gens) == 1:
                    probe = await Raw.open(one_broker)
                    described = await probe.call(DESCRIBE, 5, groups=(group,), include_authorized_operations=False)
                    await probe.close()
                    g = described.groups[0]
                    current = {m.member_id for m in g.members}
                    if g.group_state == "Stable" and len(current) == n and all(
                            state.get(m, (0, b""))[1] == m.encode() for m in current):
                        break
        finally:
            finished.set()
            await asyncio.gather(*tasks, return_exceptions=True)

    asyncio.run(asyncio.wait_for(scenario(), 180))
    still = one_broker.get("/healthz")
    assert still[0] == 200


def test_batched_find_coordinator_and_multi_group_offset_fetch(one_broker: BrokerProcess) -> None:
    topic = f"multi-{uuid.uuid4().hex[:6]}"
    create_topic(one_broker.bootstrap, topic, 1)
    groups = [f"g-{uuid.uuid4().hex[:6]}" for _ in range(3)]

    async def scenario() -> None:
        conn = await coordinator(one_broker, groups[0])
        found = await conn.call(FIND, 4, key_type=0, coordinator_keys=tuple(groups))
        assert [c.key for c in found.coordinators] == groups
        assert all(c.error_code == ErrorCode.none and c.port == one_broker.kafka_port for c in found.coordinators)
        txn = await conn.call(FIND, 4, key_type=1, coordinator_keys=("my-txn",))
        assert txn.coordinators[0].error_code == ErrorCode.none  # the transaction coordinator (tests/txn)
        assert txn.coordinators[0].port == one_broker.kafka_port
        for i, g in enumerate(groups[:2]):  # simple commits: no membership, generation -1
            assert await commit(conn, g, "", -1, topic, 0, 10 * (i + 1)) == ErrorCode.none
        req_group = nested(FETCH_OFFSETS, 8, "OffsetFetchRequestGroup")
        req_topic = nested(FETCH_OFFSETS, 8, "OffsetFetchRequestTopics")
        fetched = await conn.call(FETCH_OFFSETS, 8, require_stable=False, groups=tuple(
            req_group(group_id=g, topics=(req_topic(name=topic, partition_indexes=(i32(0),)),)) for g in groups))
        got = {g.group_id: g.topics[0].partitions[0].committed_offset for g in fetched.groups}
        assert got == {groups[0]: 10, groups[1]: 20, groups[2]: -1}
        everything = await conn.call(FETCH_OFFSETS, 8, require_stable=False,
                                     groups=(req_group(group_id=groups[1], topics=None),))
        assert [(t.name, t.partitions[0].committed_offset) for t in everything.groups[0].topics] == [(topic, 20)]
        await conn.close()

    asyncio.run(asyncio.wait_for(scenario(), 60))


CG_HEARTBEAT, CG_DESCRIBE, LIST_GROUPS = 68, 69, 16


async def cg_heartbeat(conn: Raw, group: str, member_id: str, epoch: int, **fields: Any) -> Any:
    import datetime

    fields.setdefault("rebalance_timeout", datetime.timedelta(milliseconds=30000 if epoch == 0 else -1))
    fields.setdefault("topic_partitions", () if epoch == 0 else None)
    return await conn.call(CG_HEARTBEAT, 1, group_id=group, member_id=member_id, member_epoch=i32(epoch), **fields)


def test_consumer_protocol_bad_heartbeats_and_epoch_checked_commits(one_broker: BrokerProcess) -> None:
    """KIP-848 over raw requests: Kafka's error for each bad heartbeat, and member epochs on OffsetCommit."""
    topic, group = f"cg-{uuid.uuid4().hex[:6]}", f"g-{uuid.uuid4().hex[:6]}"
    create_topic(one_broker.bootstrap, topic, 3)

    async def scenario() -> None:
        conn = await coordinator(one_broker, group)
        me = str(uuid.uuid4())
        assert (await cg_heartbeat(conn, group, "", 0, subscribed_topic_names=(topic,))).error_code \
            == ErrorCode.invalid_request, "v1: the client makes its member id"
        assert (await cg_heartbeat(conn, group, me, 0)).error_code == ErrorCode.invalid_request, "no subscription"
        assert (await cg_heartbeat(conn, group, me, 0, subscribed_topic_names=(topic,),
                                   server_assignor="sticky")).error_code == ErrorCode.unsupported_assignor
        assert (await cg_heartbeat(conn, group, me, 0, subscribed_topic_regex="(")).error_code \
            == ErrorCode.invalid_regular_expression
        joined = await cg_heartbeat(conn, group, me, 0, subscribed_topic_names=(topic,))
        assert joined.error_code == ErrorCode.none and joined.member_epoch == 1
        assert joined.heartbeat_interval.total_seconds() > 0
        assert sorted(joined.assignment.topic_partitions[0].partitions) == [0, 1, 2]
        assert (await cg_heartbeat(conn, group, me, 5)).error_code == ErrorCode.fenced_member_epoch
        assert (await cg_heartbeat(conn, group, "stranger", 1)).error_code == ErrorCode.unknown_member_id
        assert await commit(conn, group, me, 1, topic, 0, 7) == ErrorCode.none
        assert await commit(conn, group, me, 0, topic, 0, 8) == ErrorCode.stale_member_epoch
        assert await commit(conn, group, me, 2, topic, 0, 8) == ErrorCode.fenced_member_epoch
        assert await commit(conn, group, "", -1, topic, 0, 8) == ErrorCode.unknown_member_id, "group not empty"
        # A classic member is refused while the consumer-protocol member is in the group.
        refused = await join(conn, group, meta=subscription(topic))
        assert refused.error_code == ErrorCode.inconsistent_group_protocol
        listed = await conn.call(LIST_GROUPS, 5, states_filter=(), types_filter=("consumer",))
        assert [(g.group_id, g.group_type, g.protocol_type) for g in listed.groups if g.group_id == group] \
            == [(group, "consumer", "consumer")]
        classic_only = await conn.call(LIST_GROUPS, 5, states_filter=(), types_filter=("classic",))
        assert group not in {g.group_id for g in classic_only.groups}
        described = await conn.call(CG_DESCRIBE, 0, group_ids=(group, "no-such-group"),
                                    include_authorized_operations=False)
        ours, missing = described.groups
        assert ours.error_code == ErrorCode.none and ours.group_state == "Stable" and ours.assignor_name == "uniform"
        assert [m.member_id for m in ours.members] == [me] and ours.members[0].member_epoch == 1
        assert missing.error_code == ErrorCode.group_id_not_found
        left = await cg_heartbeat(conn, group, me, -1)
        assert left.error_code == ErrorCode.none and left.member_epoch == -1
        # Empty now: a classic member may take the group over, offsets kept.
        first = await join(conn, group, meta=subscription(topic))
        assert first.error_code == ErrorCode.member_id_required
        await conn.close()

    asyncio.run(asyncio.wait_for(scenario(), 60))
