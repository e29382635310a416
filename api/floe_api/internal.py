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

from .links import CreateLink, DeleteLink, LinkTopics, MirroredProducerIds, PartitionPromoted, PromoteLink
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
    # listener name -> advertised (host, port); the primary listener is host:port too
    listeners: dict[str, tuple[str, int]] = Field(default_factory=dict)


class RegisterReply(BaseModel):
    node: int


class HeartbeatRequest(BaseModel):
    """``store``: the member's object-store state (``ok``, ``degraded``, ``unavailable``).

    A member that cannot reach the bucket cannot acknowledge anything, so the
    controller fails it once that has lasted a session timeout while its own
    store answers; senders that predate the field count as ``ok``.
    """

    node: int
    session: str
    store: str = "ok"


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


class ScramKeys(BaseModel):
    """One SCRAM credential as stored: base64 salt, StoredKey and ServerKey, and the iteration count."""

    salt: str
    iterations: int
    stored_key: str
    server_key: str


class ScramUpsertion(BaseModel):
    """Set ``user``'s credential for ``mechanism``; ``if_absent`` keeps an existing one (seeding)."""

    user: str
    mechanism: str
    keys: ScramKeys
    if_absent: bool = False


class ScramDeletion(BaseModel):
    user: str
    mechanism: str


class AlterScramCredentials(BaseModel):
    """AlterUserScramCredentials, or seeding the first users: keys only, never a password."""

    op: Literal["alter_scram_credentials"] = "alter_scram_credentials"
    upsertions: list[ScramUpsertion] = Field(default_factory=list)
    deletions: list[ScramDeletion] = Field(default_factory=list)



class Acl(BaseModel):
    """One ACL binding, with Kafka's wire numbers (resource, pattern, operation, permission types)."""

    resource_type: int
    pattern_type: int
    resource_name: str
    principal: str
    host: str
    operation: int
    permission: int


class CreateAcls(BaseModel):
    op: Literal["create_acls"] = "create_acls"
    acls: list[Acl]


class DeleteAcls(BaseModel):
    """Delete exactly these bindings (the broker resolved the filters against its metadata)."""

    op: Literal["delete_acls"] = "delete_acls"
    acls: list[Acl]


class QuotaChange(BaseModel):
    """One AlterClientQuotas entry: the entity ((type, name or None for the default) pairs) and its changes."""

    entity: list[tuple[str, str | None]]
    set: dict[str, float] = Field(default_factory=dict)
    remove: list[str] = Field(default_factory=list)


class AlterQuotas(BaseModel):
    op: Literal["alter_quotas"] = "alter_quotas"
    changes: list[QuotaChange]


class AlterBrokerConfigs(BaseModel):
    """Dynamic broker configs of one broker (``broker``: its node id) or, ``broker`` empty, the cluster default.

    ``changes`` are resolved by the broker that took the request: kind 0 sets, 1 deletes.
    """

    op: Literal["alter_broker_configs"] = "alter_broker_configs"
    broker: str
    changes: list[ConfigChange]


MetadataOp = Annotated[
    CreateTopic | DeleteTopic | AddPartitions | AlterConfigs | Reclaim | AlterScramCredentials | CreateAcls
    | DeleteAcls | AlterQuotas | AlterBrokerConfigs
    | CreateLink | DeleteLink | LinkTopics | PromoteLink | PartitionPromoted | MirroredProducerIds,
    Field(discriminator="op"),
]


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


# ---- transactions: coordinator <-> partition leaders and group coordinators -------------------

TXN_MARKERS_PATH = "/internal/v1/txn-markers"
TXN_VERIFY_PATH = "/internal/v1/txn-verify"


class TxnMarkersRequest(BaseModel):
    """A transaction's end, for the partitions and groups one broker leads: a commit or abort
    marker appended to each partition, the group's pending transactional offsets applied or dropped.
    Answered only once every one of them is durable."""

    transactional_id: str
    producer_id: int
    producer_epoch: int
    commit: bool
    coordinator_epoch: int = 0
    partitions: list[tuple[str, int]] = []
    groups: list[str] = []


class TxnVerifyRequest(BaseModel):
    """A partition leader asks the coordinator whether a transactional batch belongs to an open
    transaction that added this partition (the hanging-transaction guard)."""

    transactional_id: str
    producer_id: int
    producer_epoch: int
    topic: str
    partition: int


class TxnVerifyReply(BaseModel):
    error_code: int  # Kafka's error code; 0: the batch may be appended
