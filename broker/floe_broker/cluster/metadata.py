"""Cluster metadata (``meta/cluster``) as pure state: no I/O, no asyncio.

The controller is the only writer; it changes a copy and CAS-writes it. Every
broker reads it to answer Metadata requests and to learn which partitions it
leads. Kept as plain JSON so an operator can read the bucket with any tool.
"""

from __future__ import annotations

import copy
import json
import uuid
from dataclasses import dataclass, field
from typing import Any

from floe_api.internal import (
    Acl,
    AddPartitions,
    AlterConfigs,
    AlterQuotas,
    AlterScramCredentials,
    CreateAcls,
    CreateTopic,
    DeleteAcls,
    DeleteTopic,
    MetadataOp,
    Reclaim,
)

from ..security.acls import AclBinding, Operation, PatternType, Permission, ResourceType
from ..security.quotas import entity_key


@dataclass
class BrokerInfo:
    node_id: int
    session: str
    host: str
    port: int
    http: str
    registered_ms: int
    draining: bool = False
    # listener name -> [advertised host, port]; empty for a broker with only its primary address
    listeners: dict[str, list[Any]] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "session": self.session,
            "host": self.host,
            "port": self.port,
            "http": self.http,
            "registered_ms": self.registered_ms,
            "draining": self.draining,
            "listeners": self.listeners,
        }

    def endpoint(self, listener: str | None) -> tuple[str, int] | None:
        """The address clients of ``listener`` use; None if this broker has no such listener."""
        if listener is None or not self.listeners:
            return self.host, self.port
        found = self.listeners.get(listener)
        return (str(found[0]), int(found[1])) if found is not None else None


@dataclass
class PartitionLeader:
    leader: int  # node id, -1 when none
    epoch: int
    session: str = ""  # the leader's session (for fencing and recovery)


@dataclass
class TopicInfo:
    name: str
    topic_id: str
    partitions: list[PartitionLeader]
    configs: dict[str, str] = field(default_factory=dict)
    internal: bool = False


@dataclass
class ClusterState:
    version: int = 0
    next_node_id: int = 1
    next_producer_id: int = 1000
    brokers: dict[int, BrokerInfo] = field(default_factory=dict)
    topics: dict[str, TopicInfo] = field(default_factory=dict)
    # sessions fenced by the controller whose WAL still holds recoverable data
    fenced: dict[str, int] = field(default_factory=dict)
    # sessions whose (now unreferenced) WAL objects may be collected: session -> node
    retired: dict[str, list[Any]] = field(default_factory=dict)
    # SCRAM credentials: user -> mechanism -> {salt, iterations, stored_key, server_key} (base64; no passwords)
    scram: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    # ACL bindings, in creation order (docs/architecture.md#authorization-and-quotas)
    acls: list[AclBinding] = field(default_factory=list)
    # client quotas: entity key (security.quotas.entity_key) -> quota name -> value
    quotas: dict[str, dict[str, float]] = field(default_factory=dict)

    # ---- serialisation -----------------------------------------------------

    def to_bytes(self) -> bytes:
        doc = {
            "version": self.version,
            "next_node_id": self.next_node_id,
            "next_producer_id": self.next_producer_id,
            "brokers": {str(k): b.to_json() for k, b in self.brokers.items()},
            "topics": {
                name: {
                    "id": t.topic_id,
                    "internal": t.internal,
                    "configs": t.configs,
                    "partitions": [[p.leader, p.epoch, p.session] for p in t.partitions],
                }
                for name, t in self.topics.items()
            },
            "fenced": self.fenced,
            "retired": self.retired,
            "scram": self.scram,
            "acls": [b.to_json() for b in self.acls],
            "quotas": self.quotas,
        }
        return json.dumps(doc, indent=1, sort_keys=True).encode()

    @classmethod
    def from_bytes(cls, raw: bytes) -> ClusterState:
        doc = json.loads(raw)
        return cls(
            version=doc["version"],
            next_node_id=doc["next_node_id"],
            next_producer_id=doc.get("next_producer_id", 1000),
            brokers={int(k): BrokerInfo(node_id=int(k), **v) for k, v in doc["brokers"].items()},
            topics={
                name: TopicInfo(
                    name=name,
                    topic_id=t["id"],
                    internal=t.get("internal", False),
                    configs=t.get("configs", {}),
                    partitions=[PartitionLeader(*p) for p in t["partitions"]],
                )
                for name, t in doc["topics"].items()
            },
            fenced=doc.get("fenced", {}),
            retired=doc.get("retired", {}),
            scram=doc.get("scram", {}),
            acls=[AclBinding.from_json(row) for row in doc.get("acls", [])],
            quotas=doc.get("quotas", {}),
        )

    def copy(self) -> ClusterState:
        return copy.deepcopy(self)

    # ---- queries -------------------------------------------------------------

    def topic_by_id(self, topic_id: str) -> TopicInfo | None:
        for t in self.topics.values():
            if t.topic_id == topic_id:
                return t
        return None

    def partition(self, name: str | None, index: int) -> PartitionLeader | None:
        """The partition's leadership record, or None for an unknown topic or index."""
        t = self.topics.get(name) if name is not None else None
        return t.partitions[index] if t is not None and 0 <= index < len(t.partitions) else None

    def led_by(self, node_id: int) -> list[tuple[TopicInfo, int]]:
        return [
            (t, i) for t in self.topics.values() for i, p in enumerate(t.partitions) if p.leader == node_id
        ]

    def partition_counts(self) -> dict[int, int]:
        counts = {n: 0 for n in self.brokers}
        for t in self.topics.values():
            for p in t.partitions:
                if p.leader in counts:
                    counts[p.leader] += 1
        return counts

    # ---- placement -----------------------------------------------------------

    def place(self, count: int, exclude: set[int] | None = None) -> list[int]:
        """Leaders for ``count`` new partitions, spread evenly over live brokers."""
        counts = self.partition_counts()
        live = [n for n, b in self.brokers.items() if not b.draining and n not in (exclude or set())]
        out = []
        for _ in range(count):
            if not live:
                out.append(-1)
                continue
            n = min(live, key=lambda x: (counts.get(x, 0), x))
            counts[n] = counts.get(n, 0) + 1
            out.append(n)
        return out

    # ---- mutations (on a copy, by the controller) ----------------------------

    def create_topic(
        self, name: str, partitions: int, configs: dict[str, str] | None = None, *, internal: bool = False
    ) -> TopicInfo:
        leaders = self.place(partitions)
        topic = TopicInfo(
            name=name,
            topic_id=str(uuid.uuid4()),
            partitions=[
                PartitionLeader(n, 0, self.brokers[n].session if n in self.brokers else "") for n in leaders
            ],
            configs=dict(configs or {}),
            internal=internal,
        )
        self.topics[name] = topic
        return topic

    def add_partitions(self, name: str, total: int) -> None:
        topic = self.topics[name]
        leaders = self.place(total - len(topic.partitions))
        topic.partitions.extend(
            PartitionLeader(n, 0, self.brokers[n].session if n in self.brokers else "") for n in leaders
        )

    def set_leader(self, name: str, index: int, node: int) -> PartitionLeader:
        p = self.topics[name].partitions[index]
        p.leader = node
        p.epoch += 1
        p.session = self.brokers[node].session if node in self.brokers else ""
        return p


