"""OffsetForLeaderEpoch (API 23): where a leader epoch ended, from the partition's epoch history.

Consumers send it after a leader change to validate their position
(KIP-320): "I read records of epoch E up to offset P; where did E end?". An
end offset below P would mean the log was truncated under them. Floe never
truncates acknowledged data, but the answer must still be Kafka's, because
the Java consumer and kafka-python act on it: for epoch E, the largest epoch
<= E that wrote, and the start offset of the next epoch, or the high
watermark when E is the current epoch (``log.epochs``); (-1, -1) for an epoch
newer than the partition's. The request's ``current_leader_epoch`` is checked
as Fetch does (``handlers.leader_epoch``); a partition this broker does not
lead answers NOT_LEADER_OR_FOLLOWER. Versions 2 to 4 (Kafka 4's floor; v3
adds ``replica_id``, v4 is flexible). Floe has no followers, so a request
naming a replica is answered like a consumer's, under DESCRIBE on the topic.
"""

from __future__ import annotations

from typing import Any

from kio.schema.errors import ErrorCode

from ..protocol.build import mk, nested, response_class
from . import authz
from .authz import DESCRIBE, TOPIC
from .context import BrokerContext
from .leader_epoch import epoch_error

OFFSET_FOR_LEADER_EPOCH = 23


async def offset_for_leader_epoch(ctx: BrokerContext, version: int, req: Any) -> Any:
    cls = response_class(OFFSET_FOR_LEADER_EPOCH, version)
    topic_cls = nested(cls, "OffsetForLeaderTopicResult")
    part_cls = nested(cls, "EpochEndOffset")
    state = ctx.state()
    topics_out = []
    for topic in req.topics:
        parts_out = []
        may_describe = authz.allowed(ctx, DESCRIBE, TOPIC, topic.topic)
        info = state.topics.get(topic.topic)
        for rp in topic.partitions:
            code, epoch, end = ErrorCode.none, -1, -1
            if not may_describe:
                code = ErrorCode.topic_authorization_failed
            elif info is None or not 0 <= rp.partition < len(info.partitions):
                code = ErrorCode.unknown_topic_or_partition
            else:
                part = await ctx.leader_partition(topic.topic, rp.partition)
                if part is None:
                    code = ErrorCode.not_leader_or_follower
                else:
                    code = epoch_error(part.epoch, getattr(rp, "current_leader_epoch", -1))
                    if code == ErrorCode.none:
                        epoch, end = part.epoch_history.end_offset_for(rp.leader_epoch, part.high_watermark)
            parts_out.append(mk(part_cls, error_code=code, partition=rp.partition, leader_epoch=epoch,
                                end_offset=end))
        topics_out.append(mk(topic_cls, topic=topic.topic, partitions=tuple(parts_out)))
    return mk(cls, topics=tuple(topics_out))
