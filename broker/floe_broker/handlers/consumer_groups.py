"""KIP-848 consumer-group APIs: ConsumerGroupHeartbeat (68) and ConsumerGroupDescribe (69).

The coordinating broker (the leader of the group's ``__consumer_offsets``
partition, as for classic groups) runs the group's state machine
(``groups/consumer_protocol.py``); this module only translates messages.
Topics are named by id on the wire and by id in the group's state; the
heartbeat hands the state machine the current topics so new topics and
partitions are picked up on the members' next heartbeats.
"""

from __future__ import annotations

import datetime
import uuid
from typing import Any

from kio.schema.errors import ErrorCode

from ..errors import JournalClosed
from ..groups.assignors import Assignment
from ..groups.consumer_protocol import HeartbeatRequest, TopicMeta
from ..protocol.build import mk, nested, response_class
from ..security.acls import Operation
from . import authz
from .authz import GROUP, TOPIC
from .context import CLIENT, BrokerContext
from .groups import NO_OPS, _coordinating, _ms, _release_turn

CONSUMER_GROUP_HEARTBEAT, CONSUMER_GROUP_DESCRIBE = 68, 69


def _topics(ctx: BrokerContext) -> dict[str, TopicMeta]:
    return {name: TopicMeta(t.topic_id, name, len(t.partitions))
            for name, t in ctx.state().topics.items() if not t.internal}


async def consumer_group_heartbeat(ctx: BrokerContext, version: int, req: Any) -> Any:
    _release_turn()
    cls = response_class(CONSUMER_GROUP_HEARTBEAT, version)
    interval = datetime.timedelta(milliseconds=ctx.config.group_consumer_heartbeat_interval_ms)

    def answer(code: ErrorCode, message: str | None = None, member_id: str | None = None, epoch: int = -1,
               assignment: Any = None) -> Any:
        return mk(cls, error_code=code, error_message=message, member_id=member_id or req.member_id or None,
                  member_epoch=epoch, heartbeat_interval=interval, assignment=assignment)

    shard, code = await _coordinating(ctx, req.group_id)
    if shard is None:
        return answer(code)
    names = req.subscribed_topic_names or ()
    if any(not authz.allowed(ctx, Operation.DESCRIBE, TOPIC, n) for n in names):
        return answer(ErrorCode.topic_authorization_failed)  # Kafka: DESCRIBE on every topic subscribed by name
    owned: Assignment | None = None
    if req.topic_partitions is not None:
        owned = {str(tp.topic_id): set(tp.partitions) for tp in req.topic_partitions}
    client_id, host = CLIENT.get()
    rebalance = _ms(req.rebalance_timeout)
    request = HeartbeatRequest(
        member_id=req.member_id, member_epoch=req.member_epoch, instance_id=req.instance_id, rack_id=req.rack_id,
        rebalance_timeout_ms=rebalance,
        subscribed_names=tuple(req.subscribed_topic_names) if req.subscribed_topic_names is not None else None,
        subscribed_regex=getattr(req, "subscribed_topic_regex", None), server_assignor=req.server_assignor,
        owned=owned, client_id=client_id, client_host=host,
        session_timeout_ms=ctx.config.group_consumer_session_timeout_ms, member_id_from_client=version >= 1)
    try:
        reply = await shard.consumer_heartbeat(req.group_id, request, _topics(ctx))
    except JournalClosed:
        return answer(ErrorCode.not_coordinator)
    if reply.error != ErrorCode.none:
        return answer(reply.error, reply.message)
    assignment = None
    if reply.assignment is not None:
        assignment_cls, tp_cls = nested(cls, "Assignment"), nested(cls, "TopicPartitions")
        assignment = mk(assignment_cls, topic_partitions=tuple(
            mk(tp_cls, topic_id=uuid.UUID(t), partitions=tuple(sorted(ps)))
            for t, ps in sorted(reply.assignment.items()) if ps))
    return answer(ErrorCode.none, None, reply.member_id, reply.epoch, assignment)


async def consumer_group_describe(ctx: BrokerContext, version: int, req: Any) -> Any:
    cls = response_class(CONSUMER_GROUP_DESCRIBE, version)
    group_cls, member_cls = nested(cls, "DescribedGroup"), nested(cls, "Member")
    assignment_cls, tp_cls = nested(cls, "Assignment"), nested(cls, "TopicPartitions")
    names = {t.topic_id: name for name, t in ctx.state().topics.items()}

    def assignment(a: Assignment) -> Any:
        return mk(assignment_cls, topic_partitions=tuple(
            mk(tp_cls, topic_id=uuid.UUID(t), topic_name=names.get(t, ""), partitions=tuple(sorted(ps)))
            for t, ps in sorted(a.items()) if ps))

    out = []
    for group_id in req.group_ids:
        shard, code = await _coordinating(ctx, group_id, Operation.DESCRIBE)
        group = shard.groups.get(group_id) if shard is not None else None
        if shard is not None and (group is None or group.consumer is None):
            code = ErrorCode.group_id_not_found
        if group is None or group.consumer is None or code != ErrorCode.none:
            message = None
            if code == ErrorCode.group_id_not_found:
                message = (f"Group {group_id} is not a consumer group." if group is not None and not group.unused
                           else f"Group {group_id} not found.")
            out.append(mk(group_cls, error_code=code, error_message=message, group_id=group_id, group_state="",
                          members=(), authorized_operations=NO_OPS))
            continue
        cg = group.consumer
        members = tuple(
            mk(member_cls, member_id=m.member_id, instance_id=m.instance_id, rack_id=m.rack_id,
               member_epoch=m.epoch, client_id=m.client_id, client_host=m.client_host,
               subscribed_topic_names=m.subscribed_names,
               subscribed_topic_regex=m.subscribed_regex, assignment=assignment(m.assigned),
               target_assignment=assignment(cg.target.get(m.member_id, {})), member_type=1)
            for m in cg.members.values())
        out.append(mk(group_cls, error_code=ErrorCode.none, group_id=group_id, group_state=cg.state_name,
                      group_epoch=cg.epoch, assignment_epoch=cg.assignment_epoch, assignor_name=cg.assignor,
                      members=members, authorized_operations=authz.authorized_operations(
                          ctx, GROUP, group_id, req.include_authorized_operations)))
    return mk(cls, groups=tuple(out))
