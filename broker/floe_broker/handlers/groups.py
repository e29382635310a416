"""Consumer-group APIs: translate Kafka messages to the group coordinator and back.

FindCoordinator hashes the group id over the ``__consumer_offsets``
partitions (creating the topic on first use) and answers with that
partition's leader. Every other group API is answered by the coordinating
broker, or NOT_COORDINATOR so the client looks the coordinator up again.
FindCoordinator key type 1 (a transactional id) is answered by ``handlers.txn``.
"""

from __future__ import annotations

import time
from typing import Any

from kio.schema.errors import ErrorCode

from ..errors import JournalClosed, NonEmptyGroup, TopicError
from ..groups.coordinator import OFFSETS_TOPIC, Shard, partition_for
from ..groups.state import GroupState, OffsetEntry
from ..ordering import CURRENT_TURN
from ..protocol.build import mk, nested, response_class
from ..security.acls import Operation
from ..security.session import current_listener
from . import authz, txn
from .authz import GROUP, TOPIC
from .context import CLIENT, BrokerContext

FIND_COORDINATOR, JOIN, HEARTBEAT, LEAVE, SYNC = 10, 11, 12, 13, 14
OFFSET_COMMIT, OFFSET_FETCH, DESCRIBE, LIST, DELETE, OFFSET_DELETE = 8, 9, 15, 16, 42, 47
NO_OPS = -2147483648  # authorized_operations omitted


def _release_turn() -> None:
    """Group calls may wait for a whole rebalance: never hold up later requests on the connection."""
    turn = CURRENT_TURN.get()
    if turn is not None:
        turn.release()


def _ms(value: Any) -> int:
    return int(value.total_seconds() * 1000) if hasattr(value, "total_seconds") else int(value)


async def _coordinating(ctx: BrokerContext, group_id: str,
                       operation: Operation = Operation.READ) -> tuple[Shard | None, ErrorCode]:
    """The group's shard here, or the error that says why not (not authorized, empty id, or ask another broker).

    Authorization comes first, so a principal without the group's ACL learns
    nothing about it, not even where it is coordinated.
    """
    if not authz.allowed(ctx, operation, GROUP, group_id):
        return None, ErrorCode.group_authorization_failed
    if not group_id:
        return None, ErrorCode.invalid_group_id
    shard = await ctx.groups.shard_for(group_id)
    return shard, ErrorCode.none if shard is not None else ErrorCode.not_coordinator


# ---- FindCoordinator --------------------------------------------------------------------

async def find_coordinator(ctx: BrokerContext, version: int, req: Any) -> Any:
    cls = response_class(FIND_COORDINATOR, version)
    key_type = getattr(req, "key_type", 0)
    keys = list(req.coordinator_keys) if version >= 4 else [req.key]
    found = [await _locate(ctx, key, key_type) for key in keys]
    if version >= 4:
        coord_cls = nested(cls, "Coordinator")
        return mk(cls, coordinators=tuple(
            mk(coord_cls, key=k, node_id=n, host=h, port=p, error_code=e, error_message=m)
            for k, (e, m, n, h, p) in zip(keys, found, strict=True)))
    e, m, n, h, p = found[0]
    return mk(cls, error_code=e, error_message=m, node_id=n, host=h, port=p)


async def _locate(ctx: BrokerContext, key: str, key_type: int) -> tuple[ErrorCode, str | None, int, str, int]:
    if key_type == 1:
        return await txn.locate_coordinator(ctx, key)
    if key_type != 0:
        return ErrorCode.invalid_request, f"coordinator key type {key_type} is not supported", -1, "", -1
    if not authz.allowed(ctx, Operation.DESCRIBE, GROUP, key):
        return ErrorCode.group_authorization_failed, "not authorized to describe the group", -1, "", -1
    if not key:
        return ErrorCode.invalid_group_id, "empty group id", -1, "", -1
    try:
        await ctx.ensure_offsets_topic()
    except TopicError as exc:
        return ErrorCode.coordinator_not_available, exc.message, -1, "", -1
    info = ctx.state().topics.get(OFFSETS_TOPIC)
    if info is None:
        return ErrorCode.coordinator_not_available, None, -1, "", -1
    leader = info.partitions[partition_for(key, len(info.partitions))].leader
    broker = ctx.state().brokers.get(leader)
    address = broker.endpoint(current_listener()) if broker is not None else None
    if broker is None or broker.draining or address is None:
        return ErrorCode.coordinator_not_available, None, -1, "", -1
    return ErrorCode.none, None, leader, address[0], address[1]


