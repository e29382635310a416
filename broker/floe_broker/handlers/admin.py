"""Topic administration: CreateTopics, DeleteTopics, CreatePartitions, configs.

Topic configs Floe acts on: ``retention.ms``, ``retention.bytes``,
``max.message.bytes``. Other keys are stored and described but have no
effect (they are accepted so tools that set e.g. ``cleanup.policy=delete`` do
not fail). Replication factor is accepted and ignored: durability comes from
the object store, there are no broker-side replicas.
"""

from __future__ import annotations

import uuid
from typing import Any

from kio.schema.errors import ErrorCode

from ..errors import TopicError
from ..protocol.build import ZERO_UUID, mk, nested, response_class
from ..security.acls import Operation
from . import authz
from .authz import ALTER, ALTER_CONFIGS, DELETE, TOPIC
from .context import BrokerContext

CREATE_TOPICS, DELETE_TOPICS, CREATE_PARTITIONS = 19, 20, 37
DESCRIBE_CONFIGS, INCREMENTAL_ALTER_CONFIGS = 32, 44
RESOURCE_TOPIC, RESOURCE_BROKER = 2, 4

# name -> (default from broker config attribute, documentation)
TOPIC_CONFIGS = {
    "retention.ms": ("retention_ms", "How long data is kept before whole segments are deleted."),
    "retention.bytes": ("retention_bytes", "Size a partition may reach before old segments are deleted."),
    "max.message.bytes": ("max_message_bytes", "Largest record batch accepted."),
    "cleanup.policy": (None, "Only 'delete' is implemented."),
}
DEFAULT_SOURCE, TOPIC_SOURCE, STATIC_BROKER_SOURCE = 5, 1, 4


def _message(exc: Exception) -> str:
    return str(exc)


async def create_topics(ctx: BrokerContext, version: int, req: Any) -> Any:
    cls = response_class(CREATE_TOPICS, version)
    result_cls = nested(cls, "CreatableTopicResult")
    out = []
    for t in req.topics:
        partitions = t.num_partitions if t.num_partitions > 0 else ctx.config.default_partitions
        configs = {c.name: c.value for c in t.configs if c.value is not None}
        code, message, topic_id = ErrorCode.none, None, ZERO_UUID
        try:
            if not authz.may_create_topic(ctx, t.name):
                raise TopicError(ErrorCode.topic_authorization_failed, f"may not create topic {t.name!r}")
            if t.assignments:
                partitions = len(t.assignments)
            _validate_configs(configs)
            await ctx.create_topic(t.name, partitions, configs, validate_only=req.validate_only)
            info = ctx.state().topics.get(t.name)
            if info is not None:
                topic_id = uuid.UUID(info.topic_id)
        except TopicError as exc:
            code, message = ErrorCode(exc.code), exc.message
        out.append(
            mk(result_cls, name=t.name, topic_id=topic_id, error_code=code, error_message=message,
               num_partitions=partitions if code == ErrorCode.none else -1,
               replication_factor=1 if code == ErrorCode.none else -1, configs=())
        )
    return mk(cls, topics=tuple(out))


def _validate_configs(configs: dict[str, str]) -> None:
    for key in ("retention.ms", "retention.bytes", "max.message.bytes"):
        if key in configs:
            try:
                int(configs[key])
            except ValueError:
                raise TopicError(ErrorCode.invalid_config, f"{key} must be an integer, got {configs[key]!r}") from None
    policy = configs.get("cleanup.policy")
    if policy is not None and policy != "delete":
        raise TopicError(ErrorCode.invalid_config, f"cleanup.policy={policy!r} is not supported (only 'delete')")


async def delete_topics(ctx: BrokerContext, version: int, req: Any) -> Any:
    cls = response_class(DELETE_TOPICS, version)
    result_cls = nested(cls, "DeletableTopicResult")
    out = []
    names: list[tuple[str | None, Any]] = []
    if getattr(req, "topics", None):
        for t in req.topics:
            name = t.name
            if name is None and t.topic_id is not None:
                found = ctx.state().topic_by_id(str(t.topic_id))
                name = found.name if found else None
            names.append((name, t.topic_id))
    else:
        names = [(n, None) for n in req.topic_names]
    for name, topic_id in names:
        code, message = ErrorCode.none, None
        info = ctx.state().topics.get(name) if name else None
        try:
            if name is not None and not authz.allowed(ctx, DELETE, TOPIC, name):
                info = None  # whether it exists is not the principal's business
                raise TopicError(ErrorCode.topic_authorization_failed, f"may not delete topic {name!r}")
            if info is None:
                raise TopicError(
                    ErrorCode.unknown_topic_id if name is None else ErrorCode.unknown_topic_or_partition,
                    f"topic {name or topic_id} does not exist",
                )
            await ctx.delete_topic(info.name)
        except TopicError as exc:
            code, message = ErrorCode(exc.code), exc.message
        out.append(mk(result_cls, name=name, topic_id=uuid.UUID(info.topic_id) if info else (topic_id or ZERO_UUID),
                      error_code=code, error_message=message))
    return mk(cls, responses=tuple(out))


