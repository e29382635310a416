"""Topic administration and configs: CreateTopics, DeleteTopics, CreatePartitions, Describe/AlterConfigs.

Configs are Kafka's (``floe_broker.configs``): every topic config and the
broker configs clients read, with their types, sources and synonyms; which of
them Floe acts on is said there and in docs/architecture.md#topic-and-broker-configs.
Unknown names and invalid values are refused with INVALID_CONFIG and Kafka's
message. Broker configs are altered per broker (resource name: its node id) or
cluster-wide (resource name empty, ``kafka-configs --entity-default``), stored
in the cluster metadata. Replication factor is accepted and ignored:
durability comes from the object store, there are no broker-side replicas.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Mapping
from typing import Any

from kio.schema.errors import ErrorCode

from floe_api.internal import AlterBrokerConfigs, ConfigChange

from ..configs import CLUSTER_DEFAULT, ConfigView, Described, InvalidConfig, Source
from ..configs.resolve import incremental, replacement
from ..errors import NotController, RpcError, TopicError
from ..protocol.build import ZERO_UUID, mk, nested, response_class
from ..security.acls import Operation
from . import authz
from .authz import ALTER, ALTER_CONFIGS, DELETE, TOPIC
from .context import BrokerContext

CREATE_TOPICS, DELETE_TOPICS, CREATE_PARTITIONS = 19, 20, 37
DESCRIBE_CONFIGS, ALTER_CONFIGS_API, INCREMENTAL_ALTER_CONFIGS, LIST_CONFIG_RESOURCES = 32, 33, 44, 74
RESOURCE_TOPIC, RESOURCE_BROKER, RESOURCE_BROKER_LOGGER, RESOURCE_CLIENT_METRICS, RESOURCE_GROUP = 2, 4, 8, 16, 32


def config_view(ctx: BrokerContext, node: int | None = None) -> ConfigView:
    """The configs as broker ``node`` (default: this one) sees them, from its flags and the metadata."""
    node = ctx.node_id if node is None else node
    state = ctx.state()
    return ConfigView(ctx.config, state.broker_configs, node, advertised_listeners(ctx, node))


def advertised_listeners(ctx: BrokerContext, node: int) -> str | None:
    """``advertised.listeners`` as Kafka writes it, from what the broker registered."""
    info = ctx.state().brokers.get(node)
    if info is None:
        return None
    if not info.listeners:
        return f"PLAINTEXT://{info.host}:{info.port}"
    return ",".join(f"{name}://{host}:{port}" for name, (host, port) in info.listeners.items())


async def create_topics(ctx: BrokerContext, version: int, req: Any) -> Any:
    cls = response_class(CREATE_TOPICS, version)
    result_cls = nested(cls, "CreatableTopicResult")
    config_cls = nested(cls, "CreatableTopicConfigs") if version >= 5 else None
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
            await ctx.create_topic(t.name, partitions, configs, validate_only=req.validate_only)
            info = ctx.state().topics.get(t.name)
            if info is not None:
                topic_id = uuid.UUID(info.topic_id)
        except TopicError as exc:
            code, message = ErrorCode(exc.code), exc.message
        resolved = None
        if config_cls is not None and code == ErrorCode.none:
            # Kafka answers the created topic's configs; the Java AdminClient dereferences them.
            resolved = tuple(mk(config_cls, name=d.name, value=d.value, read_only=d.read_only,
                                config_source=d.source, is_sensitive=d.definition.sensitive)
                             for d in config_view(ctx).describe_topic(configs))
        out.append(
            mk(result_cls, name=t.name, topic_id=topic_id, error_code=code, error_message=message,
               num_partitions=partitions if code == ErrorCode.none else -1,
               replication_factor=1 if code == ErrorCode.none else -1, configs=resolved)
        )
    return mk(cls, topics=tuple(out))


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


async def describe_configs(ctx: BrokerContext, version: int, req: Any) -> Any:
    cls = response_class(DESCRIBE_CONFIGS, version)
    result_cls = nested(cls, "DescribeConfigsResult")
    entry_cls = nested(cls, "DescribeConfigsResourceResult")
    synonym_cls = nested(cls, "DescribeConfigsSynonym")
    synonyms = bool(getattr(req, "include_synonyms", False))
    documentation = bool(getattr(req, "include_documentation", False))
    out = []
    for res in req.resources:
        keys = list(res.configuration_keys) if res.configuration_keys else None
        try:
            refused = _refused(ctx, Operation.DESCRIBE_CONFIGS, res.resource_type, res.resource_name)
            if refused is not None:
                raise TopicError(refused, "not authorized")
            described = _describe(ctx, res.resource_type, res.resource_name, keys)
        except TopicError as exc:
            out.append(mk(result_cls, error_code=ErrorCode(exc.code), error_message=exc.message,
                          resource_type=res.resource_type, resource_name=res.resource_name, configs=()))
            continue
        entries = tuple(
            mk(entry_cls, name=d.name, value=d.value, read_only=d.read_only, config_source=d.source,
               is_default=d.is_default, is_sensitive=d.definition.sensitive,
               synonyms=tuple(mk(synonym_cls, name=n, value=v, source=s) for n, v, s in d.synonyms)
               if synonyms else (),
               config_type=d.definition.type,
               documentation=_documentation(d) if documentation else None)
            for d in described
        )
        out.append(mk(result_cls, error_code=ErrorCode.none, error_message=None, resource_type=res.resource_type,
                      resource_name=res.resource_name, configs=entries))
    return mk(cls, results=tuple(out))


def _describe(ctx: BrokerContext, resource_type: int, name: str, keys: list[str] | None) -> list[Described]:
    if resource_type == RESOURCE_TOPIC:
        info = ctx.state().topics.get(name)
        if info is None:
            raise TopicError(ErrorCode.unknown_topic_or_partition, f"topic {name} does not exist")
        return config_view(ctx).describe_topic(info.configs, keys)
    if resource_type == RESOURCE_BROKER:
        if name == CLUSTER_DEFAULT:  # the cluster-wide dynamic defaults only, as Kafka lists them
            found = config_view(ctx).describe_broker(keys)
            return [d for d in found if d.source is Source.DYNAMIC_DEFAULT_BROKER_CONFIG
                    or any(s is Source.DYNAMIC_DEFAULT_BROKER_CONFIG for _, _, s in d.synonyms)]
        return config_view(ctx, _broker_node(ctx, name)).describe_broker(keys)
    raise TopicError(ErrorCode.invalid_request, f"resource type {resource_type} is not supported")


def _documentation(d: Described) -> str:
    note = d.definition.note
    return f"{d.definition.doc} Floe: {note}." if note else d.definition.doc


def _broker_node(ctx: BrokerContext, name: str) -> int:
    """The node a broker resource names. Any registered broker is answered here: its dynamic configs and
    addresses come from the shared metadata, its flags are taken to be this broker's (a cluster shares them)."""
    try:
        node = int(name)
    except ValueError:
        raise TopicError(ErrorCode.invalid_request, f"Unexpected broker id {name!r}: not a number") from None
    if node != ctx.node_id and node not in ctx.state().brokers:
        raise TopicError(ErrorCode.invalid_request,
                         f"Unexpected broker id, expected {ctx.node_id} or empty string, but received {name}")
    return node