# ---- membership --------------------------------------------------------------------------

async def join_group(ctx: BrokerContext, version: int, req: Any) -> Any:
    _release_turn()
    cls = response_class(JOIN, version)
    member_cls = nested(cls, "JoinGroupResponseMember")

    def answer(code: ErrorCode, member_id: str = "", **kw: Any) -> Any:
        kw.setdefault("protocol_name", None if version >= 7 else "")
        return mk(cls, error_code=code, member_id=member_id, generation_id=kw.pop("generation_id", -1),
                  leader=kw.pop("leader", ""), members=kw.pop("members", ()), **kw)

    shard, code = await _coordinating(ctx, req.group_id)
    if shard is None:
        return answer(code, req.member_id)
    client_id, host = CLIENT.get()
    session_ms = _ms(req.session_timeout)
    try:
        reply = await shard.join(
            req.group_id, member_id=req.member_id, instance_id=getattr(req, "group_instance_id", None),
            client_id=client_id, client_host=host, session_timeout_ms=session_ms,
            rebalance_timeout_ms=_ms(getattr(req, "rebalance_timeout", session_ms)),
            protocol_type=req.protocol_type, protocols=[(p.name, p.metadata) for p in req.protocols],
            require_known_member=version >= 4,
        )
    except JournalClosed:
        return answer(ErrorCode.not_coordinator, req.member_id)
    members = tuple(mk(member_cls, member_id=m, group_instance_id=i, metadata=meta) for m, i, meta in reply.members)
    name = reply.protocol_name if version >= 7 else (reply.protocol_name or "")
    return answer(reply.error, reply.member_id, generation_id=reply.generation, protocol_type=reply.protocol_type,
                  protocol_name=name, leader=reply.leader, members=members, skip_assignment=reply.skip_assignment)


async def sync_group(ctx: BrokerContext, version: int, req: Any) -> Any:
    _release_turn()
    cls = response_class(SYNC, version)
    shard, code = await _coordinating(ctx, req.group_id)
    if shard is None:
        return mk(cls, error_code=code, assignment=b"")
    try:
        reply = await shard.sync(
            req.group_id, member_id=req.member_id, instance_id=getattr(req, "group_instance_id", None),
            generation=req.generation_id, protocol_type=getattr(req, "protocol_type", None),
            protocol_name=getattr(req, "protocol_name", None),
            assignments={a.member_id: a.assignment for a in req.assignments},
        )
    except JournalClosed:
        return mk(cls, error_code=ErrorCode.not_coordinator, assignment=b"")
    return mk(cls, error_code=reply.error, protocol_type=reply.protocol_type, protocol_name=reply.protocol_name,
              assignment=reply.assignment)


async def heartbeat(ctx: BrokerContext, version: int, req: Any) -> Any:
    cls = response_class(HEARTBEAT, version)
    shard, code = await _coordinating(ctx, req.group_id)
    if shard is None:
        return mk(cls, error_code=code)
    code = await shard.heartbeat(req.group_id, member_id=req.member_id,
                                 instance_id=getattr(req, "group_instance_id", None), generation=req.generation_id)
    return mk(cls, error_code=code)


