"""Cluster metadata as pure state: no I/O, no asyncio.

The controller is the only writer: it changes a copy and commits the
difference as a delta (``cluster.delta``, persisted by ``cluster.metadata_log``).
Every broker reads it to answer Metadata requests and to learn which
partitions it leads. The snapshot form (:meth:`ClusterState.to_bytes`) is
plain JSON so an operator can read the bucket with any tool.

Two rules keep a change cheap at 100,000 partitions
(docs/architecture.md#controller-and-membership):

* **Topics are shared between versions.** :meth:`ClusterState.copy` copies
  the small sections (brokers, counters, fenced sessions, and any field added
  later) but only the *dict* of topics; a :class:`TopicInfo` is replaced, never
  changed in place, once another version may hold it. Change topics through
  the methods here or :meth:`ClusterState.topic_for_update`, so a commit costs
  the topics it touches and a delta finds them by identity.
* **Every other field is a section**, serialized generically (pydantic's
  ``TypeAdapter`` of the field's annotation), so a field added to
  :class:`ClusterState` is persisted, diffed and pushed without code of its
  own; a section with a custom JSON form registers it in ``SECTION_CODECS``.
"""

from __future__ import annotations

import copy
import dataclasses
import typing
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from itertools import compress
from operator import is_not
from typing import Any, NamedTuple

import msgspec
from pydantic import TypeAdapter

