"""Transaction APIs through encoded requests (the real Dispatcher, memory store, no sockets):
the hanging-transaction guard, fencing codes, read_committed fetch and ListOffsets."""

from __future__ import annotations

import dataclasses
import datetime

from kio.schema.errors import ErrorCode

from floe_api.internal import Acl, CreateAcls
from floe_broker.dispatch import Dispatcher
from floe_broker.security.acls import Operation, PatternType, Permission, ResourceType
from floe_broker.security.principal import PRINCIPAL, Principal
from tests.inprocess.harness import CONFIG, started_broker
from tests.inprocess.test_core import create_topic
from tests.inprocess.wire import call, request
from tests.txn.test_partition_state import txn_batch

PRODUCE, FETCH, LIST_OFFSETS, FIND, INIT, ADD_PARTITIONS, END_TXN = 0, 1, 2, 10, 22, 24, 26
CONFIG_TXN = dataclasses.replace(CONFIG, transaction_state_partitions=1)


async def init(d: Dispatcher, txn_id: str) -> tuple[int, int]:
    found = await call(d, FIND, 4, request(FIND, 4, key_type=1, coordinator_keys=[txn_id]))
    assert found.coordinators[0].error_code == ErrorCode.none, found
    r = await call(d, INIT, 4, request(INIT, 4, transactional_id=txn_id,
                                       transaction_timeout=datetime.timedelta(seconds=60),
                                       producer_id=-1, producer_epoch=-1))
    assert r.error_code == ErrorCode.none, r
    return int(r.producer_id), int(r.producer_epoch)


async def add(d: Dispatcher, txn_id: str, pid: int, epoch: int, topic: str) -> ErrorCode:
    r = await call(d, ADD_PARTITIONS, 3, request(
        ADD_PARTITIONS, 3, v3_and_below_transactional_id=txn_id, v3_and_below_producer_id=pid,
        v3_and_below_producer_epoch=epoch, v3_and_below_topics=[{"name": topic, "partitions": [0]}]))
    return ErrorCode(r.results_by_topic_v3_and_below[0].results_by_partition[0].partition_error_code)


async def produce(d: Dispatcher, txn_id: str | None, topic: str, records: bytes) -> ErrorCode:
    r = await call(d, PRODUCE, 9, request(PRODUCE, 9, transactional_id=txn_id, acks=-1,
                                          timeout=datetime.timedelta(seconds=5), topic_data=[
        {"name": topic, "partition_data": [{"index": 0, "records": records}]}]))
    return ErrorCode(r.responses[0].partition_responses[0].error_code)


async def end(d: Dispatcher, txn_id: str, pid: int, epoch: int, commit: bool) -> ErrorCode:
    r = await call(d, END_TXN, 3, request(END_TXN, 3, transactional_id=txn_id, producer_id=pid,
                                          producer_epoch=epoch, committed=commit))
    return ErrorCode(r.error_code)


async def fetch(d: Dispatcher, topic: str, isolation: int) -> object:
    r = await call(d, FETCH, 12, request(
        FETCH, 12, replica_id=-1, max_wait=datetime.timedelta(milliseconds=10), min_bytes=1, max_bytes=1 << 20,
        isolation_level=isolation, topics=[{"topic": topic, "partitions": [
            {"partition": 0, "fetch_offset": 0, "partition_max_bytes": 1 << 20,
             "current_leader_epoch": -1, "log_start_offset": -1}]}]))
    return r.responses[0].partitions[0]


async def latest(d: Dispatcher, topic: str, isolation: int) -> int:
    r = await call(d, LIST_OFFSETS, 7, request(
        LIST_OFFSETS, 7, replica_id=-1, isolation_level=isolation, topics=[{"name": topic, "partitions": [
            {"partition_index": 0, "current_leader_epoch": -1, "timestamp": -1}]}]))
    return int(r.topics[0].partitions[0].offset)


async def test_a_batch_outside_an_open_transaction_is_refused() -> None:
    async with started_broker(CONFIG_TXN) as broker:
        d = Dispatcher(broker.serving)
        await create_topic(d, "g")
        pid, epoch = await init(d, "tx-guard")
        # never added: the hanging-transaction guard refuses it
        assert await produce(d, "tx-guard", "g", txn_batch(pid, epoch, 0)) == ErrorCode.invalid_txn_state
        assert await produce(d, None, "g", txn_batch(pid, epoch, 0)) == ErrorCode.invalid_txn_state
        assert await add(d, "tx-guard", pid, epoch, "g") == ErrorCode.none
        assert await produce(d, "tx-guard", "g", txn_batch(pid, epoch, 0)) == ErrorCode.none
        assert await end(d, "tx-guard", pid, epoch, False) == ErrorCode.none
        # the transaction is over: a late batch of it cannot open a new one
        assert await produce(d, "tx-guard", "g", txn_batch(pid, epoch, 1)) == ErrorCode.invalid_txn_state


