"""ApiVersions, Metadata and DescribeCluster."""

from __future__ import annotations

import dataclasses
import io
import struct
import uuid
import weakref
from collections.abc import Collection
from functools import cache
from typing import TYPE_CHECKING, Any

from kio.schema.errors import ErrorCode
from kio.serial import entity_writer
from kio.serial.writers import write_compact_array_length, write_legacy_array_length
from kio.static.primitive import i32

from ..errors import TopicError
from ..protocol.build import ZERO_UUID, mk, nested, response_class
from ..protocol.codec import EncodedBody
from ..security.acls import CLUSTER_NAME
from ..security.session import current_listener
from . import authz
from .authz import CLUSTER, DESCRIBE, TOPIC
from .context import BrokerContext

if TYPE_CHECKING:
    from ..cluster.metadata import ClusterState, TopicInfo

API_VERSIONS, METADATA, DESCRIBE_CLUSTER = 18, 3, 60


def api_versions(version: int, supported: dict[int, tuple[int, int]], error: ErrorCode = ErrorCode.none) -> Any:
    cls = response_class(API_VERSIONS, version)
    api = nested(cls, "ApiVersion")
    keys = tuple(mk(api, api_key=k, min_version=lo, max_version=hi) for k, (lo, hi) in sorted(supported.items()))
    return mk(cls, error_code=error, api_keys=keys)


def _topic_uuid(topic_id: str) -> uuid.UUID:
    return uuid.UUID(topic_id)


def endpoints(state: ClusterState) -> list[tuple[int, str, int]]:
    """(node, host, port) of every broker on the listener this request came in on (Kafka's rule).

    A broker without that listener is left out, as Kafka does; outside a
    connection (in-process tests) each broker's primary address is used.
    """
    listener = current_listener()
    out = []
    for n, b in sorted(state.brokers.items()):
        address = b.endpoint(listener)
        if address is not None:
            out.append((n, address[0], address[1]))
    return out


class TopicEntries:
    """Each topic's encoded Metadata entry, per API version, rebuilt only when the topic changed.

    Metadata versions share unchanged :class:`TopicInfo` objects (``cluster.metadata``), so
    a topic whose object is the one cached is encoded as it was; an entry depends on the
    topic and on which brokers are live, and a change of the latter empties the cache. A
    full Metadata request at 100,000 partitions therefore costs the bytes it sends, not
    building and encoding 100,000 partition entries.
    """

    def __init__(self) -> None:
        self._live: frozenset[int] = frozenset()
        self._entries: dict[tuple[int, str], tuple[TopicInfo, int, bytes]] = {}

    def get(self, version: int, topic: TopicInfo, live: frozenset[int], operations: int = -2147483648) -> bytes:
        """``operations``: the topic's authorized operations when the client asked for them (else Kafka's
        "not asked" value); a different value re-encodes, so clients that ask are rare and pay for it."""
        if live != self._live:
            self._live, self._entries = live, {}
        key = (version, topic.name)
        hit = self._entries.get(key)
        if hit is not None and hit[0] is topic and hit[1] == operations:
            return hit[2]
        data = _encode_topic(version, topic, live, operations)
        self._entries[key] = (topic, operations, data)
        return data

    def prune(self, names: Collection[str]) -> None:
        """Forget deleted topics once they may be many."""
        if len(self._entries) > 4 * len(names) + 64:
            self._entries = {k: v for k, v in self._entries.items() if k[1] in names}


_ENTRIES: weakref.WeakKeyDictionary[BrokerContext, TopicEntries] = weakref.WeakKeyDictionary()


def _entries(ctx: BrokerContext) -> TopicEntries:
    found = _ENTRIES.get(ctx)
    if found is None:
        found = _ENTRIES[ctx] = TopicEntries()
    return found


def _encode(entity_cls: Any, entity: Any) -> bytes:
    buf = io.BytesIO()
    entity_writer(entity_cls)(buf, entity)
    return buf.getvalue()


