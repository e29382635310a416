"""The StreamTopic resource as typed, validated objects (the shape of Strimzi's KafkaTopic).

A StreamTopic is one Kafka topic of one StreamCluster in the same namespace:
its partition count and its topic-level configs, kept in Git and applied by
the operator through the cluster's Kafka admin API. The Kafka topic name is
``spec.topicName``, or ``metadata.name`` when unset (a Kubernetes name cannot
hold ``_`` or upper case, which Kafka topic names may).

Config *names* are checked here only for their shape: which names and values
Floe supports is the broker's to say (its config registry answers the
operator's admin calls with Kafka's own messages), so a newer broker image
needs no newer operator. Validation errors name the field and say what to
change, as for StreamCluster (``spec.SpecError``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import Field, StringConstraints, field_validator

from floe_operator.spec import Model, SpecError, resource_of

PLURAL = "streamtopics"
KIND = "StreamTopic"
# Kafka's rules (org.apache.kafka.common.internals.Topic): these characters, at
# most 249 of them, and neither "." nor "..".
TOPIC_NAME_PATTERN = r"^[a-zA-Z0-9._-]{1,249}$"
TOPIC_NAME_MAX = 249
# Kafka topic config names: lower case words joined by dots (retention.ms,
# cleanup.policy, message.timestamp.after.max.ms).
CONFIG_NAME_PATTERN = r"^[a-z][a-z0-9]*(\.[a-z0-9]+)*$"
# The largest partition count the operator asks for; the broker has the last word.
MAX_PARTITIONS = 10000
# What the CRD lets through (x-kubernetes-int-or-string): quote booleans and decimals.
ConfigValue = int | str


def topic_name_problem(name: str) -> str | None:
    """Why ``name`` cannot be a Kafka topic name, or None if it can."""
    if name in (".", ".."):
        return f"{name!r} is not allowed as a Kafka topic name"
    if len(name) > TOPIC_NAME_MAX:
        return f"is {len(name)} characters long; Kafka topic names have at most {TOPIC_NAME_MAX}"
    if not re.fullmatch(TOPIC_NAME_PATTERN, name):
        return f"{name!r} may only contain ASCII letters, digits, '.', '_' and '-' (Kafka's topic name rules)"
    return None


def config_value(value: ConfigValue) -> str:
    """A config value as Kafka's admin API carries it: a string."""
    return str(value)


class StreamTopicSpec(Model):
    cluster: Annotated[str, StringConstraints(min_length=1)]
    topic_name: str | None = None
    partitions: int = Field(ge=1, le=MAX_PARTITIONS)
    configs: dict[str, ConfigValue] = Field(default_factory=dict)
    # Retain: deleting the StreamTopic leaves the Kafka topic (and its data) in place.
    deletion_policy: Literal["Delete", "Retain"] = "Delete"

    @field_validator("topic_name")
    @classmethod
    def _kafka_name(cls, value: str | None) -> str | None:
        if value is not None and (problem := topic_name_problem(value)):
            raise ValueError(problem)
        return value

    @field_validator("configs")
    @classmethod
    def _config_names(cls, value: dict[str, ConfigValue]) -> dict[str, ConfigValue]:
        for key in value:
            if not re.fullmatch(CONFIG_NAME_PATTERN, key):
                raise ValueError(f"{key!r} is not a Kafka topic config name (lower case words joined by dots, "
                                 "e.g. retention.ms)")
        return value


class StreamTopic(Model):
    name: str
    namespace: str
    uid: str | None = None
    generation: int | None = None
    spec: StreamTopicSpec

    @property
    def topic_name(self) -> str:
        """The Kafka topic: ``spec.topicName``, else ``metadata.name``."""
        return self.spec.topic_name or self.name

    def desired_configs(self) -> dict[str, str]:
        """``spec.configs`` as the strings the admin API sends."""
        return {k: config_value(v) for k, v in sorted(self.spec.configs.items())}

    @classmethod
    def from_body(cls, body: Mapping[str, Any], *, namespace: str = "default") -> StreamTopic:
        meta = body.get("metadata") or {}
        name = meta.get("name") or ""
        spec = body.get("spec") or {}
        if not spec.get("topicName") and (problem := topic_name_problem(name)):
            raise SpecError([f"metadata.name {problem}; set spec.topicName to the Kafka topic name"])
        return resource_of(cls, body, namespace=namespace)
