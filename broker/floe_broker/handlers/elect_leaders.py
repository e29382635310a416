"""ElectLeaders (API 43): nothing to elect, so Kafka's ELECTION_NOT_NEEDED for every live partition.

A Floe partition has one replica, its leader, so the preferred leader is
always the current one and an unclean election has no other replica to pick.
Tools that run an election after a reassignment (kafka-leader-election,
``Admin.electLeaders``) get Kafka's answer for a partition already led by its
preferred replica. A partition whose leader is gone answers
ELIGIBLE_LEADERS_NOT_AVAILABLE: the controller hands it to a live broker when
the old leader's session expires, which no election request can hurry. An
empty request (every partition) answers with no partitions, as Kafka does when
none needed an election. Versions 1 and up only: v0 has no top-level error
code, and every client that elects leaders (Java 2.4+) sends v1 or v2.
"""

from __future__ import annotations

from typing import Any

from kio.schema.errors import ErrorCode

from ..protocol.build import mk, nested, response_class
from .context import BrokerContext

ELECT_LEADERS = 43


async def elect_leaders(ctx: BrokerContext, version: int, req: Any) -> Any:
    cls = response_class(ELECT_LEADERS, version)
    topic_cls = nested(cls, "ReplicaElectionResult")
    part_cls = nested(cls, "PartitionResult")
    state = ctx.state()
    results = []
    for t in req.topic_partitions or ():
        info = state.topics.get(t.topic)
        parts = []
        for index in t.partitions:
            if info is None or not 0 <= index < len(info.partitions):
                code, message = ErrorCode.unknown_topic_or_partition, f"{t.topic}-{index} does not exist"
            elif info.partitions[index].leader in state.brokers:
                code, message = ErrorCode.election_not_needed, "the leader is the partition's only replica"
            else:
                code, message = (ErrorCode.eligible_leaders_not_available,
                                 "the leader is gone; the controller moves the partition when its session expires")
            parts.append(mk(part_cls, partition_id=index, error_code=code, error_message=message))
        results.append(mk(topic_cls, topic=t.topic, partition_result=tuple(parts)))
    return mk(cls, error_code=ErrorCode.none, replica_election_results=tuple(results))