def _encode_topic(version: int, t: TopicInfo, live: frozenset[int], operations: int) -> bytes:
    topic_cls = nested(response_class(METADATA, version), "MetadataResponseTopic")
    entity = mk(topic_cls, error_code=ErrorCode.none, name=t.name, topic_id=_topic_uuid(t.topic_id),
                is_internal=t.internal, partitions=(), topic_authorized_operations=operations)
    return b"".join(_spliced(topic_cls, entity, "partitions", len(t.partitions),
                             [_encode_partitions(version, t, live)]))


_PARTITION_FIELDS = ("error_code", "partition_index", "leader_id", "leader_epoch", "replica_nodes", "isr_nodes",
                     "offline_replicas")
_I16_I32_I32 = struct.Struct(">hii")
_I32 = struct.Struct(">i")


@cache
def _partition_layout(version: int) -> tuple[bool, bool, bool]:
    """(has leader_epoch, has offline_replicas, flexible) of this version's partition entry."""
    part_cls = nested(response_class(METADATA, version), "MetadataResponsePartition")
    fields = dataclasses.fields(part_cls)
    names = tuple(f.name for f in fields)
    if names != tuple(n for n in _PARTITION_FIELDS if n in names) or any("tag" in f.metadata for f in fields):
        raise AssertionError(f"Metadata v{version} partition entries have fields this encoder does not know")
    return "leader_epoch" in names, "offline_replicas" in names, bool(part_cls.__flexible__)


def _encode_partitions(version: int, t: TopicInfo, live: frozenset[int]) -> bytes:
    """A topic's partition entries, packed directly: they are most of a large response, and
    building and encoding them field by field costs seconds at 100,000 partitions. The
    spliced-response tests hold this to kio's own encoding, version by version."""
    with_epoch, with_offline, flexible = _partition_layout(version)
    one, empty = (b"\x02", b"\x01") if flexible else (b"\x00\x00\x00\x01", b"\x00\x00\x00\x00")
    tail = (empty if with_offline else b"") + (b"\x00" if flexible else b"")
    down = int(ErrorCode.leader_not_available.value)
    out = bytearray()
    for i, p in enumerate(t.partitions):
        if p.leader in live:
            out += _I16_I32_I32.pack(0, i, p.leader)
            if with_epoch:
                out += _I32.pack(p.epoch)
            replicas = one + _I32.pack(p.leader)
            out += replicas
            out += replicas
        else:
            out += _I16_I32_I32.pack(down, i, -1)
            if with_epoch:
                out += _I32.pack(p.epoch)
            out += empty
            out += empty
        out += tail
    return bytes(out)


@cache
def _array_layout(cls: Any, field: str) -> tuple[int, int, bool]:
    """(bytes of an empty ``field`` array, bytes after it, flexible) in the encoding of ``cls``.

    What follows these arrays in Metadata (``cluster_authorized_operations`` v8-v10,
    ``topic_authorized_operations`` v8+) is plain int32s, then, in flexible versions, the
    count of tagged fields (none are sent).
    """
    fields = dataclasses.fields(cls)
    after = fields[[f.name for f in fields].index(field) + 1:]
    if any(f.metadata.get("kafka_type") != "int32" or "tag" in f.metadata for f in after):
        raise AssertionError(f"{cls.__name__} has fields after {field} this encoder does not know")
    flexible = bool(cls.__flexible__)
    return (1 if flexible else 4), 4 * len(after) + (1 if flexible else 0), flexible


def _spliced(cls: Any, entity: Any, field: str, count: int, items: list[bytes]) -> list[bytes]:
    """``entity`` (built with ``field`` empty) encoded, with ``count`` encoded ``items`` in that array."""
    empty_len, suffix_len, flexible = _array_layout(cls, field)
    whole = _encode(cls, entity)
    cut = len(whole) - suffix_len - empty_len
    length = io.BytesIO()
    if flexible:
        write_compact_array_length(length, count)
    else:
        write_legacy_array_length(length, i32(count))
    return [whole[:cut], length.getvalue(), *items, whole[len(whole) - suffix_len:]]


