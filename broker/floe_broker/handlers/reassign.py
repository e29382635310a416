"""AlterPartitionReassignments / ListPartitionReassignments on the controller operation.

Standard tooling (kafka-reassign-partitions, admin clients) sends a replica
list per partition; Floe partitions have exactly one replica, the leader, so
the first broker of the list becomes the new leader. Moves are metadata-only
and finish before the response, so the list of ongoing reassignments is
always empty. Cancelling (replicas = null) has nothing to cancel.
"""

from __future__ import annotations

from typing import Any

from kio.schema.errors import ErrorCode

from ..protocol.build import mk, nested, response_class
from .context import BrokerContext

ALTER, LIST = 45, 46


async def alter_partition_reassignments(ctx: BrokerContext, version: int, req: Any) -> Any:
    cls = response_class(ALTER, version)
    topic_cls = nested(cls, "ReassignableTopicResponse")
    part_cls = nested(cls, "ReassignablePartitionResponse")
    moves: list[tuple[str, int, int]] = []
    slots: list[tuple[str, int]] = []
    errors: dict[tuple[str, int], tuple[ErrorCode, str | None]] = {}
    for t in req.topics:
        for p in t.partitions:
            key = (t.name, p.partition_index)
            slots.append(key)
            if p.replicas is None:
                errors[key] = (ErrorCode.no_reassignment_in_progress, "moves finish at once; nothing to cancel")
            elif len(p.replicas) != 1:
                errors[key] = (ErrorCode.invalid_replica_assignment,
                               "Floe partitions have exactly one replica (the leader)")
            else:
                moves.append((t.name, p.partition_index, int(p.replicas[0])))
    try:
        results = await ctx.reassign(moves) if moves else []
        for r in results:
            if r.error:
                code = (ErrorCode.unknown_topic_or_partition if r.error.startswith("UNKNOWN")
                        else ErrorCode.invalid_replica_assignment if r.error.startswith("INVALID")
                        else ErrorCode.reassignment_in_progress)
                errors[(r.topic, r.partition)] = (code, r.error)
    except Exception as exc:
        return mk(cls, error_code=ErrorCode.not_controller, error_message=str(exc), responses=())
    by_topic: dict[str, list[Any]] = {}
    for name, index in slots:
        code, message = errors.get((name, index), (ErrorCode.none, None))
        by_topic.setdefault(name, []).append(
            mk(part_cls, partition_index=index, error_code=code, error_message=message))
    return mk(cls, error_code=ErrorCode.none, error_message=None,
              responses=tuple(mk(topic_cls, name=n, partitions=tuple(ps)) for n, ps in by_topic.items()))


async def list_partition_reassignments(ctx: BrokerContext, version: int, req: Any) -> Any:
    cls = response_class(LIST, version)
    return mk(cls, error_code=ErrorCode.none, error_message=None, topics=())