async def leave_group(ctx: BrokerContext, version: int, req: Any) -> Any:
    _release_turn()
    cls = response_class(LEAVE, version)
    if version >= 3:
        leaving = [(m.member_id, m.group_instance_id) for m in req.members]
    else:
        leaving = [(req.member_id, None)]
    shard, code = await _coordinating(ctx, req.group_id)
    if shard is None:
        return mk(cls, error_code=code, members=())
    try:
        codes = await shard.leave(req.group_id, leaving)
    except JournalClosed:
        return mk(cls, error_code=ErrorCode.not_coordinator, members=())
    if version >= 3:
        member_cls = nested(cls, "MemberResponse")
        return mk(cls, error_code=ErrorCode.none, members=tuple(
            mk(member_cls, member_id=m, group_instance_id=i, error_code=c)
            for (m, i), c in zip(leaving, codes, strict=True)))
    return mk(cls, error_code=codes[0])


# ---- offsets -------------------------------------------------------------------------------

async def offset_commit(ctx: BrokerContext, version: int, req: Any) -> Any:
    _release_turn()
    cls = response_class(OFFSET_COMMIT, version)
    topic_cls = nested(cls, "OffsetCommitResponseTopic")
    part_cls = nested(cls, "OffsetCommitResponsePartition")
    state = ctx.state()
    codes: dict[tuple[str, int], ErrorCode] = {}
    valid: list[tuple[str, int, OffsetEntry]] = []
    ts = int(time.time() * 1000)
    for topic in req.topics:
        info = state.topics.get(topic.name)
        may_read = authz.allowed(ctx, Operation.READ, TOPIC, topic.name)
        for p in topic.partitions:
            key = (topic.name, p.partition_index)
            meta = p.committed_metadata
            if not may_read:
                codes[key] = ErrorCode.topic_authorization_failed
            elif info is None or not 0 <= p.partition_index < len(info.partitions):
                codes[key] = ErrorCode.unknown_topic_or_partition
            elif meta is not None and len(meta.encode()) > ctx.config.offset_metadata_max_bytes:
                codes[key] = ErrorCode.offset_metadata_too_large
            else:
                codes[key] = ErrorCode.none
                valid.append((topic.name, p.partition_index,
                              OffsetEntry(p.committed_offset, getattr(p, "committed_leader_epoch", -1), meta, ts)))
    shard, group_code = await _coordinating(ctx, req.group_id)
    if shard is not None:
        try:
            group_code = await shard.commit(
                req.group_id, member_id=req.member_id, instance_id=getattr(req, "group_instance_id", None),
                generation=req.generation_id_or_member_epoch, offsets=valid)
        except JournalClosed:
            group_code = ErrorCode.not_coordinator
    if group_code != ErrorCode.none:
        codes = {k: group_code if c == ErrorCode.none else c for k, c in codes.items()}
    return mk(cls, topics=tuple(
        mk(topic_cls, name=t.name, partitions=tuple(
            mk(part_cls, partition_index=p.partition_index, error_code=codes[(t.name, p.partition_index)])
            for p in t.partitions))
        for t in req.topics))


async def offset_fetch(ctx: BrokerContext, version: int, req: Any) -> Any:
    cls = response_class(OFFSET_FETCH, version)
    if version >= 8:
        group_cls = nested(cls, "OffsetFetchResponseGroup")
        groups = []
        for g in req.groups:
            code, topics = await _fetch_group(ctx, cls, g.group_id, g.topics, "OffsetFetchResponseTopics",
                                              "OffsetFetchResponsePartitions",
                                              member=(getattr(g, "member_id", None) or "",
                                                      getattr(g, "member_epoch", -1)),
                                              require_stable=req.require_stable)
            groups.append(mk(group_cls, group_id=g.group_id, topics=topics, error_code=code))
        return mk(cls, groups=tuple(groups))
    code, topics = await _fetch_group(ctx, cls, req.group_id, req.topics, "OffsetFetchResponseTopic",
                                      "OffsetFetchResponsePartition", per_partition_error=version < 2,
                                      require_stable=getattr(req, "require_stable", False))
    return mk(cls, topics=topics, error_code=code)


