"""The Metadata response spliced from cached per-topic entries is byte for byte what kio encodes."""

from __future__ import annotations

import uuid
from types import SimpleNamespace
from typing import Any

import pytest
from kio.schema.errors import ErrorCode

from floe_broker.cluster.metadata import BrokerInfo, ClusterState
from floe_broker.config import BrokerConfig
from floe_broker.handlers import meta
from floe_broker.protocol import codec
from floe_broker.protocol.build import mk, nested, response_class


class Ctx:
    """What the Metadata handler reads of a broker."""

    def __init__(self, state: ClusterState) -> None:
        self._state = state
        self.cluster_id = "scale"
        self.config = BrokerConfig(storage="memory://meta", auto_create_topics=False, default_partitions=1)

    def state(self) -> ClusterState:
        return self._state

    def controller_node(self) -> int:
        return 1


def reference(version: int, state: ClusterState, names: list[str]) -> Any:
    """The response as one kio entity, the way it was built before entries were cached."""
    cls = response_class(3, version)
    part_cls, topic_cls = nested(cls, "MetadataResponsePartition"), nested(cls, "MetadataResponseTopic")
    topics = []
    for name in names:
        t = state.topics.get(name)
        if t is None:
            topics.append(mk(topic_cls, error_code=ErrorCode.unknown_topic_or_partition, name=name,
                             topic_id=uuid.UUID(int=0), is_internal=False, partitions=(),
                             topic_authorized_operations=-2147483648))
            continue
        parts = tuple(mk(part_cls, error_code=ErrorCode.none if p.leader in state.brokers
                         else ErrorCode.leader_not_available, partition_index=i,
                         leader_id=p.leader if p.leader in state.brokers else -1, leader_epoch=p.epoch,
                         replica_nodes=(p.leader,) if p.leader in state.brokers else (),
                         isr_nodes=(p.leader,) if p.leader in state.brokers else (), offline_replicas=())
                      for i, p in enumerate(t.partitions))
        topics.append(mk(topic_cls, error_code=ErrorCode.none, name=name, topic_id=uuid.UUID(t.topic_id),
                         is_internal=t.internal, partitions=parts, topic_authorized_operations=-2147483648))
    brokers = tuple(mk(nested(cls, "MetadataResponseBroker"), node_id=n, host=b.host, port=b.port, rack=None)
                    for n, b in sorted(state.brokers.items()))
    return mk(cls, brokers=brokers, cluster_id="scale", controller_id=1, topics=tuple(topics),
              cluster_authorized_operations=-2147483648)


def joined(frame: codec.Frame) -> bytes:
    return b"".join(bytes(p) for p in frame)


@pytest.mark.parametrize("version", range(1, 13))
async def test_spliced_metadata_is_what_kio_encodes(version: int) -> None:
    state = ClusterState()
    state.brokers[1] = BrokerInfo(1, "s1", "host-1", 9092, "h:1", 0)
    state.brokers[2] = BrokerInfo(2, "s2", "host-2", 9093, "h:2", 0)
    state.create_topic("a", 3)
    state.create_topic("b", 2)
    state.set_leader("b", 1, 7)  # a leader that is not live
    ctx = Ctx(state)
    for names in (None, ["b", "missing", "a"]):
        req = SimpleNamespace(topics=None if names is None else [SimpleNamespace(name=n) for n in names],
                              allow_auto_topic_creation=False)
        for _ in range(2):  # the second time from the cache
            got = joined(codec.encode_response(3, version, 5, await meta.metadata(ctx, version, req)))  # type: ignore[arg-type]
            want = joined(codec.encode_response(3, version, 5, reference(version, state, names or ["a", "b"])))
            assert got == want


async def test_a_changed_topic_is_encoded_again_and_the_others_come_from_the_cache() -> None:
    state = ClusterState()
    state.brokers[1] = BrokerInfo(1, "s1", "h", 9092, "h:1", 0)
    state.brokers[2] = BrokerInfo(2, "s2", "h", 9093, "h:2", 0)
    for i in range(3):
        state.create_topic(f"t{i}", 4)
    entries = meta.TopicEntries()
    live = frozenset(state.brokers)
    first = {n: entries.get(12, t, live) for n, t in state.topics.items()}
    moved = state.copy()
    moved.set_leader("t1", 2, 2 if moved.topics["t1"].partitions[2].leader == 1 else 1)
    second = {n: entries.get(12, t, live) for n, t in moved.topics.items()}
    assert second["t0"] is first["t0"] and second["t2"] is first["t2"]  # the very bytes, not re-encoded
    assert second["t1"] != first["t1"]
    assert entries.get(12, moved.topics["t0"], frozenset({1})) != first["t0"]  # a broker left: rebuilt