async def incremental_alter_configs(ctx: BrokerContext, version: int, req: Any) -> Any:
    cls = response_class(INCREMENTAL_ALTER_CONFIGS, version)
    result_cls = nested(cls, "AlterConfigsResourceResponse")
    out = []
    for res in req.resources:
        changes = [(c.name, c.config_operation, c.value) for c in res.configs]
        code, message = await _alter(ctx, res.resource_type, res.resource_name, req.validate_only,
                                     functools.partial(_incremental, changes))
        out.append(mk(result_cls, error_code=code, error_message=message, resource_type=res.resource_type,
                      resource_name=res.resource_name))
    return mk(cls, responses=tuple(out))


async def alter_configs(ctx: BrokerContext, version: int, req: Any) -> Any:
    """The legacy AlterConfigs (kafkajs, aiokafka, Sarama): the given configs replace all overrides."""
    cls = response_class(ALTER_CONFIGS_API, version)
    result_cls = nested(cls, "AlterConfigsResourceResponse")
    out = []
    for res in req.resources:
        given = {c.name: c.value for c in res.configs}
        code, message = await _alter(ctx, res.resource_type, res.resource_name, req.validate_only,
                                     functools.partial(_replacement, given))
        out.append(mk(result_cls, error_code=code, error_message=message, resource_type=res.resource_type,
                      resource_name=res.resource_name))
    return mk(cls, responses=tuple(out))


Resolver = Any  # (current overrides, effective values, broker resource or None) -> name -> value or None


def _incremental(changes: list[tuple[str, int, str | None]], current: Mapping[str, str],
                 effective: Mapping[str, str | None], broker: str | None) -> dict[str, str | None]:
    return incremental(current, changes, effective, broker_resource=broker)


def _replacement(given: Mapping[str, str | None], current: Mapping[str, str],
                 effective: Mapping[str, str | None], broker: str | None) -> dict[str, str | None]:
    return replacement(current, given, broker_resource=broker)


