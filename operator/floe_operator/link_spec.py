"""The StreamLink resource as typed, validated objects: a cluster link of one StreamCluster.

A StreamLink names its StreamCluster (same namespace), the source Kafka
cluster (bootstrap servers, TLS and SASL with the password and CA taken from
Secrets), the topics and consumer groups to follow (names and a regular
expression), and which topics to promote. The operator turns it into the
brokers' link definition (``floe_api.links.LinkDefinition``): the password
and the CA travel as files of the cluster's link Secret, mounted into every
broker (``manifests.links``), so the definition holds only their paths.
Validation errors name the field and say what to change (``spec.SpecError``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import Field, StringConstraints, field_validator, model_validator

from floe_api.links import LinkDefinition, LinkSource
from floe_operator.spec import Model, SpecError, resource_of
from floe_operator.user_spec import SecretKeyRef

PLURAL = "streamlinks"
KIND = "StreamLink"
# A Kubernetes object name that is also a valid Floe link name (which allows upper case and '_' too).
LINK_NAME_PATTERN = r"^[a-z0-9]([-a-z0-9.]{0,61}[a-z0-9])?$"
SecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
Mechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]


def _compiles(value: str | None) -> str | None:
    if value is not None:
        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(f"not a regular expression: {value!r}: {exc}") from None
    return value


class Sasl(Model):
    mechanism: Mechanism = "SCRAM-SHA-512"
    username: Annotated[str, StringConstraints(min_length=1)]
    password_secret_ref: SecretKeyRef


class Tls(Model):
    """The CA that signed the source's certificates; unset: the system's trust store."""

    ca_secret_ref: SecretKeyRef | None = None


class Source(Model):
    bootstrap_servers: Annotated[str, StringConstraints(min_length=1)]
    security_protocol: SecurityProtocol = "PLAINTEXT"
    sasl: Sasl | None = None
    tls: Tls | None = None

    @model_validator(mode="after")
    def _consistent(self) -> Source:
        sasl_needed = self.security_protocol.startswith("SASL")
        if sasl_needed and self.sasl is None:
            raise ValueError(f"securityProtocol {self.security_protocol} needs sasl (mechanism, username, "
                             "passwordSecretRef)")
        if not sasl_needed and self.sasl is not None:
            raise ValueError(f"sasl is set but securityProtocol {self.security_protocol} does not use it; "
                             "use SASL_PLAINTEXT or SASL_SSL")
        if self.tls is not None and self.security_protocol not in ("SSL", "SASL_SSL"):
            raise ValueError(f"tls is set but securityProtocol {self.security_protocol} does not use TLS; "
                             "use SSL or SASL_SSL")
        return self


class Selector(Model):
    """Names, and a regular expression that must match a whole name."""

    names: list[Annotated[str, StringConstraints(min_length=1)]] = Field(default_factory=list)
    regex: str | None = None

    @field_validator("regex")
    @classmethod
    def _regex_compiles(cls, value: str | None) -> str | None:
        """A bad expression is refused with the StreamLink, not found later by every round on the brokers."""
        return _compiles(value)

    @property
    def empty(self) -> bool:
        return not self.names and self.regex is None


class Promotion(Model):
    """Which topics to promote: ``all`` or ``topics``; refused by the brokers while they lag unless ``force``."""

    all: bool = False
    topics: list[Annotated[str, StringConstraints(min_length=1)]] = Field(default_factory=list)
    force: bool = False

    @property
    def wanted(self) -> bool:
        return self.all or bool(self.topics)


class StreamLinkSpec(Model):
    cluster: Annotated[str, StringConstraints(min_length=1)]
    source: Source
    topics: Selector
    groups: Selector = Selector()
    promotion: Promotion = Promotion()

    @model_validator(mode="after")
    def _some_topics(self) -> StreamLinkSpec:
        if self.topics.empty:
            raise ValueError("topics needs names or a regex: a link with no topic mirrors nothing")
        return self


class StreamLink(Model):
    name: str
    namespace: str
    uid: str | None = None
    generation: int | None = None
    spec: StreamLinkSpec

    @classmethod
    def from_body(cls, body: Mapping[str, Any], *, namespace: str = "default") -> StreamLink:
        meta = body.get("metadata") or {}
        name = meta.get("name") or ""
        if not re.fullmatch(LINK_NAME_PATTERN, name):
            raise SpecError([f"metadata.name {name!r} must be lower case letters, digits, '-' or '.' (at most 63), "
                             "starting and ending with a letter or digit: it is the link's name on the brokers"])
        return resource_of(cls, body, namespace=namespace)

    def definition(self, *, password_file: str | None, ca_file: str | None) -> LinkDefinition:
        """What the brokers are sent: the source's settings with the paths where the Secret's files are mounted."""
        s = self.spec.source
        return LinkDefinition(
            name=self.name,
            source=LinkSource(bootstrap_servers=s.bootstrap_servers, security_protocol=s.security_protocol,
                              sasl_mechanism=s.sasl.mechanism if s.sasl else None,
                              sasl_username=s.sasl.username if s.sasl else None,
                              sasl_password_file=password_file, ssl_cafile=ca_file),
            topics=list(self.spec.topics.names), topic_regex=self.spec.topics.regex,
            groups=list(self.spec.groups.names), group_regex=self.spec.groups.regex)
