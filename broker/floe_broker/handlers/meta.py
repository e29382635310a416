"""ApiVersions, Metadata and DescribeCluster."""

from __future__ import annotations

import uuid
from typing import Any

from kio.schema.errors import ErrorCode

from ..cluster.metadata import ClusterState
from ..errors import TopicError
from ..protocol.build import ZERO_UUID, mk, nested, response_class
from ..security.acls import CLUSTER_NAME
from ..security.session import current_listener
from . import authz
from .authz import CLUSTER, DESCRIBE, TOPIC
from .context import BrokerContext

API_VERSIONS, METADATA, DESCRIBE_CLUSTER = 18, 3, 60


def api_versions(version: int, supported: dict[int, tuple[int, int]], error: ErrorCode = ErrorCode.none) -> Any:
    cls = response_class(API_VERSIONS, version)
    api = nested(cls, "ApiVersion")
    keys = tuple(mk(api, api_key=k, min_version=lo, max_version=hi) for k, (lo, hi) in sorted(supported.items()))
    return mk(cls, error_code=error, api_keys=keys)


def _topic_uuid(topic_id: str) -> uuid.UUID:
    return uuid.UUID(topic_id)


def endpoints(state: ClusterState) -> list[tuple[int, str, int]]:
    """(node, host, port) of every broker on the listener this request came in on (Kafka's rule).

    A broker without that listener is left out, as Kafka does; outside a
    connection (in-process tests) each broker's primary address is used.
    """
    listener = current_listener()
    out = []
    for n, b in sorted(state.brokers.items()):
        address = b.endpoint(listener)
        if address is not None:
            out.append((n, address[0], address[1]))
    return out


async def metadata(ctx: BrokerContext, version: int, req: Any) -> Any:
    cls = response_class(METADATA, version)
    broker_cls = nested(cls, "MetadataResponseBroker")
    topic_cls = nested(cls, "MetadataResponseTopic")
    part_cls = nested(cls, "MetadataResponsePartition")

    state = ctx.state()
    if req.topics is None:
        # every topic the principal may describe; the others are not mentioned at all
        names: list[str | None] = [n for n, t in state.topics.items()
                                   if not t.internal and authz.allowed(ctx, DESCRIBE, TOPIC, n)]
        wanted_ids: dict[str, uuid.UUID] = {}
    else:
        names = []
        wanted_ids = {}
        for t in req.topics:
            if getattr(t, "name", None):
                names.append(t.name)
            elif getattr(t, "topic_id", None) and t.topic_id != ZERO_UUID:
                found = state.topic_by_id(str(t.topic_id))
                if found is not None and not authz.allowed(ctx, DESCRIBE, TOPIC, found.name):
                    found = None  # an id the principal may not describe is answered as unknown
                names.append(found.name if found else None)
                if found is None:
                    wanted_ids[f"?{t.topic_id}"] = t.topic_id
            else:
                names.append(None)

    allow_auto = getattr(req, "allow_auto_topic_creation", True) and ctx.config.auto_create_topics
    topics = []
    for name in names:
        if name is None:
            continue
        if req.topics is not None and not authz.allowed(ctx, DESCRIBE, TOPIC, name):
            topics.append(_refused(topic_cls, name))
            continue
        if name not in state.topics and allow_auto:
            if not authz.may_create_topic(ctx, name):
                topics.append(_refused(topic_cls, name))
                continue
            try:
                await ctx.create_topic(name, ctx.config.default_partitions, {})
            except TopicError:
                pass
            state = ctx.state()
        t = state.topics.get(name)
        if t is None:
            topics.append(mk(topic_cls, error_code=ErrorCode.unknown_topic_or_partition, name=name,
                             topic_id=ZERO_UUID, is_internal=False, partitions=(),
                             topic_authorized_operations=-2147483648))
            continue
        parts = []
        for i, p in enumerate(t.partitions):
            alive = p.leader in state.brokers
            parts.append(
                mk(
                    part_cls,
                    error_code=ErrorCode.none if alive else ErrorCode.leader_not_available,
                    partition_index=i,
                    leader_id=p.leader if alive else -1,
                    leader_epoch=p.epoch,
                    replica_nodes=(p.leader,) if alive else (),
                    isr_nodes=(p.leader,) if alive else (),
                    offline_replicas=(),
                )
            )
        topics.append(
            mk(topic_cls, error_code=ErrorCode.none, name=name, topic_id=_topic_uuid(t.topic_id),
               is_internal=t.internal, partitions=tuple(parts),
               topic_authorized_operations=authz.authorized_operations(
                   ctx, TOPIC, name, getattr(req, "include_topic_authorized_operations", False)))
        )
    for _, tid in wanted_ids.items():
        topics.append(mk(topic_cls, error_code=ErrorCode.unknown_topic_id, name=None, topic_id=tid,
                         is_internal=False, partitions=()))
    brokers = tuple(mk(broker_cls, node_id=n, host=host, port=port, rack=None)
                    for n, host, port in endpoints(state))
    return mk(
        cls,
        brokers=brokers,
        cluster_id=ctx.cluster_id,
        controller_id=controller_id(ctx),
        topics=tuple(topics),
        cluster_authorized_operations=authz.authorized_operations(
            ctx, CLUSTER, CLUSTER_NAME, getattr(req, "include_cluster_authorized_operations", False)),
    )


def _refused(topic_cls: Any, name: str) -> Any:
    """A named topic the principal may not describe (or create): Kafka's answer, the same whether it exists."""
    return mk(topic_cls, error_code=ErrorCode.topic_authorization_failed, name=name, topic_id=ZERO_UUID,
              is_internal=False, partitions=(), topic_authorized_operations=-2147483648)


def controller_id(ctx: BrokerContext) -> int:
    return ctx.controller_node()


async def describe_cluster(ctx: BrokerContext, version: int, req: Any) -> Any:
    cls = response_class(DESCRIBE_CLUSTER, version)
    broker_cls = nested(cls, "DescribeClusterBroker")
    state = ctx.state()
    brokers = tuple(mk(broker_cls, broker_id=n, host=host, port=port, rack=None, is_fenced=False)
                    for n, host, port in endpoints(state))
    return mk(
        cls,
        error_code=ErrorCode.none,
        error_message=None,
        endpoint_type=1,
        cluster_id=ctx.cluster_id,
        controller_id=controller_id(ctx),
        brokers=brokers,
        cluster_authorized_operations=authz.authorized_operations(
            ctx, CLUSTER, CLUSTER_NAME, getattr(req, "include_cluster_authorized_operations", False)),
    )