async def _fetch_group(ctx: BrokerContext, cls: Any, group_id: str, wanted: Any, topic_name: str, part_name: str,
                       *, per_partition_error: bool = False,
                       member: tuple[str, int] = ("", -1),
                       require_stable: bool = False) -> tuple[ErrorCode, tuple[Any, ...]]:
    """The group's committed offsets; with ``require_stable`` (v7+, KIP-447) a partition that an open
    transaction has offsets for answers UNSTABLE_OFFSET_COMMIT, so the consumer retries instead of
    starting from an offset that transaction may still replace (exactly-once v2's new owner)."""
    topic_cls, part_cls = nested(cls, topic_name), nested(cls, part_name)
    shard, code = await _coordinating(ctx, group_id, Operation.DESCRIBE)
    group = shard.groups.get(group_id) if shard is not None else None
    if group is not None and group.consumer is not None:  # v9: a member reads at its own epoch (KIP-848)
        code = group.consumer.check_member_epoch(*member)
        if code != ErrorCode.none:
            return code, ()
    offsets = shard.fetch_offsets(group_id) if shard is not None else {}
    unstable = shard.pending_txn_partitions(group_id) if shard is not None and require_stable else set()
    if wanted is None:  # every committed partition of the topics the principal may describe
        by_topic: dict[str, list[int]] = {}
        for t, p in sorted(offsets):
            if authz.allowed(ctx, Operation.DESCRIBE, TOPIC, t):
                by_topic.setdefault(t, []).append(p)
        requested = list(by_topic.items())
    else:
        requested = [(t.name, list(t.partition_indexes)) for t in wanted]
    if code != ErrorCode.none and not per_partition_error:
        return code, ()
    topics = []
    for name, parts in requested:
        rows = []
        may_describe = authz.allowed(ctx, Operation.DESCRIBE, TOPIC, name)
        for p in parts:
            e = offsets.get((name, p)) if may_describe and (name, p) not in unstable else None
            part_code = ErrorCode.unstable_offset_commit if may_describe and (name, p) in unstable else code
            rows.append(mk(part_cls, partition_index=p, committed_offset=e.offset if e else -1,
                           committed_leader_epoch=e.leader_epoch if e else -1,
                           metadata=(e.metadata or "") if e else "",
                           error_code=part_code if may_describe else ErrorCode.topic_authorization_failed))
        topics.append(mk(topic_cls, name=name, partitions=tuple(rows)))
    return code, tuple(topics)


async def offset_delete(ctx: BrokerContext, version: int, req: Any) -> Any:
    cls = response_class(OFFSET_DELETE, version)
    topic_cls = nested(cls, "OffsetDeleteResponseTopic")
    part_cls = nested(cls, "OffsetDeleteResponsePartition")
    shard, code = await _coordinating(ctx, req.group_id, Operation.DELETE)
    if shard is None:
        return mk(cls, error_code=code, topics=())
    state = ctx.state()
    readable = {t.name for t in req.topics if authz.allowed(ctx, Operation.READ, TOPIC, t.name)}
    wanted = [(t.name, p.partition_index) for t in req.topics for p in t.partitions if t.name in readable]
    try:
        codes = await shard.delete_offsets(req.group_id, [w for w in wanted if w[0] in state.topics])
    except KeyError:
        return mk(cls, error_code=ErrorCode.group_id_not_found, topics=())
    except NonEmptyGroup:
        return mk(cls, error_code=ErrorCode.non_empty_group, topics=())
    except JournalClosed:
        return mk(cls, error_code=ErrorCode.not_coordinator, topics=())
    return mk(cls, error_code=ErrorCode.none, topics=tuple(
        mk(topic_cls, name=t.name, partitions=tuple(
            mk(part_cls, partition_index=p.partition_index,
               error_code=codes.get((t.name, p.partition_index), ErrorCode.unknown_topic_or_partition)
               if t.name in readable else ErrorCode.topic_authorization_failed)
            for p in t.partitions))
        for t in req.topics))


