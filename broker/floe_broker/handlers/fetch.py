"""Fetch (long-poll, byte limits).

Fetch returns whole batches below the high watermark (I5, docs/architecture.md#i5-read-committed);
with ``isolation_level=1`` (read_committed) below the last stable offset, with the
aborted transactions of the returned range (docs/architecture.md#transactions). It honours
``partition_max_bytes`` per partition and ``max_bytes`` overall, but always
returns the first batch even when it is larger (Kafka's rule, so a consumer
cannot get stuck behind one big batch). With less than ``min_bytes`` ready it
parks on the partitions' high-watermark futures until data arrives or
``max_wait`` passes. Fetch sessions (KIP-227) are ``fetch_sessions``: it says
which partitions a request reads and which of their answers go back. A
``current_leader_epoch`` other than the partition's gets FENCED_LEADER_EPOCH or
UNKNOWN_LEADER_EPOCH (``handlers.leader_epoch``).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from kio.schema.errors import ErrorCode
from prometheus_client import Counter

from .. import metrics
from ..errors import OffsetOutOfRange
from ..log.partition import Partition
from ..protocol import records
from ..protocol.build import ZERO_UUID
from ..protocol.codec import RecordsViews
from ..protocol.fetch_response import FetchAnswer, PartitionAnswer, TopicAnswer
from . import authz
from .authz import READ, TOPIC
from .context import BrokerContext
from .leader_epoch import epoch_error

READ_COMMITTED = 1

# (topic, partition) -> its bytes-out and records-out series: ``labels()`` validates and locks on
# every call, which a fetch of many partitions would pay once per partition per poll.
_partition_series: dict[tuple[str, int], tuple[Counter, Counter]] = {}


def _series(part: Partition) -> tuple[Counter, Counter]:
    key = (part.topic, part.index)
    found = _partition_series.get(key)
    if found is None:
        index = str(part.index)
        found = (metrics.PARTITION_BYTES_OUT.labels(part.topic, index),
                 metrics.PARTITION_RECORDS_OUT.labels(part.topic, index))
        _partition_series[key] = found
    return found


def _aborted(part: Partition, fetch_offset: int, views: list[memoryview]) -> tuple[tuple[int, int], ...]:
    """The aborted transactions overlapping the returned batches: the consumer drops their records."""
    last_view = views[-1]
    headers = records.iter_headers(last_view)
    last = headers[-1].last_offset if headers else fetch_offset
    return tuple(part.aborted_between(fetch_offset, last))


def _nothing_new(part: Partition, offset: int, committed: bool) -> bool:
    """True when a read at ``offset`` would return no batch and raise nothing: the consumer is caught up.

    Most partitions of a consumer of many are; answering them without a read keeps a poll's cost
    in proportion to the partitions with data.
    """
    hw = part.high_watermark
    stop = min(part.last_stable_offset, hw) if committed else hw
    return part.log_start <= offset <= hw and offset >= stop


def _failed(index: int, code: ErrorCode) -> PartitionAnswer:
    return PartitionAnswer(partition_index=index, error_code=code, records=b"")


async def fetch(ctx: BrokerContext, version: int, req: Any) -> FetchAnswer:
    state = ctx.state()
    committed = getattr(req, "isolation_level", 0) == READ_COMMITTED
    sessions = ctx.fetch_sessions.context(version, req)  # KIP-227: the partitions to read, what to answer
    if sessions.error:
        return FetchAnswer(error_code=sessions.error, session_id=0, responses=())

    wanted: list[tuple[Any, str | None, list[Any]]] = []
    denied: set[str] = set()
    for topic in sessions.topics:
        name = getattr(topic, "topic", None)
        if name is None:
            found = state.topic_by_id(str(topic.topic_id))
            name = found.name if found else None
        if name is not None and not authz.allowed(ctx, READ, TOPIC, name):
            denied.add(name)
        wanted.append((topic, name, list(topic.partitions)))

    per_partition_metrics = ctx.config.per_partition_metrics
    deadline = time.monotonic() + req.max_wait.total_seconds()
    while True:
        total = 0
        n_records = 0
        waits: list[Partition] = []
        topics_out = []
        for topic, name, partitions in wanted:
            parts_out = []
            for fp in partitions:
                if name in denied:
                    parts_out.append(_failed(fp.partition, ErrorCode.topic_authorization_failed))
                    continue
                part = await ctx.leader_partition(name, fp.partition) if name else None
                if part is None:
                    unknown = name is None or name not in state.topics
                    if unknown:
                        code = (ErrorCode.unknown_topic_id if name is None and version >= 13
                                else ErrorCode.unknown_topic_or_partition)
                    else:
                        code = ErrorCode.not_leader_or_follower
                    parts_out.append(_failed(fp.partition, code))
                    continue
                fenced = epoch_error(part.epoch, getattr(fp, "current_leader_epoch", -1))
                if fenced != ErrorCode.none:
                    parts_out.append(_failed(fp.partition, fenced))
                    continue
                offset = fp.fetch_offset
                if _nothing_new(part, offset, committed):
                    waits.append(part)
                    parts_out.append(PartitionAnswer(fp.partition, ErrorCode.none, part.high_watermark,
                                                     part.last_stable_offset, part.log_start))
                    continue
                budget = min(fp.partition_max_bytes, max(req.max_bytes - total, 0))
                code = ErrorCode.none
                data: RecordsViews | None = None
                aborted = None
                try:
                    views = await ctx.log.read(
                        part, offset, budget, strict_max=total > 0, committed=committed,
                        deadline=deadline,
                    ) if budget > 0 or total == 0 else []
                    if views:
                        data = RecordsViews(views)
                        total += data.size
                        if committed:
                            aborted = _aborted(part, offset, views)
                    else:
                        waits.append(part)
                except OffsetOutOfRange:
                    code = ErrorCode.offset_out_of_range
                parts_out.append(PartitionAnswer(fp.partition, code, part.high_watermark, part.last_stable_offset,
                                                 part.log_start, aborted, data or b""))
                if data:
                    count = 0
                    for v in data.views:
                        count += records.record_count(v)
                    n_records += count
                    if per_partition_metrics:
                        bytes_out, records_out = _series(part)
                        bytes_out.inc(data.size)
                        records_out.inc(count)
            topics_out.append(TopicAnswer(topic=name or "", topic_id=getattr(topic, "topic_id", None) or ZERO_UUID,
                                          partitions=tuple(parts_out)))
        if n_records:
            metrics.RECORDS_OUT.inc(n_records)
        remaining = deadline - time.monotonic()
        if total >= max(req.min_bytes, 1) or remaining <= 0 or not waits:
            metrics.BYTES_OUT.inc(total)
            session_id, responses = sessions.answer(topics_out)
            return FetchAnswer(error_code=ErrorCode.none, session_id=session_id, responses=tuple(responses))
        woken: asyncio.Future[None] = asyncio.get_running_loop().create_future()  # by the first that moves
        for p in waits:
            p.notify(woken)
        await asyncio.wait((woken,), timeout=remaining)
        for p in waits:
            p.forget(woken)
        woken.cancel()
