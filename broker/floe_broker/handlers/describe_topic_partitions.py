"""DescribeTopicPartitions (API 75): the Java AdminClient's describeTopics since Kafka 3.8.

It answers what Metadata does for named topics (leader, epoch, replicas and
ISR, which in Floe are the leader alone), but a page at a time: topics in name
order from the request's cursor, at most ``response_partition_limit``
partitions per response, and a ``next_cursor`` where the next page starts. An
empty topic list means every topic the principal may describe, internal ones
included (with ``is_internal``), as Kafka does.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

from kio.schema.errors import ErrorCode

from ..protocol.build import ZERO_UUID, mk, nested, response_class
from . import authz
from .authz import DESCRIBE, TOPIC
from .context import BrokerContext

if TYPE_CHECKING:
    from ..cluster.metadata import TopicInfo

DESCRIBE_TOPIC_PARTITIONS = 75
PAGE_LIMIT = 2000  # Kafka's cap on response_partition_limit


async def describe_topic_partitions(ctx: BrokerContext, version: int, req: Any) -> Any:
    cls = response_class(DESCRIBE_TOPIC_PARTITIONS, version)
    topic_cls = nested(cls, "DescribeTopicPartitionsResponseTopic")
    cursor_cls = nested(cls, "Cursor")
    state = ctx.state()
    live = frozenset(state.brokers)
    if req.topics:
        names = sorted({t.name for t in req.topics})
    else:
        names = sorted(n for n in state.topics if authz.allowed(ctx, DESCRIBE, TOPIC, n))
    start_topic, start_partition = (req.cursor.topic_name, req.cursor.partition_index) if req.cursor else ("", 0)
    budget = max(1, min(req.response_partition_limit or PAGE_LIMIT, PAGE_LIMIT))
    out: list[Any] = []
    next_cursor = None
    for name in names:
        if name < start_topic:
            continue
        first = start_partition if name == start_topic else 0
        if not authz.allowed(ctx, DESCRIBE, TOPIC, name):
            out.append(_failed(topic_cls, name, ErrorCode.topic_authorization_failed))
            continue
        info = state.topics.get(name)
        if info is None:
            out.append(_failed(topic_cls, name, ErrorCode.unknown_topic_or_partition))
            continue
        if budget == 0:
            next_cursor = mk(cursor_cls, topic_name=name, partition_index=first)
            break
        last = min(len(info.partitions), first + budget)
        operations = authz.authorized_operations(ctx, TOPIC, name, True)
        out.append(mk(topic_cls, error_code=ErrorCode.none, name=name, topic_id=uuid.UUID(info.topic_id),
                      is_internal=info.internal, partitions=_partitions(cls, info, first, last, live),
                      topic_authorized_operations=operations))
        budget -= last - first
        if last < len(info.partitions):
            next_cursor = mk(cursor_cls, topic_name=name, partition_index=last)
            break
    return mk(cls, topics=tuple(out), next_cursor=next_cursor)


def _partitions(cls: Any, info: TopicInfo, first: int, last: int, live: frozenset[int]) -> tuple[Any, ...]:
    part_cls = nested(cls, "DescribeTopicPartitionsResponsePartition")
    out = []
    for index in range(first, last):
        p = info.partitions[index]
        if p.leader in live:
            out.append(mk(part_cls, error_code=ErrorCode.none, partition_index=index, leader_id=p.leader,
                          leader_epoch=p.epoch, replica_nodes=(p.leader,), isr_nodes=(p.leader,),
                          eligible_leader_replicas=(), last_known_elr=(), offline_replicas=()))
        else:  # between a leader's loss and the controller's failover, as Metadata answers it
            out.append(mk(part_cls, error_code=ErrorCode.leader_not_available, partition_index=index, leader_id=-1,
                          leader_epoch=p.epoch, replica_nodes=(), isr_nodes=(), eligible_leader_replicas=(),
                          last_known_elr=(), offline_replicas=()))
    return tuple(out)


def _failed(topic_cls: Any, name: str, code: ErrorCode) -> Any:
    return mk(topic_cls, error_code=code, name=name, topic_id=ZERO_UUID, is_internal=False, partitions=(),
              topic_authorized_operations=authz.NOT_REQUESTED)
