"""Transaction APIs: translate Kafka's messages to the transaction coordinator and back.

AddPartitionsToTxn, AddOffsetsToTxn and EndTxn go to the coordinator of the
transactional id (the leader of its ``__transaction_state`` partition), which
answers once the new state is durable; TxnOffsetCommit goes to the group's
coordinator, which keeps the offsets pending until the transaction's end.
DescribeTransactions and ListTransactions read the coordinator's state,
DescribeProducers a partition leader's producer state (Kafka's tooling:
``kafka-transactions.sh``). Authorization is Kafka's: WRITE on the
transactional id to change it, DESCRIBE to see it.
"""

from __future__ import annotations

import datetime
import time
from typing import Any

from kio.schema.errors import ErrorCode

from ..errors import JournalClosed, TopicError
from ..groups.state import OffsetEntry
from ..ordering import CURRENT_TURN
from ..protocol.build import EPOCH, NO_TIME, mk, nested, response_class
from ..security.session import current_listener
from ..txn.coordinator import TXN_TOPIC, partition_for
from ..txn.state import TxnMeta, TxnState
from . import authz
from .authz import DESCRIBE, GROUP, READ, TOPIC, TXN, WRITE
from .context import BrokerContext

ADD_PARTITIONS, ADD_OFFSETS, END_TXN, TXN_OFFSET_COMMIT = 24, 25, 26, 28
DESCRIBE_PRODUCERS, DESCRIBE_TRANSACTIONS, LIST_TRANSACTIONS = 61, 65, 66


def _release_turn() -> None:
    """Coordinator calls may wait for markers: never hold up later requests on the connection."""
    turn = CURRENT_TURN.get()
    if turn is not None:
        turn.release()


async def _coordinating(ctx: BrokerContext, transactional_id: str) -> tuple[Any, ErrorCode]:
    if not authz.allowed(ctx, WRITE, TXN, transactional_id):
        return None, ErrorCode.transactional_id_authorization_failed
    try:
        shard = await ctx.txn.shard_for(transactional_id)
    except JournalClosed:
        shard = None
    return shard, ErrorCode.none if shard is not None else ErrorCode.not_coordinator


async def add_partitions_to_txn(ctx: BrokerContext, version: int, req: Any) -> Any:
    """v0-v3, the client's form: one transactional id, its producer and the partitions to add."""
    _release_turn()
    cls = response_class(ADD_PARTITIONS, version)
    topic_cls = nested(cls, "AddPartitionsToTxnTopicResult")
    part_cls = nested(cls, "AddPartitionsToTxnPartitionResult")
    txn_id = req.v3_and_below_transactional_id
    wanted = [(t.name, int(p)) for t in req.v3_and_below_topics for p in t.partitions]
    state = ctx.state()
    codes: dict[tuple[str, int], ErrorCode] = {}
    shard, code = await _coordinating(ctx, txn_id)
    if shard is None:
        codes = {tp: code for tp in wanted}
    else:
        for topic, index in wanted:
            info = state.topics.get(topic)
            if not authz.allowed(ctx, WRITE, TOPIC, topic):
                codes[(topic, index)] = ErrorCode.topic_authorization_failed
            elif info is None or not 0 <= index < len(info.partitions) or info.internal:
                codes[(topic, index)] = ErrorCode.unknown_topic_or_partition
        if codes:  # Kafka adds none of them when any is refused
            codes.update({tp: ErrorCode.operation_not_attempted for tp in wanted if tp not in codes})
        else:
            try:
                code = await shard.add_partitions(txn_id, req.v3_and_below_producer_id,
                                                  req.v3_and_below_producer_epoch, set(wanted))
            except JournalClosed:
                code = ErrorCode.not_coordinator
            codes = {tp: code for tp in wanted}
    by_topic: dict[str, list[Any]] = {}
    for (topic, index), c in codes.items():
        by_topic.setdefault(topic, []).append(mk(part_cls, partition_index=index, partition_error_code=c))
    return mk(cls, results_by_topic_v3_and_below=tuple(
        mk(topic_cls, name=t, results_by_partition=tuple(rows)) for t, rows in by_topic.items()))


async def add_offsets_to_txn(ctx: BrokerContext, version: int, req: Any) -> Any:
    _release_turn()
    cls = response_class(ADD_OFFSETS, version)
    shard, code = await _coordinating(ctx, req.transactional_id)
    if shard is not None:
        if not authz.allowed(ctx, READ, GROUP, req.group_id):
            code = ErrorCode.group_authorization_failed
        else:
            try:
                code = await shard.add_group(req.transactional_id, req.producer_id, req.producer_epoch,
                                             req.group_id)
            except JournalClosed:
                code = ErrorCode.not_coordinator
    return mk(cls, error_code=code)