async def create_partitions(ctx: BrokerContext, version: int, req: Any) -> Any:
    cls = response_class(CREATE_PARTITIONS, version)
    result_cls = nested(cls, "CreatePartitionsTopicResult")
    out = []
    for t in req.topics:
        code, message = ErrorCode.none, None
        try:
            if not authz.allowed(ctx, ALTER, TOPIC, t.name):
                raise TopicError(ErrorCode.topic_authorization_failed, f"may not alter topic {t.name!r}")
            await ctx.create_partitions(t.name, t.count, validate_only=req.validate_only)
        except TopicError as exc:
            code, message = ErrorCode(exc.code), exc.message
        out.append(mk(result_cls, name=t.name, error_code=code, error_message=message))
    return mk(cls, results=tuple(out))


def effective_configs(ctx: BrokerContext, topic: str) -> dict[str, tuple[str, int]]:
    """key -> (value, config source) for a topic, topic overrides first."""
    info = ctx.state().topics.get(topic)
    out: dict[str, tuple[str, int]] = {}
    for key, (attr, _) in TOPIC_CONFIGS.items():
        default = str(getattr(ctx.config, attr)) if attr else "delete"
        out[key] = (default, DEFAULT_SOURCE)
    if info:
        for key, value in info.configs.items():
            out[key] = (value, TOPIC_SOURCE)
    return out


async def describe_configs(ctx: BrokerContext, version: int, req: Any) -> Any:
    cls = response_class(DESCRIBE_CONFIGS, version)
    result_cls = nested(cls, "DescribeConfigsResult")
    entry_cls = nested(cls, "DescribeConfigsResourceResult")
    out = []
    for res in req.resources:
        keys = set(res.configuration_keys) if res.configuration_keys else None
        refused = _refused(ctx, Operation.DESCRIBE_CONFIGS, res.resource_type, res.resource_name)
        if refused is not None:
            out.append(mk(result_cls, error_code=refused, error_message="not authorized",
                          resource_type=res.resource_type, resource_name=res.resource_name, configs=()))
            continue
        if res.resource_type == RESOURCE_TOPIC:
            if res.resource_name not in ctx.state().topics:
                out.append(mk(result_cls, error_code=ErrorCode.unknown_topic_or_partition,
                              error_message=f"topic {res.resource_name} does not exist",
                              resource_type=res.resource_type, resource_name=res.resource_name, configs=()))
                continue
            values = effective_configs(ctx, res.resource_name)
        elif res.resource_type == RESOURCE_BROKER:
            values = {
                "log.flush.interval.ms": (str(ctx.config.flush_interval_ms), STATIC_BROKER_SOURCE),
                "message.max.bytes": (str(ctx.config.max_message_bytes), STATIC_BROKER_SOURCE),
                "num.partitions": (str(ctx.config.default_partitions), STATIC_BROKER_SOURCE),
                "auto.create.topics.enable": (str(ctx.config.auto_create_topics).lower(), STATIC_BROKER_SOURCE),
            }
        else:
            out.append(mk(result_cls, error_code=ErrorCode.invalid_request,
                          error_message=f"resource type {res.resource_type} is not supported",
                          resource_type=res.resource_type, resource_name=res.resource_name, configs=()))
            continue
        entries = tuple(
            mk(entry_cls, name=k, value=v, read_only=res.resource_type != RESOURCE_TOPIC, config_source=src,
               is_default=src == DEFAULT_SOURCE, is_sensitive=False, synonyms=(), config_type=0,
               documentation=TOPIC_CONFIGS.get(k, (None, None))[1])
            for k, (v, src) in sorted(values.items())
            if keys is None or k in keys
        )
        out.append(mk(result_cls, error_code=ErrorCode.none, error_message=None, resource_type=res.resource_type,
                      resource_name=res.resource_name, configs=entries))
    return mk(cls, results=tuple(out))


async def incremental_alter_configs(ctx: BrokerContext, version: int, req: Any) -> Any:
    cls = response_class(INCREMENTAL_ALTER_CONFIGS, version)
    result_cls = nested(cls, "AlterConfigsResourceResponse")
    out = []
    for res in req.resources:
        code, message = ErrorCode.none, None
        try:
            refused = _refused(ctx, ALTER_CONFIGS, res.resource_type, res.resource_name)
            if refused is not None:
                raise TopicError(refused, "not authorized")
            if res.resource_type != RESOURCE_TOPIC:
                raise TopicError(ErrorCode.invalid_request, "only topic configs can be altered")
            changes = [(c.name, c.config_operation, c.value) for c in res.configs]
            _validate_configs({k: v for k, op, v in changes if op == 0 and v is not None})
            await ctx.alter_topic_configs(res.resource_name, changes, validate_only=req.validate_only)
        except TopicError as exc:
            code, message = ErrorCode(exc.code), exc.message
        out.append(mk(result_cls, error_code=code, error_message=message, resource_type=res.resource_type,
                      resource_name=res.resource_name))
    return mk(cls, responses=tuple(out))


def _refused(ctx: BrokerContext, operation: Operation, resource_type: int, name: str) -> ErrorCode | None:
    """The authorization error for a config resource (a topic, or a broker: the cluster), or None if allowed."""
    if resource_type == RESOURCE_TOPIC:
        return None if authz.allowed(ctx, operation, TOPIC, name) else ErrorCode.topic_authorization_failed
    if resource_type == RESOURCE_BROKER:
        return None if authz.allowed_on_cluster(ctx, operation) else ErrorCode.cluster_authorization_failed
    return None
