"""Produce: validate batches, append them through the log service, answer once durable.

All partitions of one request are appended without an ``await`` in between,
so they join the same WAL flush; the response waits for that flush (I2, docs/architecture.md#i2-ack--durable).
acks=0 gets no response at all. If the flush is not durable within the
request's timeout the partitions get REQUEST_TIMED_OUT (retriable): the
producer is never told "ok" for data that is not in the bucket.

Backpressure: when the WAL buffer is full (``--max-pending-bytes``: the
object store is not keeping up) a produce waits for room at most half its
timeout (:data:`ROOM_SHARE`), then every partition of it is answered
NOT_ENOUGH_REPLICAS with a message naming the full buffer: nothing was
written, and librdkafka and the Java client retry it. The other half is left
for the flush the records would join.

The append itself (backpressure, idempotent sequences, durability) is the log
service's; this handler's work is Kafka's: resolving topics, validating
batches, metrics, and the response (with KIP-951 leader hints).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import structlog
from kio.schema.errors import ErrorCode

from .. import configs, errors, link, metrics
from ..errors import Fenced, NotLeader, SequenceError, TopicError, WriteBufferFull
from ..log import compaction
from ..log.partition import Partition
from ..log.service import Appended
from ..protocol import records
from ..protocol.build import has_field, mk, nested, response_class
from ..security.session import current_listener
from . import authz
from .authz import TOPIC, TXN, WRITE
from .context import BrokerContext

log = structlog.get_logger(__name__)
PRODUCE = 0
MOVE_WAIT_S = 1.0  # how long a produce to a partition moving away waits to name its new leader
MIN_DURABLE_WAIT_S = 1.0  # however long the wait for room took, the flush gets at least this long
ROOM_SHARE = 0.5  # the share of a produce's timeout it may wait for WAL buffer room
BUFFER_FULL_LOG_EVERY_S = 5.0  # one log line per this many seconds of refusals, with their count
_buffer_full_log = {"at": 0.0, "unlogged": 0}


async def produce(ctx: BrokerContext, version: int, req: Any) -> Any | None:
    cls = response_class(PRODUCE, version)
    topic_cls = nested(cls, "TopicProduceResponse")
    part_cls = nested(cls, "PartitionProduceResponse")

    # (topic_entry, name, [[index, error, base_offset, partition]])
    results: list[tuple[Any, str | None, list[list[Any]]]] = []
    pending: list[tuple[str, int, bytes, list[records.BatchInfo], list[Any]]] = []
    total = 0
    refusals: dict[tuple[str | None, int], str] = {}  # why a partition refused, for its error_message
    state = ctx.state()
    for topic in req.topic_data:
        name = getattr(topic, "name", None)
        if name is None:
            found = state.topic_by_id(str(topic.topic_id))
            name = found.name if found else None
        rows: list[list[Any]] = []
        results.append((topic, name, rows))
        if name is not None and not authz.allowed(ctx, WRITE, TOPIC, name):
            rows.extend([pd.index, ErrorCode.topic_authorization_failed, -1, None] for pd in topic.partition_data)
            continue
        if (name is not None and name not in state.topics and ctx.config.auto_create_topics
                and authz.may_create_topic(ctx, name)):
            try:
                await ctx.create_topic(name, ctx.config.default_partitions, {})
            except TopicError:
                pass
            state = ctx.state()
        info = state.topics.get(name) if name else None
        max_bytes = int(ctx.topic_config(name, "max.message.bytes") or ctx.config.max_message_bytes) if name else 0
        log_append_ms = configs.log_append_time(ctx.topic_config(name, "message.timestamp.type") if name else None)
        for pd in topic.partition_data:
            row: list[Any] = [pd.index, ErrorCode.none, -1, None]
            rows.append(row)
            if info is None or not 0 <= pd.index < len(info.partitions):
                row[1] = ErrorCode.unknown_topic_or_partition
                continue
            if info.internal:
                row[1] = ErrorCode.invalid_topic_exception  # __consumer_offsets is written by coordinators only
                continue
            if (refusal := link.produce_refusal(state, name, pd.index)) is not None:  # type: ignore[arg-type]
                row[1], refusals[(name, pd.index)] = ErrorCode.policy_violation, refusal
                continue
            if not pd.records:
                row[1] = ErrorCode.corrupt_message
                continue
            try:
                batches = records.scan_batches(pd.records, max_batch_bytes=max_bytes)
            except errors.InvalidRecords as exc:
                log.info("rejecting produce: corrupt batch", topic=name, partition=pd.index, reason=str(exc))
                row[1] = ErrorCode.corrupt_message
                continue
            except errors.RecordsTooLarge as exc:
                log.info("rejecting produce: batch too large", topic=name, partition=pd.index, reason=str(exc))
                row[1] = ErrorCode.message_too_large
                continue
            txn_code = _transactional_check(ctx, req, batches)
            if txn_code is not None:
                row[1] = txn_code
                continue
            if (keyless := await compaction.produce_error(ctx.topic_config(name, "cleanup.policy"), pd.records)):  # type: ignore[arg-type]
                row[1] = keyless
                continue
            data, batches = records.stamp_log_append_time(pd.records, batches, log_append_ms)
            pending.append((name, pd.index, data, batches, row))  # type: ignore[arg-type]
            total += len(pd.records)

    # Resolve leadership first (may open partitions), then append without awaiting.
    targets: list[tuple[Partition | None, bytes, list[records.BatchInfo], list[Any]]] = []
    for name, index, data, batches, row in pending:
        part = await ctx.leader_partition(name, index)
        if part is not None and batches[0].attributes & records.ATTR_TRANSACTIONAL:
            code = await _verify_in_transaction(ctx, req, part, batches[0])
            if code != ErrorCode.none:
                row[1] = code
                continue
        targets.append((part, data, batches, row))
    appended: list[Appended] = []
    timeout = max(req.timeout.total_seconds(), 1.0)
    deadline = time.monotonic() + timeout
    try:
        async with ctx.log.appending(total, room_timeout=timeout * ROOM_SHARE) as appender:
            _append_all(ctx, appender, targets, appended)
    except WriteBufferFull as exc:
        _refuse_buffer_full(targets, refusals, exc)
    # The turn is released: the next request may append while we wait for durability.
    if req.acks == 0:
        return None

    if appended:
        try:
            await asyncio.wait_for(ctx.log.wait_durable(appended), max(deadline - time.monotonic(), MIN_DURABLE_WAIT_S))
        except TimeoutError:
            _fail_all(results, ErrorCode.request_timed_out)
        except Fenced:
            _fail_all(results, ErrorCode.not_leader_or_follower)
        if ctx.config.per_partition_metrics:
            for done in appended:
                metrics.HIGH_WATERMARK.labels(done.partition.topic, str(done.partition.index)).set(
                    done.partition.high_watermark)

    moving = [(name, index) for _, name, rows in results for index, error, _, _ in rows
              if error == ErrorCode.not_leader_or_follower and name is not None]
    if moving and has_field(cls, "node_endpoints"):
        await ctx.wait_for_new_leaders(moving, min(timeout, MOVE_WAIT_S))
    topics_out = []
    hints: dict[int, Any] = {}  # node id -> endpoint, for KIP-951 leader hints
    state = ctx.state()
    for topic, name, rows in results:
        parts_out = []
        for index, error, base, part in rows:
            current_leader = None
            if error != ErrorCode.none:
                metrics.REQUEST_ERRORS.labels("produce", error.name).inc()
            if error == ErrorCode.not_leader_or_follower:
                current_leader = _leader_hint(ctx, cls, state, name, index, hints)
            extra = {"current_leader": current_leader} if current_leader is not None else {}
            parts_out.append(
                mk(part_cls, index=index, error_code=error, base_offset=base if error == ErrorCode.none else -1,
                   log_append_time=None, log_start_offset=part.log_start if part is not None else -1,
                   record_errors=(), error_message=refusals.get((name, index)) or compaction.produce_message(error),
                   **extra)
            )
        topics_out.append(
            mk(topic_cls, name=name or "", topic_id=getattr(topic, "topic_id", None),
               partition_responses=tuple(parts_out))
        )
    return mk(cls, responses=tuple(topics_out), node_endpoints=tuple(hints.values()))


def _append_all(ctx: BrokerContext, appender: Any,
                targets: list[tuple[Partition | None, bytes, list[records.BatchInfo], list[Any]]],
                appended: list[Appended]) -> None:
    """Append every resolved partition of one request, without an await (one WAL flush)."""
    for part, data, batches, row in targets:
        if part is None:
            row[1] = ErrorCode.not_leader_or_follower
            continue
        try:
            done = appender.append(part, data, batches)
        except (NotLeader, Fenced):
            row[1] = ErrorCode.not_leader_or_follower
            continue
        except SequenceError as exc:
            log.info("rejecting produce: sequence", topic=part.topic, partition=part.index, reason=str(exc))
            row[1] = ErrorCode(exc.code)
            continue
        appended.append(done)
        row[2], row[3] = done.base, part
        if not done.duplicate:
            _count_in(ctx, done)


def _refuse_buffer_full(targets: list[tuple[Partition | None, bytes, list[records.BatchInfo], list[Any]]],
                        refusals: dict[tuple[str | None, int], str], exc: WriteBufferFull) -> None:
    """Answer every partition of a request refused for backpressure, with one log line now and then."""
    for part, _, _, row in targets:
        if part is None:
            row[1] = ErrorCode.not_leader_or_follower
        elif row[1] == ErrorCode.none:
            row[1] = ErrorCode(exc.code)
            refusals[(part.topic, part.index)] = exc.message
    metrics.PRODUCE_BUFFER_FULL.inc()
    _buffer_full_log["unlogged"] += 1
    now = time.monotonic()
    if now - _buffer_full_log["at"] >= BUFFER_FULL_LOG_EVERY_S:
        log.warning("produce refused: write buffer full, the object store is not keeping up",
                    reason=exc.message, refused=_buffer_full_log["unlogged"])
        _buffer_full_log["at"], _buffer_full_log["unlogged"] = now, 0


def _transactional_check(ctx: BrokerContext, req: Any, batches: list[records.BatchInfo]) -> ErrorCode | None:
    """Kafka's request-level rules for transactional batches: all or none of a partition's batches,
    a transactional id, WRITE on it. None: nothing to object to (yet)."""
    flags = {bool(b.attributes & records.ATTR_TRANSACTIONAL) for b in batches}
    if flags == {False}:
        return None
    if len(flags) > 1 or any(b.producer_id < 0 for b in batches):
        return ErrorCode.invalid_record
    txn_id = getattr(req, "transactional_id", None)
    if not txn_id:
        return ErrorCode.invalid_txn_state
    if not authz.allowed(ctx, WRITE, TXN, txn_id):
        return ErrorCode.transactional_id_authorization_failed
    return None


async def _verify_in_transaction(ctx: BrokerContext, req: Any, part: Partition, first: records.BatchInfo) -> ErrorCode:
    """The hanging-transaction guard (KIP-890): a producer's first transactional batch on a partition is
    accepted only if its coordinator says the partition is in its open transaction at this epoch.
    Later batches of the same transaction pass without asking (no per-batch round trip)."""
    if first.producer_id in part.txn_open:
        return ErrorCode.none
    return ErrorCode(await ctx.verify_txn(req.transactional_id, first.producer_id, first.producer_epoch,
                                          part.topic, part.index))


def _leader_hint(ctx: BrokerContext, cls: Any, state: Any, name: str | None, index: int,
                 hints: dict[int, Any]) -> Any:
    """The partition's new leader, when we already know it (saves the client a metadata round trip)."""
    info = state.topics.get(name) if name else None
    if info is None or not 0 <= index < len(info.partitions) or not has_field(cls, "node_endpoints"):
        return None
    p = info.partitions[index]
    broker = state.brokers.get(p.leader)
    address = broker.endpoint(current_listener()) if broker is not None else None
    if address is None or p.leader == ctx.node_id:
        return None
    hints[p.leader] = mk(nested(cls, "NodeEndpoint"), node_id=p.leader, host=address[0], port=address[1], rack=None)
    return mk(nested(cls, "LeaderIdAndEpoch"), leader_id=p.leader, leader_epoch=p.epoch)


def _count_in(ctx: BrokerContext, done: Appended) -> None:
    metrics.BYTES_IN.inc(done.size)
    metrics.RECORDS_IN.inc(done.records)
    if ctx.config.per_partition_metrics:
        part = done.partition
        metrics.PARTITION_BYTES_IN.labels(part.topic, str(part.index)).inc(done.size)
        metrics.PARTITION_RECORDS_IN.labels(part.topic, str(part.index)).inc(done.records)


def _fail_all(results: list[tuple[Any, str | None, list[list[Any]]]], code: ErrorCode) -> None:
    for _, _, rows in results:
        for row in rows:
            if row[1] == ErrorCode.none:
                row[1] = code

