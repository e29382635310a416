"""ListOffsets (API 2): the earliest, the latest, the newest-timestamp or a timestamp's offset.

A timestamp's answer is Kafka's: the first record, in offset order, whose
own timestamp is at or after the target, with that record's timestamp and
the epoch of the batch holding it, also inside compressed batches
(``log.record_times``). MAX_TIMESTAMP (-3, KIP-734) names the first record
carrying the partition's largest timestamp. The leader epoch of EARLIEST
and LATEST comes from the partition's epoch history (``log.epochs``), so a
consumer that seeks there validates its position against the right epoch. A
``current_leader_epoch`` other than the partition's gets FENCED_LEADER_EPOCH
or UNKNOWN_LEADER_EPOCH (``handlers.leader_epoch``).
"""

from __future__ import annotations

from typing import Any

from kio.schema.errors import ErrorCode

from ..log.partition import Partition
from ..protocol.build import mk, nested, response_class
from . import authz
from .authz import DESCRIBE, TOPIC
from .context import BrokerContext
from .leader_epoch import epoch_error

LIST_OFFSETS = 2
LATEST, EARLIEST, MAX_TIMESTAMP = -1, -2, -3
READ_COMMITTED = 1


async def list_offsets(ctx: BrokerContext, version: int, req: Any) -> Any:
    cls = response_class(LIST_OFFSETS, version)
    topic_cls = nested(cls, "ListOffsetsTopicResponse")
    part_cls = nested(cls, "ListOffsetsPartitionResponse")
    state = ctx.state()
    committed = getattr(req, "isolation_level", 0) == READ_COMMITTED
    topics_out = []
    for topic in req.topics:
        parts_out = []
        may_describe = authz.allowed(ctx, DESCRIBE, TOPIC, topic.name)
        for lp in topic.partitions:
            if not may_describe:
                parts_out.append(mk(part_cls, partition_index=lp.partition_index,
                                    error_code=ErrorCode.topic_authorization_failed, timestamp=-1, offset=-1,
                                    leader_epoch=-1))
                continue
            exists = topic.name in state.topics and 0 <= lp.partition_index < len(state.topics[topic.name].partitions)
            part = await ctx.leader_partition(topic.name, lp.partition_index) if exists else None
            code = (ErrorCode.none if part is not None
                    else ErrorCode.not_leader_or_follower if exists else ErrorCode.unknown_topic_or_partition)
            if part is not None:
                code = epoch_error(part.epoch, getattr(lp, "current_leader_epoch", -1))
            if part is None or code != ErrorCode.none:
                parts_out.append(mk(part_cls, partition_index=lp.partition_index, error_code=code,
                                    timestamp=-1, offset=-1, leader_epoch=-1))
                continue
            ts, offset, epoch = await _lookup(ctx, part, lp.timestamp, committed)
            parts_out.append(mk(part_cls, partition_index=lp.partition_index, error_code=ErrorCode.none,
                                timestamp=ts, offset=offset, leader_epoch=epoch))
        topics_out.append(mk(topic_cls, name=topic.name, partitions=tuple(parts_out)))
    return mk(cls, topics=tuple(topics_out))


async def _lookup(ctx: BrokerContext, part: Partition, target: int, committed: bool) -> tuple[int, int, int]:
    """(timestamp, offset, leader epoch) for one partition; -1s when no record qualifies."""
    if target == LATEST:
        return -1, part.last_stable_offset if committed else part.high_watermark, part.epoch
    if target == EARLIEST:
        return -1, part.log_start, _epoch_at(part, part.log_start)
    if target == MAX_TIMESTAMP:
        newest = part.max_timestamp()
        if newest is None:
            return -1, -1, -1
        target = newest[1]  # the first record that carries it, not the first offset of its piece
    elif target < 0:
        return -1, -1, -1
    found = await ctx.log.offset_for_timestamp(part, target)
    if found is None:
        return -1, -1, -1
    return found.timestamp, found.offset, found.leader_epoch


def _epoch_at(part: Partition, offset: int) -> int:
    """The epoch that wrote ``offset``; the current one for the offset it will write next."""
    if offset >= part.high_watermark:
        return part.epoch
    epoch = part.epoch_history.epoch_for(offset)
    return epoch if epoch >= 0 else part.epoch