def apply_op(state: ClusterState, change: MetadataOp) -> None:
    """Apply one named metadata change; a change that no longer applies is a no-op.

    Named (not a closure) so a broker that is not the controller can forward it,
    and idempotent so a retried forward does no harm.
    """
    match change:
        case CreateTopic(name=name, partitions=partitions, configs=configs):
            if name not in state.topics:
                state.create_topic(name, partitions, configs, internal=name.startswith("__"))
        case DeleteTopic(name=name):
            state.topics.pop(name, None)
        case AddPartitions(name=name, total=total):
            if name in state.topics and total > len(state.topics[name].partitions):
                state.add_partitions(name, total)
        case Reclaim(name=name, index=index, node=node, epoch=epoch):
            # A leader that released a partition for a move that never committed asks for a
            # new epoch, so it may open the partition again (it never reopens a released epoch).
            p = state.partition(name, index)
            if p is not None and p.leader == node and p.epoch == epoch:
                state.set_leader(name, index, node)
        case CreateAcls(acls=acls):
            for b in map(binding_from_api, acls):
                if b not in state.acls:
                    state.acls.append(b)
        case DeleteAcls(acls=acls):
            gone = set(map(binding_from_api, acls))
            state.acls = [b for b in state.acls if b not in gone]
        case AlterQuotas(changes=quota_changes):
            for q in quota_changes:
                key = entity_key(q.entity)
                values = state.quotas.setdefault(key, {})
                for k in q.remove:
                    values.pop(k, None)
                values.update(q.set)
                if not values:
                    state.quotas.pop(key, None)
        case AlterConfigs(name=name, changes=changes):
            configs = state.topics[name].configs
            for c in changes:
                if c.kind == 0 and c.value is not None:
                    configs[c.key] = c.value
                else:
                    configs.pop(c.key, None)
        case AlterScramCredentials(upsertions=upsertions, deletions=deletions):
            existed = {user for user, creds in state.scram.items() if creds}
            for d in deletions:
                creds = state.scram.get(d.user, {})
                creds.pop(d.mechanism, None)
                if not creds:
                    state.scram.pop(d.user, None)
            for u in upsertions:
                if not (u.if_absent and u.user in existed):
                    state.scram.setdefault(u.user, {})[u.mechanism] = u.keys.model_dump()


def binding_from_api(a: Acl) -> AclBinding:
    return AclBinding(ResourceType(a.resource_type), PatternType(a.pattern_type), a.resource_name, a.principal,
                      a.host, Operation(a.operation), Permission(a.permission))


def binding_to_api(b: AclBinding) -> Acl:
    return Acl(resource_type=b.resource_type, pattern_type=b.pattern_type, resource_name=b.resource_name,
               principal=b.principal, host=b.host, operation=b.operation, permission=b.permission)