async def test_read_committed_fetch_and_list_offsets_stop_at_the_open_transaction() -> None:
    async with started_broker(CONFIG_TXN) as broker:
        d = Dispatcher(broker.serving)
        await create_topic(d, "r")
        pid, epoch = await init(d, "tx-read")
        assert await add(d, "tx-read", pid, epoch, "r") == ErrorCode.none
        assert await produce(d, "tx-read", "r", txn_batch(pid, epoch, 0, count=3)) == ErrorCode.none
        committed = await fetch(d, "r", 1)
        assert committed.records in (b"", None) and committed.last_stable_offset == 0  # type: ignore[attr-defined]
        assert committed.high_watermark == 3  # type: ignore[attr-defined]
        assert await latest(d, "r", 1) == 0 and await latest(d, "r", 0) == 3
        uncommitted = await fetch(d, "r", 0)
        assert uncommitted.records  # type: ignore[attr-defined]
        assert await end(d, "tx-read", pid, epoch, False) == ErrorCode.none
        after = await fetch(d, "r", 1)
        assert after.last_stable_offset == after.high_watermark == 4  # type: ignore[attr-defined]
        assert [(a.producer_id, a.first_offset) for a in after.aborted_transactions] == [(pid, 0)]  # type: ignore[attr-defined]


async def test_a_new_incarnation_fences_the_old_one() -> None:
    async with started_broker(CONFIG_TXN) as broker:
        d = Dispatcher(broker.serving)
        await create_topic(d, "x")
        pid, epoch = await init(d, "tx-x")
        assert await add(d, "tx-x", pid, epoch, "x") == ErrorCode.none
        assert await produce(d, "tx-x", "x", txn_batch(pid, epoch, 0)) == ErrorCode.none
        pid2, epoch2 = await init(d, "tx-x")
        assert pid2 == pid and epoch2 > epoch
        assert await end(d, "tx-x", pid, epoch, True) == ErrorCode.producer_fenced
        assert await add(d, "tx-x", pid, epoch, "x") == ErrorCode.producer_fenced
        assert await produce(d, "tx-x", "x", txn_batch(pid, epoch, 1)) == ErrorCode.invalid_producer_epoch
        after = await fetch(d, "x", 1)
        assert [a.producer_id for a in after.aborted_transactions] == [pid]  # type: ignore[attr-defined]


async def test_transactional_ids_need_kafkas_acls() -> None:
    """WRITE on the transactional id to use it, DESCRIBE to find or list it (Kafka's rules)."""
    secured = dataclasses.replace(CONFIG_TXN, authorizer="on", super_users="User:admin")
    async with started_broker(secured) as broker:
        d = Dispatcher(broker.serving)
        admin = PRINCIPAL.set(Principal.parse("User:admin"))
        await create_topic(d, "a")
        await broker.serving.ensure_txn_topic()
        PRINCIPAL.reset(admin)

        def acl(rt: ResourceType, name: str, op: Operation) -> Acl:
            return Acl(resource_type=int(rt), pattern_type=int(PatternType.LITERAL), resource_name=name,
                       principal="User:alice", host="*", operation=int(op), permission=int(Permission.ALLOW))

        await broker.serving.apply_metadata(CreateAcls(acls=[acl(ResourceType.TOPIC, "a", Operation.WRITE)]))
        alice = PRINCIPAL.set(Principal.parse("User:alice"))
        try:
            found = await call(d, FIND, 4, request(FIND, 4, key_type=1, coordinator_keys=["tx-acl"]))
            assert found.coordinators[0].error_code == ErrorCode.transactional_id_authorization_failed
            r = await call(d, INIT, 4, request(INIT, 4, transactional_id="tx-acl",
                                               transaction_timeout=datetime.timedelta(seconds=60),
                                               producer_id=-1, producer_epoch=-1))
            assert r.error_code == ErrorCode.transactional_id_authorization_failed
            await broker.serving.apply_metadata(CreateAcls(acls=[acl(ResourceType.TRANSACTIONAL_ID, "tx-acl",
                                                                     Operation.WRITE)]))
            pid, epoch = await init(d, "tx-acl")  # WRITE implies DESCRIBE: found and initialised
            assert await add(d, "tx-acl", pid, epoch, "a") == ErrorCode.none
        finally:
            PRINCIPAL.reset(alice)