from floe_api.internal import (
    Acl,
    AddPartitions,
    AlterBrokerConfigs,
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
from floe_api.links import (
    CreateLink,
    DeleteLink,
    LinkedTopic,
    LinkRecord,
    LinkTopics,
    MirroredProducerIds,
    PartitionPromoted,
    PromoteLink,
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


class PartitionLeader(NamedTuple):
    """One partition's leadership; immutable because versions of the metadata share it
    (a tuple: cheap to build from a snapshot of 100,000 partitions, compared in C)."""

    leader: int  # node id, -1 when none
    epoch: int
    session: str = ""  # the leader's session (for fencing and recovery)

    def to_json(self) -> list[Any]:
        return list(self)


@dataclass
class TopicInfo:
    """A topic. Shared between metadata versions: replace it, do not change it in place
    (see :meth:`ClusterState.topic_for_update`)."""

    name: str
    topic_id: str
    partitions: list[PartitionLeader]
    configs: dict[str, str] = field(default_factory=dict)
    internal: bool = False

    def clone(self) -> TopicInfo:
        return TopicInfo(self.name, self.topic_id, list(self.partitions), dict(self.configs), self.internal)

    def to_json(self) -> dict[str, Any]:
        return {"id": self.topic_id, "internal": self.internal, "configs": self.configs,
                "partitions": [p.to_json() for p in self.partitions]}

    @classmethod
    def from_json(cls, name: str, doc: dict[str, Any]) -> TopicInfo:
        return cls(name=name, topic_id=doc["id"], internal=doc.get("internal", False),
                   configs=doc.get("configs", {}), partitions=[PartitionLeader(*p) for p in doc["partitions"]])


class _TopicDoc(msgspec.Struct, frozen=True):
    """A topic as the snapshot holds it, decoded straight into :class:`PartitionLeader` tuples."""

    id: str
    partitions: list[PartitionLeader]
    configs: dict[str, str] = {}
    internal: bool = False


_ENCODER = msgspec.json.Encoder(order="sorted")
_TOP_DECODER = msgspec.json.Decoder(dict[str, msgspec.Raw])
_TOPICS_DECODER = msgspec.json.Decoder(dict[str, _TopicDoc])


def _dump_brokers(brokers: dict[int, BrokerInfo]) -> Any:
    return {str(k): b.to_json() for k, b in brokers.items()}


def _load_brokers(doc: Any) -> dict[int, BrokerInfo]:
    return {int(k): BrokerInfo(node_id=int(k), **v) for k, v in doc.items()}


# Sections whose JSON form is not what pydantic would make of their annotation (kept as the
# snapshot has always had them, so an old bucket reads as it was written).
SECTION_CODECS: dict[str, tuple[Callable[[Any], Any], Callable[[Any], Any]]] = {
    "brokers": (_dump_brokers, _load_brokers),
    "acls": (lambda acls: [b.to_json() for b in acls], lambda doc: [AclBinding.from_json(row) for row in doc]),
}
NOT_SECTIONS = frozenset({"version", "topics"})


@dataclass(frozen=True)
class Section:
    """How one field of :class:`ClusterState` is written and read back as JSON."""

    name: str
    dump: Callable[[Any], Any]
    load: Callable[[Any], Any]
    default: Callable[[], Any]


_SECTIONS: dict[type, tuple[Section, ...]] = {}


def sections(cls: type[ClusterState]) -> tuple[Section, ...]:
    """Every field of ``cls`` but the version and the topics, with its JSON codec."""
    found = _SECTIONS.get(cls)
    if found is not None:
        return found
    hints = typing.get_type_hints(cls)
    out = []
    for f in dataclasses.fields(cls):
        if f.name in NOT_SECTIONS or f.name.startswith("_"):
            continue
        if f.default_factory is not dataclasses.MISSING:
            default: Callable[[], Any] = f.default_factory
        else:
            default = (lambda v: lambda: copy.deepcopy(v))(f.default)
        if f.name in SECTION_CODECS:
            dump, load = SECTION_CODECS[f.name]
        else:
            adapter: TypeAdapter[Any] = TypeAdapter(hints[f.name])
            dump = (lambda a: lambda v: a.dump_python(v, mode="json"))(adapter)
            load = adapter.validate_python
        out.append(Section(f.name, dump, load, default))
    _SECTIONS[cls] = tuple(out)
    return _SECTIONS[cls]


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
    # dynamic broker configs: node id as a string, or "" for the cluster-wide default -> name -> value
    broker_configs: dict[str, dict[str, str]] = field(default_factory=dict)
    # cluster links: name -> definition and the topics it mirrors (docs/architecture.md#cluster-links)
    links: dict[str, LinkRecord] = field(default_factory=dict)
    # the highest producer id a link's mirror appended from a source: never handed out by Floe
    mirrored_producer_id_max: int = -1
    # names of the topics this version owns (created or copied since it was copied): not persisted
    _owned: set[str] = field(default_factory=set, repr=False, compare=False)

    # ---- serialisation (the snapshot) -------------------------------------------

    def sections_json(self) -> dict[str, Any]:
        return {s.name: s.dump(getattr(self, s.name)) for s in sections(type(self))}

    def to_bytes(self) -> bytes:
        """The snapshot: plain JSON, keys sorted, encoded in C (msgspec) because at 100,000
        partitions the standard library's encoder holds the GIL for a good part of a second."""
        topics = {name: _TopicDoc(t.topic_id, t.partitions, t.configs, t.internal) for name, t in self.topics.items()}
        doc = {"version": self.version, **self.sections_json(), "topics": topics}
        return _ENCODER.encode(doc)

    @classmethod
    def from_bytes(cls, raw: bytes) -> ClusterState:
        doc = _TOP_DECODER.decode(raw)
        topics = _TOPICS_DECODER.decode(doc["topics"]) if "topics" in doc else {}
        state = cls(version=int(msgspec.json.decode(doc["version"])),
                    topics={name: TopicInfo(name, t.id, t.partitions, t.configs, t.internal)
                            for name, t in topics.items()})
        for s in sections(cls):
            setattr(state, s.name, s.load(msgspec.json.decode(doc[s.name])) if s.name in doc else s.default())
        return state

    def copy(self) -> ClusterState:
        """A version to change: small sections copied, topics shared until changed."""
        fresh = {s.name: copy.deepcopy(getattr(self, s.name)) for s in sections(type(self))}
        return dataclasses.replace(self, topics=dict(self.topics), _owned=set(), **fresh)

    def topic_for_update(self, name: str) -> TopicInfo:
        """The topic ``name`` of this version, safe to change in place (copied on first use)."""
        if name not in self._owned:
            self.topics[name] = self.topics[name].clone()
            self._owned.add(name)
        return self.topics[name]

    def put_topic(self, topic: TopicInfo) -> None:
        self.topics[topic.name] = topic
        self._owned.add(topic.name)

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

    def _session_of(self, node: int) -> str:
        return self.brokers[node].session if node in self.brokers else ""

    def create_topic(
        self, name: str, partitions: int, configs: dict[str, str] | None = None, *, internal: bool = False
    ) -> TopicInfo:
        leaders = self.place(partitions)
        topic = TopicInfo(
            name=name,
            topic_id=str(uuid.uuid4()),
            partitions=[PartitionLeader(n, 0, self._session_of(n)) for n in leaders],
            configs=dict(configs or {}),
            internal=internal,
        )
        self.put_topic(topic)
        return topic

    def add_partitions(self, name: str, total: int) -> None:
        topic = self.topic_for_update(name)
        leaders = self.place(total - len(topic.partitions))
        topic.partitions.extend(PartitionLeader(n, 0, self._session_of(n)) for n in leaders)

    def set_leader(self, name: str, index: int, node: int) -> PartitionLeader:
        topic = self.topic_for_update(name)
        p = PartitionLeader(node, topic.partitions[index].epoch + 1, self._session_of(node))
        topic.partitions[index] = p
        return p

    def set_leaders(self, moves: list[tuple[str, int, int]]) -> None:
        """Several :meth:`set_leader` at once."""
        for name, index, node in moves:
            self.set_leader(name, index, node)


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
            for link in state.links.values():
                link.topics.pop(name, None)
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
            configs = state.topic_for_update(name).configs
            for c in changes:
                if c.kind == 0 and c.value is not None:
                    configs[c.key] = c.value
                else:
                    configs.pop(c.key, None)
        case AlterBrokerConfigs(broker=broker, changes=broker_changes):
            dynamic = state.broker_configs.setdefault(broker, {})
            for c in broker_changes:
                if c.kind == 0 and c.value is not None:
                    dynamic[c.key] = c.value
                else:
                    dynamic.pop(c.key, None)
            if not dynamic:
                state.broker_configs.pop(broker, None)
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
        case CreateLink() | DeleteLink() | LinkTopics() | PromoteLink() | PartitionPromoted():
            apply_link_op(state, change)
        case MirroredProducerIds(highest=highest):
            state.mirrored_producer_id_max = max(state.mirrored_producer_id_max, highest)
            state.next_producer_id = max(state.next_producer_id, highest + 1)


def allocate_producer_ids(state: ClusterState, count: int) -> int:
    """Reserve ``count`` producer ids in ``state``; the first one, above every id a link mirrored."""
    start = max(state.next_producer_id, state.mirrored_producer_id_max + 1)
    state.next_producer_id = start + count
    return start


def apply_link_op(state: ClusterState, change: CreateLink | DeleteLink | LinkTopics | PromoteLink
                  | PartitionPromoted) -> None:
    """The cluster-link ops; each idempotent, as every op is."""
    match change:
        case CreateLink(definition=definition):
            existing = state.links.get(definition.name)
            state.links[definition.name] = LinkRecord(definition=definition,
                                                      topics=existing.topics if existing else {})
        case DeleteLink(name=name):
            state.links.pop(name, None)
        case LinkTopics(name=name, topics=topics):
            link = state.links.get(name)
            if link is not None:
                for t in topics:
                    if t in state.topics and not any(t in other.topics for other in state.links.values()):
                        link.topics[t] = LinkedTopic()
        case PromoteLink(name=name, topics=topics, force=force):
            link = state.links.get(name)
            if link is not None:
                for t in (link.topics if topics is None else topics):
                    if t in link.topics:
                        link.topics[t].promoting = True
                        link.topics[t].forced = link.topics[t].forced or force
        case PartitionPromoted(name=name, topic=topic, partition=partition):
            link = state.links.get(name)
            linked = link.topics.get(topic) if link is not None else None
            if linked is not None and linked.promoting and partition not in linked.promoted:
                linked.promoted.append(partition)


def binding_from_api(a: Acl) -> AclBinding:
    return AclBinding(ResourceType(a.resource_type), PatternType(a.pattern_type), a.resource_name, a.principal,
                      a.host, Operation(a.operation), Permission(a.permission))


def binding_to_api(b: AclBinding) -> Acl:
    return Acl(resource_type=b.resource_type, pattern_type=b.pattern_type, resource_name=b.resource_name,
               principal=b.principal, host=b.host, operation=b.operation, permission=b.permission)


class LedPartitions:
    """Which partitions a node leads, kept across metadata versions at the cost of what changed.

    Scanning every partition on every metadata change costs the cluster's size per move;
    unchanged topics are the same objects from one version to the next, so their part of
    the answer is kept and only replaced (or removed) topics are looked at again, and in a
    replaced topic only the partitions that are not the very objects of the version before
    (compared by identity, in C).
    """

    def __init__(self) -> None:
        self._node = -1
        self._topics: dict[str, tuple[TopicInfo, set[int]]] = {}  # name -> (topic, indexes led)
        self._led: dict[tuple[str, int], tuple[str, int]] = {}

    def of(self, state: ClusterState, node: int) -> Mapping[tuple[str, int], tuple[str, int]]:
        """(topic, partition) -> (topic id, epoch) for every partition ``node`` leads in ``state``.

        The mapping is this object's own, changed by the next call: read it, do not keep it.
        """
        self.update(state, node)
        return self._led

    @property
    def led(self) -> Mapping[tuple[str, int], tuple[str, int]]:
        """The answer of the last :meth:`update` (this object's own: read it, do not keep it)."""
        return self._led

    def update(self, state: ClusterState, node: int) -> set[tuple[str, int]] | None:
        """Bring :attr:`led` to ``state``; return the partitions whose entry in it changed
        (appeared, went, or has another topic id or epoch), or None when everything must be
        looked at (the first call, or another node)."""
        full = node != self._node
        if full:
            self._node, self._topics, self._led = node, {}, {}
        changed: set[tuple[str, int]] = set()
        for name in [n for n in self._topics if n not in state.topics]:
            changed.update(self._forget(name))
        for name, topic in state.topics.items():
            hit = self._topics.get(name)
            if hit is not None and hit[0] is topic:
                continue
            if hit is not None and hit[0].topic_id == topic.topic_id:
                changed.update(self._replace(hit[0], hit[1], topic, node))
                continue
            if hit is not None:
                changed.update(self._forget(name))
            mine = {i for i, p in enumerate(topic.partitions) if p.leader == node}
            self._topics[name] = (topic, mine)
            for i in mine:
                self._led[(name, i)] = (topic.topic_id, topic.partitions[i].epoch)
                changed.add((name, i))
        return None if full else changed

    def _replace(self, old: TopicInfo, mine: set[int], new: TopicInfo, node: int) -> list[tuple[str, int]]:
        """A new version of the same topic: look only at the partitions that are new objects."""
        before, after = old.partitions, new.partitions
        touched = list(compress(range(len(after)), map(is_not, after, before)))
        touched.extend(range(len(before), len(after)))
        gone = range(len(after), len(before))
        name, out = new.name, []
        for i in [*touched, *gone]:
            key = (name, i)
            p = after[i] if i < len(after) else None
            if p is not None and p.leader == node:
                entry = (new.topic_id, p.epoch)
                if self._led.get(key) != entry:
                    self._led[key] = entry
                    out.append(key)
                mine.add(i)
            elif i in mine:
                mine.discard(i)
                self._led.pop(key, None)
                out.append(key)
        self._topics[name] = (new, mine)  # the set is ours alone: changed in place
        return out

    def _forget(self, name: str) -> list[tuple[str, int]]:
        keys = [(name, i) for i in self._topics.pop(name)[1]]
        for key in keys:
            self._led.pop(key, None)
        return keys