async def end_txn(ctx: BrokerContext, version: int, req: Any) -> Any:
    _release_turn()
    cls = response_class(END_TXN, version)
    shard, code = await _coordinating(ctx, req.transactional_id)
    if shard is not None:
        try:
            code = await shard.end(req.transactional_id, req.producer_id, req.producer_epoch, bool(req.committed))
        except JournalClosed:
            code = ErrorCode.not_coordinator
    return mk(cls, error_code=code, producer_id=req.producer_id, producer_epoch=req.producer_epoch)


async def txn_offset_commit(ctx: BrokerContext, version: int, req: Any) -> Any:
    _release_turn()
    cls = response_class(TXN_OFFSET_COMMIT, version)
    topic_cls = nested(cls, "TxnOffsetCommitResponseTopic")
    part_cls = nested(cls, "TxnOffsetCommitResponsePartition")
    code = ErrorCode.none
    if not authz.allowed(ctx, WRITE, TXN, req.transactional_id):
        code = ErrorCode.transactional_id_authorization_failed
    elif not authz.allowed(ctx, READ, GROUP, req.group_id):
        code = ErrorCode.group_authorization_failed
    codes: dict[tuple[str, int], ErrorCode] = {}
    offsets: list[tuple[str, int, OffsetEntry]] = []
    now_ms = int(time.time() * 1000)
    for topic in req.topics:
        allowed = authz.allowed(ctx, READ, TOPIC, topic.name)
        for p in topic.partitions:
            if code != ErrorCode.none:
                codes[(topic.name, p.partition_index)] = code
            elif not allowed:
                codes[(topic.name, p.partition_index)] = ErrorCode.topic_authorization_failed
            else:
                offsets.append((topic.name, p.partition_index,
                                OffsetEntry(p.committed_offset, getattr(p, "committed_leader_epoch", -1),
                                            p.committed_metadata, now_ms)))
    if offsets:
        shard = await ctx.groups.shard_for(req.group_id) if req.group_id else None
        if shard is None:
            result = ErrorCode.not_coordinator if req.group_id else ErrorCode.invalid_group_id
        else:
            try:
                result = await shard.txn_commit(
                    req.group_id, req.producer_id, member_id=getattr(req, "member_id", ""),
                    instance_id=getattr(req, "group_instance_id", None),
                    generation=getattr(req, "generation_id", -1), offsets=offsets)
            except JournalClosed:
                result = ErrorCode.not_coordinator
        codes.update({(t, p): result for t, p, _ in offsets})
    by_topic: dict[str, list[Any]] = {}
    for (topic_name, index), c in codes.items():
        by_topic.setdefault(topic_name, []).append(mk(part_cls, partition_index=index, error_code=c))
    return mk(cls, topics=tuple(mk(topic_cls, name=t, partitions=tuple(rows)) for t, rows in by_topic.items()))


async def locate_coordinator(ctx: BrokerContext, key: str) -> tuple[ErrorCode, str | None, int, str, int]:
    """FindCoordinator key type 1: the leader of the id's ``__transaction_state`` partition."""
    if not authz.allowed(ctx, DESCRIBE, TXN, key):
        return ErrorCode.transactional_id_authorization_failed, "not authorized to describe the id", -1, "", -1
    if not key:
        return ErrorCode.invalid_request, "empty transactional id", -1, "", -1
    try:
        await ctx.ensure_txn_topic()
    except TopicError as exc:
        return ErrorCode.coordinator_not_available, exc.message, -1, "", -1
    info = ctx.state().topics.get(TXN_TOPIC)
    if info is None:
        return ErrorCode.coordinator_not_available, None, -1, "", -1
    leader = info.partitions[partition_for(key, len(info.partitions))].leader
    broker = ctx.state().brokers.get(leader)
    address = broker.endpoint(current_listener()) if broker is not None else None
    if broker is None or broker.draining or address is None:
        return ErrorCode.coordinator_not_available, None, -1, "", -1
    return ErrorCode.none, None, leader, address[0], address[1]


# ---- tooling --------------------------------------------------------------------------------

def _start_time(meta: TxnMeta) -> datetime.datetime:
    if meta.start_ms < 0:
        return NO_TIME
    return datetime.datetime.fromtimestamp(meta.start_ms / 1000, datetime.UTC).replace(
        microsecond=(meta.start_ms % 1000) * 1000)