async def _alter(ctx: BrokerContext, resource_type: int, name: str, validate_only: bool,
                 resolve: Resolver) -> tuple[ErrorCode, str | None]:
    """Validate and apply one resource's config change; the (error code, message) to answer."""
    try:
        refused = _refused(ctx, ALTER_CONFIGS, resource_type, name)
        if refused is not None:
            raise TopicError(refused, "not authorized")
        if resource_type == RESOURCE_TOPIC:
            info = ctx.state().topics.get(name)
            if info is None:
                raise TopicError(ErrorCode.unknown_topic_or_partition, f"topic {name} does not exist")
            effective = {d.name: d.value for d in config_view(ctx).describe_topic(info.configs)}
            result = _resolved(resolve, info.configs, effective, None)
            await ctx.alter_topic_configs(name, [(k, 0 if v is not None else 1, v) for k, v in result.items()],
                                          validate_only=validate_only)
        elif resource_type == RESOURCE_BROKER:
            node = None if name == CLUSTER_DEFAULT else _broker_node(ctx, name)
            current = ctx.state().broker_configs.get(name, {})
            effective = {d.name: d.value for d in config_view(ctx, node).describe_broker()}
            result = _resolved(resolve, current, effective, name)
            if not validate_only and result:
                await _apply(ctx, AlterBrokerConfigs(broker=name, changes=[
                    ConfigChange(key=k, kind=0 if v is not None else 1, value=v) for k, v in result.items()]))
        else:
            raise TopicError(ErrorCode.invalid_request, f"resource type {resource_type} cannot be altered")
    except TopicError as exc:
        return ErrorCode(exc.code), exc.message
    return ErrorCode.none, None


def _resolved(resolve: Resolver, current: Mapping[str, str], effective: Mapping[str, str | None],
              broker: str | None) -> dict[str, str | None]:
    try:
        result: dict[str, str | None] = resolve(current, effective, broker)
    except InvalidConfig as exc:
        raise TopicError(ErrorCode.invalid_config, str(exc)) from None
    return result


async def _apply(ctx: BrokerContext, change: AlterBrokerConfigs) -> None:
    try:
        await ctx.apply_metadata(change)
    except NotController:
        raise TopicError(ErrorCode.not_controller, "no controller is available right now") from None
    except RpcError as exc:
        raise TopicError(ErrorCode.not_controller, f"controller unreachable: {exc}") from None


async def list_config_resources(ctx: BrokerContext, version: int, req: Any) -> Any:
    """ListConfigResources: the resources that have configs (topics the principal may describe, brokers)."""
    cls = response_class(LIST_CONFIG_RESOURCES, version)
    resource_cls = nested(cls, "ConfigResource")
    wanted = set(getattr(req, "resource_types", ()) or ())
    if version == 0:
        wanted = {RESOURCE_CLIENT_METRICS}  # v0 was ListClientMetricsResources
    known = {RESOURCE_TOPIC, RESOURCE_BROKER, RESOURCE_BROKER_LOGGER, RESOURCE_CLIENT_METRICS, RESOURCE_GROUP}
    if wanted - known:
        return mk(cls, error_code=ErrorCode.unsupported_version,
                  error_message=f"unsupported resource types {sorted(wanted - known)}", config_resources=())
    if not wanted:
        wanted = known
    found: list[tuple[str, int]] = []
    if RESOURCE_TOPIC in wanted:
        found += [(t, RESOURCE_TOPIC) for t in sorted(ctx.state().topics)
                  if authz.allowed(ctx, Operation.DESCRIBE_CONFIGS, TOPIC, t)]
    if RESOURCE_BROKER in wanted:
        found += [(str(n), RESOURCE_BROKER) for n in sorted(ctx.state().brokers)]
    # Floe has no client-metrics resources, broker loggers or group configs: none to list.
    return mk(cls, error_code=ErrorCode.none, config_resources=tuple(
        mk(resource_cls, resource_name=n, resource_type=t) for n, t in found))


def _refused(ctx: BrokerContext, operation: Operation, resource_type: int, name: str) -> ErrorCode | None:
    """The authorization error for a config resource (a topic, or a broker: the cluster), or None if allowed."""
    if resource_type == RESOURCE_TOPIC:
        return None if authz.allowed(ctx, operation, TOPIC, name) else ErrorCode.topic_authorization_failed
    if resource_type == RESOURCE_BROKER:
        return None if authz.allowed_on_cluster(ctx, operation) else ErrorCode.cluster_authorization_failed
    return None
