"""The Kafka admin calls behind StreamTopics: describe, create, grow, configure and delete a topic.

Through confluent-kafka's ``AdminClient``, which is blocking, so every call
runs in a worker thread and the kopf event loop never waits on the network
(as for StreamUsers, ``kafka_admin``). A refusal the person who wrote the
spec can fix (a config name or value the broker does not take, a partition
count it refuses) is an :class:`InvalidTopicSpec` carrying the broker's own
message; anything else is a :class:`kafka_admin.KafkaAdminError`.

:class:`TopicAdmin` is the face the reconciler uses; tests wrap the real one
(``memo.topic_admin_factory``) to reach a broker outside Kubernetes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from floe_operator.kafka_admin import TIMEOUT_SECONDS, Connection, KafkaAdminError

# Sources of a topic config that mean "set on this topic", not inherited.
TOPIC_SOURCES = ("DYNAMIC_TOPIC_CONFIG", "TOPIC_CONFIG")
# Kafka error names that say the spec is wrong rather than the cluster unwell.
SPEC_ERRORS = ("INVALID_CONFIG", "INVALID_PARTITIONS", "POLICY_VIOLATION", "INVALID_REQUEST",
               "INVALID_REPLICATION_FACTOR", "INVALID_TOPIC_EXCEPTION")


class InvalidTopicSpec(Exception):
    """The broker refused the spec's partitions or configs; ``str()`` is the broker's reason."""


@dataclass(frozen=True)
class TopicState:
    """A topic as the broker reports it."""

    name: str
    topic_id: str
    partitions: int
    # Configs set on the topic itself (what differs from the cluster's defaults).
    overrides: Mapping[str, str] = field(default_factory=dict)


class TopicAdmin(Protocol):
    async def describe(self, name: str) -> TopicState | None:
        """The topic, or None if it does not exist."""

    async def create(self, name: str, partitions: int, configs: Mapping[str, str]) -> None: ...

    async def add_partitions(self, name: str, total: int) -> None: ...

    async def alter_configs(self, name: str, set_: Mapping[str, str], reset: Sequence[str]) -> None:
        """IncrementalAlterConfigs: SET each of ``set_``, DELETE (back to the default) each of ``reset``."""

    async def delete(self, name: str) -> None:
        """Delete the topic; one that does not exist is no error."""

    async def close(self) -> None: ...


TopicAdminFactory = Callable[[Connection], TopicAdmin]


def _error_name(exc: Exception) -> str:
    err = exc.args[0] if exc.args else None
    name = getattr(err, "name", None)
    return str(name()) if callable(name) else ""


def _reason(exc: Exception) -> str:
    err = exc.args[0] if exc.args else None
    text = getattr(err, "str", None)
    return str(text()) if callable(text) else str(exc)


class ConfluentTopicAdmin:
    """:class:`TopicAdmin` on confluent-kafka's AdminClient; one per cluster connection."""

    def __init__(self, connection: Connection) -> None:
        from confluent_kafka.admin import AdminClient

        self._client: Any = AdminClient(connection.client_config())

    @staticmethod
    async def _one(future: Any, what: str, *, missing_ok: bool = False) -> Any:
        def resolve() -> Any:
            try:
                return future.result(timeout=TIMEOUT_SECONDS)
            except Exception as exc:  # noqa: BLE001 - librdkafka's KafkaException and timeouts alike
                name = _error_name(exc)
                if missing_ok and name in ("UNKNOWN_TOPIC_OR_PART", "_UNKNOWN_TOPIC", "UNKNOWN_TOPIC_ID"):
                    return None
                if name in SPEC_ERRORS:
                    raise InvalidTopicSpec(_reason(exc)) from None
                raise KafkaAdminError(f"{what}: {exc}") from None

        return await asyncio.to_thread(resolve)

    async def describe(self, name: str) -> TopicState | None:
        from confluent_kafka import TopicCollection
        from confluent_kafka.admin import ConfigResource, ConfigSource, ResourceType

        futures = await asyncio.to_thread(self._client.describe_topics, TopicCollection([name]),
                                          request_timeout=TIMEOUT_SECONDS)
        described = await self._one(futures[name], f"describe topic {name}", missing_ok=True)
        if described is None:
            return None
        resource = ConfigResource(ResourceType.TOPIC, name)
        futures = await asyncio.to_thread(self._client.describe_configs, [resource], request_timeout=TIMEOUT_SECONDS)
        entries = await self._one(futures[resource], f"describe the configs of topic {name}", missing_ok=True)
        if entries is None:
            return None  # deleted in between
        overrides = {k: str(e.value) for k, e in entries.items()
                     if ConfigSource(e.source).name in TOPIC_SOURCES and e.value is not None}
        return TopicState(name=name, topic_id=str(described.topic_id), partitions=len(described.partitions),
                          overrides=dict(sorted(overrides.items())))

    async def create(self, name: str, partitions: int, configs: Mapping[str, str]) -> None:
        from confluent_kafka.admin import NewTopic

        topic = NewTopic(name, partitions, config=dict(configs))
        futures = await asyncio.to_thread(self._client.create_topics, [topic], request_timeout=TIMEOUT_SECONDS)
        await self._one(futures[name], f"create topic {name}")

    async def add_partitions(self, name: str, total: int) -> None:
        from confluent_kafka.admin import NewPartitions

        futures = await asyncio.to_thread(self._client.create_partitions, [NewPartitions(name, total)],
                                          request_timeout=TIMEOUT_SECONDS)
        await self._one(futures[name], f"add partitions to topic {name}")

    async def alter_configs(self, name: str, set_: Mapping[str, str], reset: Sequence[str]) -> None:
        from confluent_kafka.admin import AlterConfigOpType, ConfigEntry, ConfigResource, ResourceType

        entries = [ConfigEntry(k, v, incremental_operation=AlterConfigOpType.SET) for k, v in sorted(set_.items())]
        entries += [ConfigEntry(k, None, incremental_operation=AlterConfigOpType.DELETE) for k in sorted(reset)]
        if not entries:
            return
        resource = ConfigResource(ResourceType.TOPIC, name, incremental_configs=entries)
        futures = await asyncio.to_thread(self._client.incremental_alter_configs, [resource],
                                          request_timeout=TIMEOUT_SECONDS)
        await self._one(futures[resource], f"alter the configs of topic {name}")

    async def delete(self, name: str) -> None:
        futures = await asyncio.to_thread(self._client.delete_topics, [name], operation_timeout=TIMEOUT_SECONDS,
                                          request_timeout=TIMEOUT_SECONDS)
        await self._one(futures[name], f"delete topic {name}", missing_ok=True)

    async def close(self) -> None:
        self._client = None