async def describe_transactions(ctx: BrokerContext, version: int, req: Any) -> Any:
    cls = response_class(DESCRIBE_TRANSACTIONS, version)
    state_cls = nested(cls, "TransactionState")
    topic_cls = nested(cls, "TopicData")
    out = []
    for txn_id in req.transactional_ids:
        if not authz.allowed(ctx, DESCRIBE, TXN, txn_id):
            out.append(mk(state_cls, error_code=ErrorCode.transactional_id_authorization_failed,
                          transactional_id=txn_id, transaction_state="", transaction_start_time=EPOCH,
                          producer_id=-1, producer_epoch=-1))
            continue
        shard = await ctx.txn.shard_for(txn_id)
        meta = shard.txns.get(txn_id) if shard is not None else None
        if meta is None:
            code = ErrorCode.not_coordinator if shard is None else ErrorCode.transactional_id_not_found
            out.append(mk(state_cls, error_code=code, transactional_id=txn_id, transaction_state="",
                          transaction_start_time=EPOCH, producer_id=-1, producer_epoch=-1))
            continue
        topics: dict[str, list[int]] = {}
        for t, p in sorted(meta.partitions):
            if authz.allowed(ctx, DESCRIBE, TOPIC, t):
                topics.setdefault(t, []).append(p)
        out.append(mk(state_cls, error_code=ErrorCode.none, transactional_id=txn_id,
                      transaction_state=meta.state.value,
                      transaction_timeout=datetime.timedelta(milliseconds=meta.timeout_ms),
                      transaction_start_time=_start_time(meta), producer_id=meta.producer_id,
                      producer_epoch=meta.producer_epoch,
                      topics=tuple(mk(topic_cls, topic=t, partitions=tuple(ps)) for t, ps in topics.items())))
    return mk(cls, transaction_states=tuple(out))


async def list_transactions(ctx: BrokerContext, version: int, req: Any) -> Any:
    cls = response_class(LIST_TRANSACTIONS, version)
    state_cls = nested(cls, "TransactionState")
    known = {s.value for s in TxnState}
    states = set(req.state_filters)
    pids = set(req.producer_id_filters)
    min_duration = getattr(req, "duration_filter", -1)
    now_ms = int(time.time() * 1000)
    rows = []
    for meta in ctx.txn.all_txns():
        if states and meta.state.value not in states:
            continue
        if pids and meta.producer_id not in pids:
            continue
        if min_duration >= 0 and (meta.start_ms < 0 or now_ms - meta.start_ms <= min_duration):
            continue
        if not authz.allowed(ctx, DESCRIBE, TXN, meta.transactional_id):
            continue
        rows.append(mk(state_cls, transactional_id=meta.transactional_id, producer_id=meta.producer_id,
                       transaction_state=meta.state.value))
    return mk(cls, error_code=ErrorCode.none, unknown_state_filters=tuple(sorted(states - known)),
              transaction_states=tuple(rows))


async def describe_producers(ctx: BrokerContext, version: int, req: Any) -> Any:
    cls = response_class(DESCRIBE_PRODUCERS, version)
    topic_cls = nested(cls, "TopicResponse")
    part_cls = nested(cls, "PartitionResponse")
    producer_cls = nested(cls, "ProducerState")
    state = ctx.state()
    topics_out = []
    for topic in req.topics:
        parts_out = []
        allowed = authz.allowed(ctx, READ, TOPIC, topic.name)
        info = state.topics.get(topic.name)
        for index in topic.partition_indexes:
            if not allowed:
                parts_out.append(mk(part_cls, partition_index=index, error_code=ErrorCode.topic_authorization_failed))
                continue
            if info is None or not 0 <= index < len(info.partitions):
                parts_out.append(mk(part_cls, partition_index=index, error_code=ErrorCode.unknown_topic_or_partition))
                continue
            part = await ctx.leader_partition(topic.name, index)
            if part is None:
                parts_out.append(mk(part_cls, partition_index=index, error_code=ErrorCode.not_leader_or_follower))
                continue
            active = tuple(
                mk(producer_cls, producer_id=pid, producer_epoch=s.epoch, last_sequence=s.last_seq,
                   last_timestamp=-1, coordinator_epoch=-1, current_txn_start_offset=part.txn_open.get(pid, -1))
                for pid, s in sorted(part.producers.items()))
            parts_out.append(mk(part_cls, partition_index=index, error_code=ErrorCode.none, active_producers=active))
        topics_out.append(mk(topic_cls, name=topic.name, partitions=tuple(parts_out)))
    return mk(cls, topics=tuple(topics_out))
