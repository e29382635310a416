"""Bodies of the broker <-> controller calls (``/internal/v1/...``).

Brokers call the controller (the holder of the lease) to join, heartbeat,
change metadata, get producer ids, drain and leave; the controller calls
brokers to push metadata and to release a partition (the old leader's half of
a move). A controller-only call reaching a broker that is not the controller
is answered 503, and the caller looks the lease up again.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, Field

from .public import MoveResult

REGISTER_PATH = "/internal/v1/register"
HEARTBEAT_PATH = "/internal/v1/heartbeat"
METADATA_PATH = "/internal/v1/metadata"
RELEASE_PATH = "/internal/v1/release"
OP_PATH = "/internal/v1/op"
REASSIGN_PATH = "/internal/v1/reassign"
DRAIN_PATH = "/internal/v1/drain"
LEAVE_PATH = "/internal/v1/leave"
PRODUCER_IDS_PATH = "/internal/v1/producer-ids"


class Ok(BaseModel):
    ok: bool = True


class RegisterRequest(BaseModel):
    """A new broker session asks for a node id; ``host:port`` is its advertised Kafka address."""

    session: str
    host: str
    port: int
    http: str


class RegisterReply(BaseModel):
    node: int


class HeartbeatRequest(BaseModel):
    node: int
    session: str


class HeartbeatReply(BaseModel):
    """``ok`` false: the controller failed this session (it must stop). ``version``: the metadata version."""

    ok: bool
    version: int = 0


class MetadataPush(BaseModel):
    """A committed metadata change, in the broker's own serialized form.

    ``delta`` makes ``version`` from ``version - 1``; a broker that is not at
    ``version - 1`` reads the metadata from the bucket instead. ``state`` (the
    whole metadata) is what a controller from before deltas pushes.
    """

    version: int = 0
    delta: str | None = None
    state: str | None = None


class ReleaseRequest(BaseModel):
    """The old leader's half of a move: stop produce, make pending data durable, never reopen at <= epoch."""

    topic: str
    partition: int
    epoch: int


class CreateTopic(BaseModel):
    op: Literal["create_topic"] = "create_topic"
    name: str
    partitions: int
    configs: dict[str, str] = Field(default_factory=dict)


class DeleteTopic(BaseModel):
    op: Literal["delete_topic"] = "delete_topic"
    name: str


class AddPartitions(BaseModel):
    op: Literal["add_partitions"] = "add_partitions"
    name: str
    total: int


class ConfigChange(BaseModel):
    """One IncrementalAlterConfigs entry: ``kind`` 0 sets ``value``, 1 deletes the key."""

    key: str
    kind: int
    value: str | None = None


class AlterConfigs(BaseModel):
    op: Literal["alter_configs"] = "alter_configs"
    name: str
    changes: list[ConfigChange]


class Reclaim(BaseModel):
    """A leader that released a partition for a move that never committed asks for a new epoch."""

    op: Literal["reclaim"] = "reclaim"
    name: str
    index: int
    node: int
    epoch: int


MetadataOp = Annotated[CreateTopic | DeleteTopic | AddPartitions | AlterConfigs | Reclaim, Field(discriminator="op")]


class OpRequest(BaseModel):
    """A metadata change a broker forwards to the controller."""

    change: MetadataOp


class InternalReassignRequest(BaseModel):
    moves: list[tuple[str, int, int]]


class MoveResults(BaseModel):
    results: list[MoveResult] = Field(default_factory=list)


class NodeRequest(BaseModel):
    """Drain or leave: the node concerned."""

    node: int


class ProducerIdsRequest(BaseModel):
    count: int


class ProducerIdsReply(BaseModel):
    start: int