async def metadata(ctx: BrokerContext, version: int, req: Any) -> Any:
    cls = response_class(METADATA, version)
    broker_cls = nested(cls, "MetadataResponseBroker")
    topic_cls = nested(cls, "MetadataResponseTopic")

    state = ctx.state()
    if req.topics is None:
        # every topic the principal may describe, internal ones too with is_internal set (as Kafka does: the
        # Java AdminClient's listTopics filters on that flag); the others are not mentioned at all
        names: list[str | None] = [n for n in state.topics if authz.allowed(ctx, DESCRIBE, TOPIC, n)]
        wanted_ids: dict[str, uuid.UUID] = {}
    else:
        names = []
        wanted_ids = {}
        for t in req.topics:
            if getattr(t, "name", None):
                names.append(t.name)
            elif getattr(t, "topic_id", None) and t.topic_id != ZERO_UUID:
                found = state.topic_by_id(str(t.topic_id))
                if found is not None and not authz.allowed(ctx, DESCRIBE, TOPIC, found.name):
                    found = None  # an id the principal may not describe is answered as unknown
                names.append(found.name if found else None)
                if found is None:
                    wanted_ids[f"?{t.topic_id}"] = t.topic_id
            else:
                names.append(None)

    allow_auto = getattr(req, "allow_auto_topic_creation", True) and ctx.config.auto_create_topics
    entries = _entries(ctx)
    topics: list[bytes] = []
    for name in names:
        if name is None:
            continue
        if req.topics is not None and not authz.allowed(ctx, DESCRIBE, TOPIC, name):
            topics.append(_encode(topic_cls, _refused(topic_cls, name)))
            continue
        if name not in state.topics and allow_auto:
            if not authz.may_create_topic(ctx, name):
                topics.append(_encode(topic_cls, _refused(topic_cls, name)))
                continue
            try:
                await ctx.create_topic(name, ctx.config.default_partitions, {})
            except TopicError:
                pass
            state = ctx.state()
        t = state.topics.get(name)
        if t is None:
            topics.append(_encode(topic_cls, mk(topic_cls, error_code=ErrorCode.unknown_topic_or_partition,
                                                name=name, topic_id=ZERO_UUID, is_internal=False, partitions=(),
                                                topic_authorized_operations=-2147483648)))
            continue
        operations = authz.authorized_operations(ctx, TOPIC, name,
                                                 getattr(req, "include_topic_authorized_operations", False))
        topics.append(entries.get(version, t, frozenset(state.brokers), operations))
    for _, tid in wanted_ids.items():
        topics.append(_encode(topic_cls, mk(topic_cls, error_code=ErrorCode.unknown_topic_id, name=None,
                                            topic_id=tid, is_internal=False, partitions=())))
    entries.prune(state.topics.keys())
    brokers = tuple(mk(broker_cls, node_id=n, host=host, port=port, rack=None)
                    for n, host, port in endpoints(state))
    envelope = mk(
        cls,
        brokers=brokers,
        cluster_id=ctx.cluster_id,
        controller_id=controller_id(ctx),
        topics=(),
        cluster_authorized_operations=authz.authorized_operations(
            ctx, CLUSTER, CLUSTER_NAME, getattr(req, "include_cluster_authorized_operations", False)),
    )
    return EncodedBody(_spliced(cls, envelope, "topics", len(topics), topics))


def _refused(topic_cls: Any, name: str) -> Any:
    """A named topic the principal may not describe (or create): Kafka's answer, the same whether it exists."""
    return mk(topic_cls, error_code=ErrorCode.topic_authorization_failed, name=name, topic_id=ZERO_UUID,
              is_internal=False, partitions=(), topic_authorized_operations=-2147483648)


def controller_id(ctx: BrokerContext) -> int:
    return ctx.controller_node()


async def describe_cluster(ctx: BrokerContext, version: int, req: Any) -> Any:
    cls = response_class(DESCRIBE_CLUSTER, version)
    broker_cls = nested(cls, "DescribeClusterBroker")
    state = ctx.state()
    brokers = tuple(mk(broker_cls, broker_id=n, host=host, port=port, rack=None, is_fenced=False)
                    for n, host, port in endpoints(state))
    return mk(
        cls,
        error_code=ErrorCode.none,
        error_message=None,
        endpoint_type=1,
        cluster_id=ctx.cluster_id,
        controller_id=controller_id(ctx),
        brokers=brokers,
        cluster_authorized_operations=authz.authorized_operations(
            ctx, CLUSTER, CLUSTER_NAME, getattr(req, "include_cluster_authorized_operations", False)),
    )
