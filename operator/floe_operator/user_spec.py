"""The StreamUser resource as typed, validated objects (the shape of Strimzi's KafkaUser).

A StreamUser is one Kafka user of one StreamCluster in the same namespace:
its SCRAM credential (password generated, or taken from a Secret the user
names) and its ACLs. The operator applies both through the Kafka admin APIs
and writes the application a Secret with ready client configuration.
Validation errors name the field and say what to change, as for
StreamCluster (``spec.SpecError``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import Field, StringConstraints, model_validator

from floe_operator.spec import Model, SpecError, resource_of

PLURAL = "streamusers"
KIND = "StreamUser"
# Kafka user names may hold almost anything; these are the characters that are
# safe in a JAAS line, a principal and a Secret's metadata.name.
USER_NAME_PATTERN = r"^[a-z0-9]([-a-z0-9.]{0,62}[a-z0-9])?$"
Mechanism = Literal["scram-sha-512", "scram-sha-256"]
ResourceType = Literal["topic", "group", "cluster", "transactionalId"]
Operation = Literal["All", "Read", "Write", "Create", "Delete", "Alter", "Describe", "ClusterAction",
                    "DescribeConfigs", "AlterConfigs", "IdempotentWrite"]


class SecretKeyRef(Model):
    name: Annotated[str, StringConstraints(min_length=1)]
    key: Annotated[str, StringConstraints(min_length=1)]


class PasswordSource(Model):
    secret_key_ref: SecretKeyRef


class Password(Model):
    value_from: PasswordSource


class UserAuthentication(Model):
    """``password`` unset: the operator generates one (and keeps it in the user's Secret)."""

    type: Mechanism = "scram-sha-512"
    password: Password | None = None

    @property
    def mechanism(self) -> str:
        return self.type.upper()


class AclResource(Model):
    type: ResourceType
    name: Annotated[str, StringConstraints(min_length=1)] | None = None
    pattern_type: Literal["literal", "prefixed"] = "literal"

    @model_validator(mode="after")
    def _named(self) -> AclResource:
        if self.type != "cluster" and self.name is None:
            raise ValueError(f"a {self.type} resource needs a name ('*' for every {self.type})")
        return self

    @property
    def resource_name(self) -> str:
        return "kafka-cluster" if self.type == "cluster" else str(self.name)


class AclRule(Model):
    resource: AclResource
    operations: list[Operation] = Field(min_length=1)
    host: Annotated[str, StringConstraints(min_length=1)] = "*"
    type: Literal["allow", "deny"] = "allow"


class UserAuthorization(Model):
    type: Literal["simple"] = "simple"
    acls: list[AclRule] = Field(default_factory=list)


class StreamUserSpec(Model):
    cluster: Annotated[str, StringConstraints(min_length=1)]
    authentication: UserAuthentication = UserAuthentication()
    authorization: UserAuthorization | None = None


class StreamUser(Model):
    name: str
    namespace: str
    uid: str | None = None
    generation: int | None = None
    spec: StreamUserSpec

    @property
    def principal(self) -> str:
        return f"User:{self.name}"

    @property
    def secret_name(self) -> str:
        """The application's Secret is named after the user, as Strimzi does."""
        return self.name

    @classmethod
    def from_body(cls, body: Mapping[str, Any], *, namespace: str = "default") -> StreamUser:
        meta = body.get("metadata") or {}
        name = meta.get("name") or ""
        if not re.fullmatch(USER_NAME_PATTERN, name):
            raise SpecError([f"metadata.name {name!r} must be lower case letters, digits, '-' or '.' "
                             "(at most 64), starting and ending with a letter or digit: it is the Kafka user name"])
        return resource_of(cls, body, namespace=namespace)
