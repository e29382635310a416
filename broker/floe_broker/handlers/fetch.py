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

from .. import metrics
from ..errors import OffsetOutOfRange
from ..log.partition import Partition
from ..protocol import records
from ..protocol.build import ZERO_UUID, mk, nested, response_class
from ..protocol.codec import RecordsViews
from . import authz
from .authz import READ, TOPIC
from .context import BrokerContext
from .leader_epoch import epoch_error

FETCH = 1
READ_COMMITTED = 1


def _aborted(part: Partition, fetch_offset: int, views: list[memoryview], aborted_cls: Any) -> tuple[Any, ...]:
    """The aborted transactions overlapping the returned batches: the consumer drops their records."""
    last_view = views[-1]
    headers = records.iter_headers(last_view)
    last = headers[-1].last_offset if headers else fetch_offset
    return tuple(mk(aborted_cls, producer_id=pid, first_offset=first)
                 for pid, first in part.aborted_between(fetch_offset, last))


async def fetch(ctx: BrokerContext, version: int, req: Any) -> Any:
    cls = response_class(FETCH, version)
    topic_cls = nested(cls, "FetchableTopicResponse")
    part_cls = nested(cls, "PartitionData")
    state = ctx.state()
    aborted_cls = nested(cls, "AbortedTransaction")
    committed = getattr(req, "isolation_level", 0) == READ_COMMITTED
    sessions = ctx.fetch_sessions.context(version, req)  # KIP-227: the partitions to read, what to answer
    if sessions.error:
        return mk(cls, error_code=sessions.error, session_id=0, responses=())

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

    deadline = time.monotonic() + req.max_wait.total_seconds()
    while True:
        total = 0
        waits: list[Partition] = []
        topics_out = []
        for topic, name, partitions in wanted:
            parts_out = []
            for fp in partitions:
                if name in denied:
                    parts_out.append(mk(part_cls, partition_index=fp.partition,
                                        error_code=ErrorCode.topic_authorization_failed, high_watermark=-1,
                                        last_stable_offset=-1, log_start_offset=-1, preferred_read_replica=-1,
                                        records=b"", aborted_transactions=None))
                    continue
                part = await ctx.leader_partition(name, fp.partition) if name else None
                if part is None:
                    unknown = name is None or name not in state.topics
                    if unknown:
                        code = (ErrorCode.unknown_topic_id if name is None and version >= 13
                                else ErrorCode.unknown_topic_or_partition)
                    else:
                        code = ErrorCode.not_leader_or_follower
                    parts_out.append(mk(part_cls, partition_index=fp.partition, error_code=code,
                                        high_watermark=-1, last_stable_offset=-1, log_start_offset=-1,
                                        preferred_read_replica=-1, records=b"", aborted_transactions=None))
                    continue
                fenced = epoch_error(part.epoch, getattr(fp, "current_leader_epoch", -1))
                if fenced != ErrorCode.none:
                    parts_out.append(mk(part_cls, partition_index=fp.partition, error_code=fenced,
                                        high_watermark=-1, last_stable_offset=-1, log_start_offset=-1,
                                        preferred_read_replica=-1, records=b"", aborted_transactions=None))
                    continue
                budget = min(fp.partition_max_bytes, max(req.max_bytes - total, 0))
                code = ErrorCode.none
                data: RecordsViews | None = None
                aborted = None
                try:
                    views = await ctx.log.read(
                        part, fp.fetch_offset, budget, strict_max=total > 0, committed=committed,
                        deadline=deadline,
                    ) if budget > 0 or total == 0 else []
                    if views:
                        data = RecordsViews(views)
                        total += data.size
                        if committed:
                            aborted = _aborted(part, fp.fetch_offset, views, aborted_cls)
                    else:
                        waits.append(part)
                except OffsetOutOfRange:
                    code = ErrorCode.offset_out_of_range
                parts_out.append(
                    mk(part_cls, partition_index=fp.partition, error_code=code,
                       high_watermark=part.high_watermark, last_stable_offset=part.last_stable_offset,
                       log_start_offset=part.log_start, preferred_read_replica=-1,
                       aborted_transactions=aborted, records=data or b"")
                )
                if data:
                    n_records = sum(h.last_offset - h.base_offset + 1 for v in data.views
                                    for h in records.iter_headers(v))
                    metrics.RECORDS_OUT.inc(n_records)
                    if ctx.config.per_partition_metrics:
                        metrics.PARTITION_BYTES_OUT.labels(part.topic, str(part.index)).inc(len(data))
                        metrics.PARTITION_RECORDS_OUT.labels(part.topic, str(part.index)).inc(n_records)
            topics_out.append(mk(topic_cls, topic=name or "", topic_id=getattr(topic, "topic_id", ZERO_UUID),
                                 partitions=tuple(parts_out)))
        remaining = deadline - time.monotonic()
        if total >= max(req.min_bytes, 1) or remaining <= 0 or not waits:
            metrics.BYTES_OUT.inc(total)
            session_id, responses = sessions.answer(topics_out)
            return mk(cls, error_code=ErrorCode.none, session_id=session_id, responses=tuple(responses))
        woken: asyncio.Future[None] = asyncio.get_running_loop().create_future()  # by the first that moves
        for p in waits:
            p.notify(woken)
        await asyncio.wait((woken,), timeout=remaining)
        for p in waits:
            p.forget(woken)
        woken.cancel()
