"""The broker's core through encoded requests: the real Dispatcher and handlers, memory store, no sockets.

Each test sends request bytes exactly as a client would and decodes the
response bytes as a client would, so these cover the codec, the dispatch
table, the handlers, the log service and the WAL together, in milliseconds.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from kio.records.readers import read_batch
from kio.schema.errors import ErrorCode

from floe_broker.app import Broker
from floe_broker.dispatch import Dispatcher
from floe_broker.errors import FrameError
from tests.infra.batches import record_batch
from tests.inprocess.wire import call, decode_response, encode_request, request

CREATE_TOPICS, METADATA, PRODUCE, FETCH, LIST_OFFSETS, INIT_PRODUCER_ID, API_VERSIONS = 19, 3, 0, 1, 2, 22, 18
LATEST, EARLIEST = -1, -2


async def create_topic(d: Dispatcher, name: str, partitions: int = 1) -> None:
    resp = await call(d, CREATE_TOPICS, 7, request(
        CREATE_TOPICS, 7, timeout_ms=datetime.timedelta(seconds=5),
        topics=[{"name": name, "num_partitions": partitions, "replication_factor": 1}]))
    assert resp.topics[0].error_code == ErrorCode.none, resp


def produce_request(topic: str, partition: int, records: bytes, version: int = 9, acks: int = -1) -> object:
    return request(PRODUCE, version, acks=acks, timeout=datetime.timedelta(seconds=5), topic_data=[
        {"name": topic, "partition_data": [{"index": partition, "records": records}]}])


async def produce(d: Dispatcher, topic: str, partition: int, records: bytes) -> tuple[ErrorCode, int]:
    resp = await call(d, PRODUCE, 9, produce_request(topic, partition, records))
    p = resp.responses[0].partition_responses[0]
    return p.error_code, p.base_offset


async def fetch(d: Dispatcher, topic: str, partition: int, offset: int) -> object:
    resp = await call(d, FETCH, 12, request(
        FETCH, 12, replica_id=-1, max_wait=datetime.timedelta(milliseconds=10), min_bytes=1, max_bytes=1 << 20,
        isolation_level=0, topics=[{"topic": topic, "partitions": [
            {"partition": partition, "fetch_offset": offset, "partition_max_bytes": 1 << 20,
             "current_leader_epoch": -1, "log_start_offset": -1}]}]))
    return resp.responses[0].partitions[0]


async def list_offset(d: Dispatcher, topic: str, partition: int, timestamp: int) -> tuple[ErrorCode, int]:
    resp = await call(d, LIST_OFFSETS, 7, request(
        LIST_OFFSETS, 7, replica_id=-1, isolation_level=0, topics=[{"name": topic, "partitions": [
            {"partition_index": partition, "current_leader_epoch": -1, "timestamp": timestamp}]}]))
    p = resp.topics[0].partitions[0]
    return p.error_code, p.offset


async def until(send: Callable[[], Awaitable[Any]], done: Callable[[Any], bool]) -> Any:
    """Repeat a request until its answer satisfies ``done`` (as a client retries), for up to 10 s."""
    async with asyncio.timeout(10):
        while True:
            answer = await send()
            if done(answer):
                return answer
            await asyncio.sleep(0.01)


def values(records: bytes) -> list[bytes | None]:
    out = []
    pos = 0
    while pos < len(records):
        batch, size = read_batch(records, pos)
        pos += size
        out.extend(r.value for r in batch.records)
    return out


async def test_metadata_produce_fetch_round_trip(broker: Broker, dispatcher: Dispatcher) -> None:
    await create_topic(dispatcher, "orders", 2)
    meta = await call(dispatcher, METADATA, 12, request(METADATA, 12, topics=[{"name": "orders"}]))
    (topic,) = meta.topics
    assert topic.error_code == ErrorCode.none and topic.name == "orders"
    assert sorted(p.partition_index for p in topic.partitions) == [0, 1]
    assert {p.leader_id for p in topic.partitions} == {broker.node_id}
    assert [b.node_id for b in meta.brokers] == [broker.node_id]

    assert await produce(dispatcher, "orders", 1, record_batch(b"first")) == (ErrorCode.none, 0)
    assert await produce(dispatcher, "orders", 1, record_batch(b"second", count=2)) == (ErrorCode.none, 1)
    got = await fetch(dispatcher, "orders", 1, 0)
    assert got.error_code == ErrorCode.none and got.high_watermark == 3
    assert values(bytes(got.records)) == [b"first", b"second", b"second"]
    assert values(bytes((await fetch(dispatcher, "orders", 1, 1)).records)) == [b"second", b"second"]
    empty = await fetch(dispatcher, "orders", 0, 0)
    assert empty.error_code == ErrorCode.none and empty.high_watermark == 0 and not empty.records


async def test_list_offsets_earliest_and_latest(dispatcher: Dispatcher) -> None:
    await create_topic(dispatcher, "t")
    assert await list_offset(dispatcher, "t", 0, LATEST) == (ErrorCode.none, 0)
    for i in range(3):
        await produce(dispatcher, "t", 0, record_batch(bytes([i])))
    assert await list_offset(dispatcher, "t", 0, EARLIEST) == (ErrorCode.none, 0)
    assert await list_offset(dispatcher, "t", 0, LATEST) == (ErrorCode.none, 3)
    assert (await list_offset(dispatcher, "t", 7, LATEST))[0] == ErrorCode.unknown_topic_or_partition


async def test_idempotent_retry_is_answered_with_the_original_offset(dispatcher: Dispatcher) -> None:
    await create_topic(dispatcher, "idem")
    await produce(dispatcher, "idem", 0, record_batch(b"before"))
    init = await call(dispatcher, INIT_PRODUCER_ID, 4, request(
        INIT_PRODUCER_ID, 4, transactional_id=None, transaction_timeout_ms=datetime.timedelta(seconds=60),
        producer_id=-1, producer_epoch=-1))
    assert init.error_code == ErrorCode.none and init.producer_id >= 0
    batch = record_batch(b"once", count=2, producer_id=init.producer_id, producer_epoch=init.producer_epoch,
                         base_sequence=0)
    assert await produce(dispatcher, "idem", 0, batch) == (ErrorCode.none, 1)
    assert await produce(dispatcher, "idem", 0, batch) == (ErrorCode.none, 1), "a retry gets its original offset"
    assert await list_offset(dispatcher, "idem", 0, LATEST) == (ErrorCode.none, 3), "and is not stored twice"
    gap = record_batch(b"gap", producer_id=init.producer_id, producer_epoch=init.producer_epoch, base_sequence=5)
    assert (await produce(dispatcher, "idem", 0, gap))[0] == ErrorCode.out_of_order_sequence_number


async def test_produce_to_an_unknown_partition_or_topic(dispatcher: Dispatcher) -> None:
    await create_topic(dispatcher, "one", 1)
    assert (await produce(dispatcher, "one", 1, record_batch()))[0] == ErrorCode.unknown_topic_or_partition
    assert (await produce(dispatcher, "nope", 0, record_batch()))[0] == ErrorCode.unknown_topic_or_partition
    assert await produce(dispatcher, "one", 0, record_batch()) == (ErrorCode.none, 0)


async def test_corrupt_batch_is_rejected_and_not_stored(dispatcher: Dispatcher) -> None:
    await create_topic(dispatcher, "crc")
    bad = bytearray(record_batch())
    bad[-1] ^= 0xFF
    assert (await produce(dispatcher, "crc", 0, bytes(bad)))[0] == ErrorCode.corrupt_message
    assert await list_offset(dispatcher, "crc", 0, LATEST) == (ErrorCode.none, 0)


async def test_acks_zero_gets_no_response_but_is_stored(dispatcher: Dispatcher) -> None:
    await create_topic(dispatcher, "fire")
    frame = encode_request(PRODUCE, 9, produce_request("fire", 0, record_batch(), acks=0))
    assert await dispatcher(frame, "127.0.0.1:1") is None
    assert (await fetch(dispatcher, "fire", 0, 0)).high_watermark == 1


async def test_unsupported_versions(dispatcher: Dispatcher) -> None:
    frame = encode_request(API_VERSIONS, 3, request(API_VERSIONS, 3, client_software_name="t",
                                                   client_software_version="1"), correlation_id=9)
    too_new = frame[:2] + (99).to_bytes(2, "big") + frame[4:]
    parts = await dispatcher(too_new, "127.0.0.1:1")
    assert parts is not None
    corr, body = decode_response(API_VERSIONS, 0, parts)
    assert corr == 9 and body.error_code == ErrorCode.unsupported_version
    assert any(k.api_key == PRODUCE for k in body.api_keys), "the v0 answer lists what we support"
    produce_v99 = encode_request(PRODUCE, 9, produce_request("t", 0, record_batch()))
    produce_v99 = produce_v99[:2] + (99).to_bytes(2, "big") + produce_v99[4:]
    with pytest.raises(FrameError):  # the connection closes: there is no response format to answer in
        await dispatcher(produce_v99, "127.0.0.1:1")


async def test_group_join_sync_commit_fetch_through_the_offsets_journal(dispatcher: Dispatcher) -> None:
    """A one-member group: its commit goes through the group journal and the log service, like a produce."""
    await create_topic(dispatcher, "events")
    join = request(11, 5, group_id="g", session_timeout=datetime.timedelta(seconds=10),
                   rebalance_timeout=datetime.timedelta(seconds=10), member_id="", protocol_type="consumer",
                   protocols=[{"name": "range", "metadata": b""}])
    found = await call(dispatcher, 10, 4, request(10, 4, key_type=0, coordinator_keys=["g"]))
    assert found.coordinators[0].error_code == ErrorCode.none  # creates __consumer_offsets
    first = await until(lambda: call(dispatcher, 11, 5, join),
                        lambda r: r.error_code not in (ErrorCode.not_coordinator,
                                                       ErrorCode.coordinator_load_in_progress))
    assert first.error_code == ErrorCode.member_id_required and first.member_id
    joined = await call(dispatcher, 11, 5, dataclasses.replace(join, member_id=first.member_id))
    assert joined.error_code == ErrorCode.none and joined.leader == first.member_id
    synced = await call(dispatcher, 14, 3, request(
        14, 3, group_id="g", generation_id=joined.generation_id, member_id=first.member_id,
        assignments=[{"member_id": first.member_id, "assignment": b"\x00\x01"}]))
    assert synced.error_code == ErrorCode.none and synced.assignment == b"\x00\x01"
    committed = await call(dispatcher, 8, 8, request(
        8, 8, group_id="g", generation_id_or_member_epoch=joined.generation_id, member_id=first.member_id,
        topics=[{"name": "events", "partitions": [{"partition_index": 0, "committed_offset": 42,
                                                   "committed_leader_epoch": -1}]}]))
    assert committed.topics[0].partitions[0].error_code == ErrorCode.none
    fetched = await call(dispatcher, 9, 8, request(9, 8, groups=[
        {"group_id": "g", "topics": [{"name": "events", "partition_indexes": [0]}]}]))
    (group,) = fetched.groups
    assert group.error_code == ErrorCode.none
    assert [(p.partition_index, p.committed_offset) for p in group.topics[0].partitions] == [(0, 42)]