# ---- administration ------------------------------------------------------------------------

async def list_groups(ctx: BrokerContext, version: int, req: Any) -> Any:
    cls = response_class(LIST, version)
    listed_cls = nested(cls, "ListedGroup")
    states = {s.lower() for s in getattr(req, "states_filter", ()) or ()}
    types = {t.lower() for t in getattr(req, "types_filter", ()) or ()}
    out = []
    # Kafka's rule: DESCRIBE on the cluster lists every group, otherwise only those the principal may describe
    everything = authz.allowed_on_cluster(ctx, Operation.DESCRIBE)
    for g in ctx.groups.all_groups():
        if not everything and not authz.allowed(ctx, Operation.DESCRIBE, GROUP, g.group_id):
            continue
        state = g.state_name
        if g.state is GroupState.DEAD or (states and state.lower() not in states):
            continue
        if types and g.group_type not in types:
            continue
        out.append(mk(listed_cls, group_id=g.group_id, protocol_type=g.listed_protocol_type,
                      group_state=state, group_type=g.group_type))
    return mk(cls, error_code=ErrorCode.none, groups=tuple(out))


async def describe_groups(ctx: BrokerContext, version: int, req: Any) -> Any:
    cls = response_class(DESCRIBE, version)
    group_cls = nested(cls, "DescribedGroup")
    member_cls = nested(cls, "DescribedGroupMember")
    out = []
    for group_id in req.groups:
        shard, code = await _coordinating(ctx, group_id, Operation.DESCRIBE)
        if shard is None:
            out.append(mk(group_cls, error_code=code, group_id=group_id, group_state="", protocol_type="",
                          protocol_data="", members=(), authorized_operations=NO_OPS))
            continue
        g = shard.groups.get(group_id)
        if g is None:
            out.append(mk(group_cls, group_id=group_id, group_state=GroupState.DEAD.value, protocol_type="",
                          protocol_data="", members=(), authorized_operations=NO_OPS))
            continue
        if g.consumer is not None:  # a consumer-protocol group: its members, no classic metadata
            out.append(mk(group_cls, group_id=group_id, group_state=g.state_name, protocol_type="consumer",
                          protocol_data=g.consumer.assignor, members=tuple(
                              mk(member_cls, member_id=m.member_id, group_instance_id=m.instance_id,
                                 client_id=m.client_id, client_host=m.client_host, member_metadata=b"",
                                 member_assignment=b"") for m in g.consumer.members.values()),
                          authorized_operations=authz.authorized_operations(
                              ctx, GROUP, group_id, getattr(req, "include_authorized_operations", False))))
            continue
        stable = g.state is GroupState.STABLE  # as Kafka: metadata and assignments only when settled
        members = tuple(
            mk(member_cls, member_id=m.member_id, group_instance_id=m.instance_id, client_id=m.client_id,
               client_host=m.client_host, member_metadata=m.metadata_for(g.protocol) if stable else b"",
               member_assignment=m.assignment if stable else b"")
            for m in g.members.values())
        out.append(mk(group_cls, group_id=group_id, group_state=g.state.value, protocol_type=g.protocol_type or "",
                      protocol_data=(g.protocol or "") if stable else "", members=members,
                      authorized_operations=authz.authorized_operations(
                          ctx, GROUP, group_id, getattr(req, "include_authorized_operations", False))))
    return mk(cls, groups=tuple(out))


async def delete_groups(ctx: BrokerContext, version: int, req: Any) -> Any:
    cls = response_class(DELETE, version)
    result_cls = nested(cls, "DeletableGroupResult")
    out = []
    for group_id in req.groups_names:
        shard, code = await _coordinating(ctx, group_id, Operation.DELETE)
        if shard is not None:
            try:
                code = await shard.delete_group(group_id)
            except JournalClosed:
                code = ErrorCode.not_coordinator
        out.append(mk(result_cls, group_id=group_id, error_code=code))
    return mk(cls, results=tuple(out))
