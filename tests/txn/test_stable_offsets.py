"""OffsetFetch with ``require_stable`` (KIP-447) while a transaction holds offsets of the group.

Kafka Streams under exactly_once_v2 fetches its committed offsets with ``require_stable``: a
partition whose offsets an open transaction has committed answers UNSTABLE_OFFSET_COMMIT, so the
new owner of a task retries rather than start from an offset the transaction may still replace
(it would process those records twice if the transaction then commits). Encoded requests through
the real Dispatcher, on v7 (one group) and v8 (groups in a list).
"""

from __future__ import annotations

from typing import Any

from kio.schema.errors import ErrorCode

from floe_broker.dispatch import Dispatcher
from tests.inprocess.harness import started_broker
from tests.inprocess.test_core import create_topic
from tests.inprocess.wire import call, request
from tests.txn.test_wire import CONFIG_TXN, end, init

ADD_OFFSETS, TXN_OFFSET_COMMIT, OFFSET_FETCH, FIND = 25, 28, 9, 10


async def commit_in_txn(d: Dispatcher, txn_id: str, pid: int, epoch: int, group: str, topic: str,
                        offset: int) -> ErrorCode:
    found = await call(d, FIND, 4, request(FIND, 4, key_type=0, coordinator_keys=[group]))
    assert found.coordinators[0].error_code == ErrorCode.none, found
    added = await call(d, ADD_OFFSETS, 3, request(ADD_OFFSETS, 3, transactional_id=txn_id, producer_id=pid,
                                                   producer_epoch=epoch, group_id=group))
    assert added.error_code == ErrorCode.none, added
    r = await call(d, TXN_OFFSET_COMMIT, 3, request(
        TXN_OFFSET_COMMIT, 3, transactional_id=txn_id, group_id=group, producer_id=pid, producer_epoch=epoch,
        generation_id=-1, member_id="", group_instance_id=None, topics=[{"name": topic, "partitions": [
            {"partition_index": 0, "committed_offset": offset, "committed_leader_epoch": -1,
             "committed_metadata": ""}]}]))
    return ErrorCode(r.topics[0].partitions[0].error_code)


async def fetch_offset(d: Dispatcher, version: int, group: str, topic: str, stable: bool) -> tuple[ErrorCode, int]:
    wanted = [{"name": topic, "partition_indexes": [0]}]
    if version >= 8:
        r: Any = await call(d, OFFSET_FETCH, version, request(
            OFFSET_FETCH, version, groups=[{"group_id": group, "topics": wanted}], require_stable=stable))
        part = r.groups[0].topics[0].partitions[0]
    else:
        r = await call(d, OFFSET_FETCH, version, request(OFFSET_FETCH, version, group_id=group, topics=wanted,
                                                         require_stable=stable))
        part = r.topics[0].partitions[0]
    return ErrorCode(part.error_code), int(part.committed_offset)


async def test_offsets_of_an_open_transaction_are_unstable_until_it_ends() -> None:
    async with started_broker(CONFIG_TXN) as broker:
        d = Dispatcher(broker.serving)
        await create_topic(d, "in")
        for version, commit in ((7, True), (8, False)):
            group, txn_id = f"g{version}", f"tx-stable-{version}"
            pid, epoch = await init(d, txn_id)
            assert await commit_in_txn(d, txn_id, pid, epoch, group, "in", 5) == ErrorCode.none
            assert await fetch_offset(d, version, group, "in", True) == (ErrorCode.unstable_offset_commit, -1)
            assert await fetch_offset(d, version, group, "in", False) == (ErrorCode.none, -1)
            assert await end(d, txn_id, pid, epoch, commit) == ErrorCode.none
            settled = (ErrorCode.none, 5 if commit else -1)
            assert await fetch_offset(d, version, group, "in", True) == settled
            assert await fetch_offset(d, version, group, "in", False) == settled
