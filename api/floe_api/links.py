"""Cluster links: mirroring topics of a running Apache Kafka cluster at the same offsets.

A link's definition is cluster metadata (the ops at the bottom, applied by
the controller); its status is gathered from the brokers leading the linked
partitions. The public paths are ``/v1/links`` (list, create),
``/v1/links/{name}`` (status, delete) and ``/v1/links/{name}/promote``.
See docs/architecture.md#cluster-links.

No secret is ever part of a link: a SASL password is named by a file path
that every broker reads when it connects (a mounted Kubernetes Secret), so
neither the bucket nor a log line holds it.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, Field, field_validator

LINKS_PATH = "/v1/links"
LINK_LAG_PATH = "/internal/v1/link-lag"

MIRRORING, PROMOTING, PROMOTED = "mirroring", "promoting", "promoted"


class LinkSource(BaseModel):
    """How to reach the source Kafka cluster (librdkafka/Java-style names)."""

    bootstrap_servers: str
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    sasl_username: str | None = None
    # A path on every broker holding the password (never the password itself).
    sasl_password_file: str | None = None
    ssl_cafile: str | None = None


class LinkDefinition(BaseModel):
    """What to mirror: topics by name or by a regular expression (full match), groups the same way."""

    name: str = Field(pattern=r"^[A-Za-z0-9._-]{1,100}$")
    source: LinkSource
    topics: list[str] = Field(default_factory=list)
    topic_regex: str | None = None
    groups: list[str] = Field(default_factory=list)
    group_regex: str | None = None

    @field_validator("topic_regex", "group_regex")
    @classmethod
    def _compiles(cls, value: str | None) -> str | None:
        """A bad expression is refused when the link is made, not found later by every round."""
        if value is not None:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"not a regular expression: {value!r}: {exc}") from None
        return value


class LinkedTopic(BaseModel):
    """One topic a link created on Floe: mirrored until promoted, partition by partition."""

    promoting: bool = False
    # Promoted at Floe's end at once, not after a last catch-up: records the mirror had not copied are not copied.
    forced: bool = False
    promoted: list[int] = Field(default_factory=list)  # partitions writable on Floe since their promotion

    def state(self, partitions: int) -> str:
        if self.promoting and len(set(self.promoted)) >= partitions:
            return PROMOTED
        return PROMOTING if self.promoting else MIRRORING


class LinkRecord(BaseModel):
    """A link as the cluster metadata holds it."""

    definition: LinkDefinition
    topics: dict[str, LinkedTopic] = Field(default_factory=dict)


# ---- metadata ops ---------------------------------------------------------------------------


class CreateLink(BaseModel):
    op: Literal["create_link"] = "create_link"
    definition: LinkDefinition


class DeleteLink(BaseModel):
    """Forget the link; its topics stay, and every partition not yet promoted becomes writable."""

    op: Literal["delete_link"] = "delete_link"
    name: str


class LinkTopics(BaseModel):
    """Topics the link created on Floe (mirroring from now on)."""

    op: Literal["link_topics"] = "link_topics"
    name: str
    topics: list[str]


class PromoteLink(BaseModel):
    """Ask the leaders to promote these topics (all the link's when ``topics`` is None).

    ``force``: promote at once at Floe's end, without the last catch-up.
    """

    op: Literal["promote_link"] = "promote_link"
    name: str
    topics: list[str] | None = None
    force: bool = False


class PartitionPromoted(BaseModel):
    """A leader caught up with the source's end offset and stopped mirroring the partition."""

    op: Literal["partition_promoted"] = "partition_promoted"
    name: str
    topic: str
    partition: int


class MirroredProducerIds(BaseModel):
    """A mirror is about to append batches of source producer ids up to ``highest``.

    Floe never hands out such an id (InitProducerId) from then on: a Floe
    producer with a mirrored producer's id would meet that producer's
    sequence state in the partition, and its first batches would be taken
    for duplicates or refused as out of order.
    """

    op: Literal["mirrored_producer_ids"] = "mirrored_producer_ids"
    highest: int


# ---- the public API -------------------------------------------------------------------------


class PromoteRequest(BaseModel):
    """Refused (409) while a chosen partition lags the source, unless ``force``: then promoted where Floe ends."""

    topics: list[str] | None = None  # None: every topic of the link
    force: bool = False


class PartitionLag(BaseModel):
    """One mirrored partition as its leader sees it."""

    topic: str
    partition: int
    node: int
    floe_end: int
    source_end: int
    lag_records: int
    lag_seconds: float
    bytes_mirrored: int
    state: str
    error: str | None = None


class LinkLagReply(BaseModel):
    partitions: list[PartitionLag]
    # link -> why this broker's last attempt to follow the source failed (unreachable, a missing file, ...)
    errors: dict[str, str] = Field(default_factory=dict)


class LinkTopicStatus(BaseModel):
    topic: str
    state: str
    partitions: list[PartitionLag]


class LinkStatus(BaseModel):
    name: str
    bootstrap_servers: str
    topics: list[LinkTopicStatus]
    groups: list[str]
    lag_records: int
    # why a broker could not follow the source last time it tried (None: every broker could)
    error: str | None = None


class LinksView(BaseModel):
    links: list[LinkStatus]
