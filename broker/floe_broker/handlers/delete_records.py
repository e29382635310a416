"""DeleteRecords: move partitions' log start forward, durably, through their leader.

Kafka's semantics: the offset -1 means the high watermark; an offset above
the high watermark is OFFSET_OUT_OF_RANGE; an offset at or below the current
log start changes nothing and answers the current log start. The answer
(``low_watermark``) comes only once the new log start is in a checkpoint
batch, so a successor after a crash or a move starts there too. Fetches
below it then get OFFSET_OUT_OF_RANGE, ListOffsets earliest answers it, and
the segments wholly below it are dropped by the next maintenance round and
their objects by the collector. Authorization: DELETE on the topic.
"""

from __future__ import annotations

import asyncio
from typing import Any

import structlog
from kio.schema.errors import ErrorCode

from ..errors import KafkaError, NotLeader
from ..protocol.build import mk, nested, response_class
from . import authz
from .authz import DELETE, TOPIC
from .context import BrokerContext

log = structlog.get_logger(__name__)
DELETE_RECORDS = 21
TO_HIGH_WATERMARK = -1


async def delete_records(ctx: BrokerContext, version: int, req: Any) -> Any:
    cls = response_class(DELETE_RECORDS, version)
    topic_cls = nested(cls, "DeleteRecordsTopicResult")
    part_cls = nested(cls, "DeleteRecordsPartitionResult")
    timeout = max(req.timeout.total_seconds(), 1.0)
    state = ctx.state()

    async def one(name: str, index: int, offset: int) -> tuple[int, ErrorCode]:
        if not authz.allowed(ctx, DELETE, TOPIC, name):
            return -1, ErrorCode.topic_authorization_failed
        info = state.topics.get(name)
        if info is None or not 0 <= index < len(info.partitions):
            return -1, ErrorCode.unknown_topic_or_partition
        part = await ctx.leader_partition(name, index)
        if part is None:
            return -1, ErrorCode.not_leader_or_follower
        target = part.high_watermark if offset == TO_HIGH_WATERMARK else offset
        if target < 0 or target > part.high_watermark:
            return -1, ErrorCode.offset_out_of_range
        try:
            low = await asyncio.wait_for(ctx.log.delete_records(part, target), timeout)
        except NotLeader:
            return -1, ErrorCode.not_leader_or_follower
        except TimeoutError:
            return -1, ErrorCode.request_timed_out
        except KafkaError as exc:
            return -1, ErrorCode(exc.code)
        except Exception as exc:  # the store stayed unavailable: nothing was acknowledged
            log.warning("delete records failed", topic=name, partition=index, error=repr(exc))
            return -1, ErrorCode.unknown_server_error
        log.info("records deleted", topic=name, partition=index, log_start=low)
        return low, ErrorCode.none

    topics_out = []
    for topic in req.topics:
        results = await asyncio.gather(*(one(topic.name, p.partition_index, p.offset) for p in topic.partitions))
        topics_out.append(mk(topic_cls, name=topic.name, partitions=tuple(
            mk(part_cls, partition_index=p.partition_index, low_watermark=low, error_code=code)
            for p, (low, code) in zip(topic.partitions, results, strict=True))))
    return mk(cls, throttle_time_ms=0, topics=tuple(topics_out))
