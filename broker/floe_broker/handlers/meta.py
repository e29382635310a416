"""ApiVersions, Metadata and DescribeCluster."""

from __future__ import annotations

import dataclasses
import io
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
from .context import BrokerContext

if TYPE_CHECKING:
    from ..cluster.metadata import TopicInfo

API_VERSIONS, METADATA, DESCRIBE_CLUSTER = 18, 3, 60


def api_versions(version: int, supported: dict[int, tuple[int, int]], error: ErrorCode = ErrorCode.none) -> Any:
    cls = response_class(API_VERSIONS, version)
    api = nested(cls, "ApiVersion")
    keys = tuple(mk(api, api_key=k, min_version=lo, max_version=hi) for k, (lo, hi) in sorted(supported.items()))
    return mk(cls, error_code=error, api_keys=keys)


def _topic_uuid(topic_id: str) -> uuid.UUID:
    return uuid.UUID(topic_id)


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
        self._entries: dict[tuple[int, str], tuple[TopicInfo, bytes]] = {}

    def get(self, version: int, topic: TopicInfo, live: frozenset[int]) -> bytes:
        if live != self._live:
            self._live, self._entries = live, {}
        key = (version, topic.name)
        hit = self._entries.get(key)
        if hit is not None and hit[0] is topic:
            return hit[1]
        data = _encode_topic(version, topic, live)
        self._entries[key] = (topic, data)
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


def _encode_topic(version: int, t: TopicInfo, live: frozenset[int]) -> bytes:
    cls = response_class(METADATA, version)
    part_cls = nested(cls, "MetadataResponsePartition")
    parts = []
    for i, p in enumerate(t.partitions):
        alive = p.leader in live
        parts.append(
            mk(
                part_cls,
                error_code=ErrorCode.none if alive else ErrorCode.leader_not_available,
                partition_index=i,
                leader_id=p.leader if alive else -1,
                leader_epoch=p.epoch,
                replica_nodes=(p.leader,) if alive else (),
                isr_nodes=(p.leader,) if alive else (),
                offline_replicas=(),
            )
        )
    topic_cls = nested(cls, "MetadataResponseTopic")
    return _encode(topic_cls, mk(topic_cls, error_code=ErrorCode.none, name=t.name,
                                 topic_id=_topic_uuid(t.topic_id), is_internal=t.internal,
                                 partitions=tuple(parts), topic_authorized_operations=-2147483648))


@cache
def _envelope_layout(version: int) -> tuple[int, int, bool]:
    """(bytes of the empty topics array, bytes after it, flexible) for this response version.

    The fields after ``topics`` are plain int32s (``cluster_authorized_operations``,
    v8-v10), then, in flexible versions, the count of tagged fields (none are sent).
    """
    cls = response_class(METADATA, version)
    names = [f.name for f in dataclasses.fields(cls)]
    after = dataclasses.fields(cls)[names.index("topics") + 1:]
    if any(f.metadata.get("kafka_type") != "int32" or "tag" in f.metadata for f in after):
        raise AssertionError(f"Metadata v{version} has fields after topics this encoder does not know")
    flexible = bool(cls.__flexible__)
    return (1 if flexible else 4), 4 * len(after) + (1 if flexible else 0), flexible


def _spliced(version: int, envelope: Any, topics: list[bytes]) -> EncodedBody:
    """The response ``envelope`` (built with no topics) with the encoded ``topics`` in place."""
    cls = response_class(METADATA, version)
    empty_len, suffix_len, flexible = _envelope_layout(version)
    whole = _encode(cls, envelope)
    cut = len(whole) - suffix_len - empty_len
    count = io.BytesIO()
    if flexible:
        write_compact_array_length(count, len(topics))
    else:
        write_legacy_array_length(count, i32(len(topics)))
    return EncodedBody([whole[:cut], count.getvalue(), *topics, whole[len(whole) - suffix_len:]])


async def metadata(ctx: BrokerContext, version: int, req: Any) -> Any:
    cls = response_class(METADATA, version)
    broker_cls = nested(cls, "MetadataResponseBroker")
    topic_cls = nested(cls, "MetadataResponseTopic")

    state = ctx.state()
    if req.topics is None:
        names: list[str | None] = [n for n, t in state.topics.items() if not t.internal]
        wanted_ids: dict[str, uuid.UUID] = {}
    else:
        names = []
        wanted_ids = {}
        for t in req.topics:
            if getattr(t, "name", None):
                names.append(t.name)
            elif getattr(t, "topic_id", None) and t.topic_id != ZERO_UUID:
                found = state.topic_by_id(str(t.topic_id))
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
        if name not in state.topics and allow_auto:
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
        topics.append(entries.get(version, t, frozenset(state.brokers)))
    for _, tid in wanted_ids.items():
        topics.append(_encode(topic_cls, mk(topic_cls, error_code=ErrorCode.unknown_topic_id, name=None,
                                            topic_id=tid, is_internal=False, partitions=())))
    entries.prune(state.topics.keys())
    brokers = tuple(
        mk(broker_cls, node_id=n, host=b.host, port=b.port, rack=None) for n, b in sorted(state.brokers.items())
    )
    envelope = mk(
        cls,
        brokers=brokers,
        cluster_id=ctx.cluster_id,
        controller_id=controller_id(ctx),
        topics=(),
        cluster_authorized_operations=-2147483648,
    )
    return _spliced(version, envelope, topics)


def controller_id(ctx: BrokerContext) -> int:
    return ctx.controller_node()


async def describe_cluster(ctx: BrokerContext, version: int, req: Any) -> Any:
    cls = response_class(DESCRIBE_CLUSTER, version)
    broker_cls = nested(cls, "DescribeClusterBroker")
    state = ctx.state()
    brokers = tuple(
        mk(broker_cls, broker_id=n, host=b.host, port=b.port, rack=None, is_fenced=False)
        for n, b in sorted(state.brokers.items())
    )
    return mk(
        cls,
        error_code=ErrorCode.none,
        error_message=None,
        endpoint_type=1,
        cluster_id=ctx.cluster_id,
        controller_id=controller_id(ctx),
        brokers=brokers,
        cluster_authorized_operations=-2147483648,
    )
