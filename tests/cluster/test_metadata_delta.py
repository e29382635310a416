"""Metadata deltas: every kind of change round-trips, new fields travel, gaps are refused."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest

from floe_api.internal import AddPartitions, AlterConfigs, ConfigChange, CreateTopic, DeleteTopic, Reclaim
from floe_broker.cluster.delta import Delta, Gap, apply, diff
from floe_broker.cluster.metadata import BrokerInfo, ClusterState, LedPartitions, apply_op


def base() -> ClusterState:
    s = ClusterState(version=7)
    for n in (1, 2):
        s.brokers[n] = BrokerInfo(n, f"s{n}", "h", 9000 + n, f"h:{n}", 0)
    s.next_node_id = 3
    s.create_topic("a", 4, {"retention.ms": "1000"})
    s.create_topic("b", 2)
    return s


def committed(before: ClusterState, change: Callable[[ClusterState], object]) -> tuple[ClusterState, Delta]:
    new = before.copy()
    change(new)
    new.version += 1
    # through the wire form, as a push or the bucket carries it
    return new, Delta.from_bytes(diff(before, new, by="ctl").to_bytes())


CHANGES: dict[str, Callable[[ClusterState], object]] = {
    "nothing": lambda s: None,
    "create": lambda s: apply_op(s, CreateTopic(name="c", partitions=3, configs={"x": "y"})),
    "delete": lambda s: apply_op(s, DeleteTopic(name="a")),
    "grow": lambda s: apply_op(s, AddPartitions(name="b", total=5)),
    "configs": lambda s: apply_op(s, AlterConfigs(name="a", changes=[ConfigChange(key="retention.ms", kind=1),
                                                                       ConfigChange(key="k", kind=0, value="v")])),
    "reclaim": lambda s: apply_op(s, Reclaim(name="a", index=1, node=s.topics["a"].partitions[1].leader,
                                             epoch=0)),
    "move": lambda s: s.set_leaders([("a", 0, 2), ("b", 1, 1)]),
    "broker": lambda s: s.brokers.pop(1),
    "draining": lambda s: setattr(s.brokers[2], "draining", True),
    "fence": lambda s: s.fenced.update({"s1": 1}),
    "ids": lambda s: setattr(s, "next_producer_id", s.next_producer_id + 1000),
    "recreate": lambda s: (apply_op(s, DeleteTopic(name="b")), apply_op(s, CreateTopic(name="b", partitions=1))),
}


@pytest.mark.parametrize("name", list(CHANGES))
def test_a_delta_makes_the_same_version_the_controller_made(name: str) -> None:
    before = base()
    snapshot_before = before.to_bytes()
    new, delta = committed(before, CHANGES[name])
    assert apply(before, delta).to_bytes() == new.to_bytes()
    assert before.to_bytes() == snapshot_before  # neither the commit nor the apply touched the old version


def test_a_move_carries_the_moved_partition_only_and_shares_the_rest() -> None:
    before = ClusterState()
    before.brokers[1] = BrokerInfo(1, "s1", "h", 1, "h:1", 0)
    before.brokers[2] = BrokerInfo(2, "s2", "h", 2, "h:2", 0)
    for i in range(20):
        before.create_topic(f"t{i}", 1000)
    other = 3 - before.topics["t3"].partitions[17].leader
    new, delta = committed(before, lambda s: s.set_leader("t3", 17, other))
    assert list(delta.topics) == ["t3"] and list(delta.topics["t3"]["changed"]) == ["17"]  # type: ignore[index]
    assert delta.sections == {}
    assert len(delta.to_bytes()) < 400
    assert all(new.topics[n] is before.topics[n] for n in before.topics if n != "t3")  # shared, not copied


def test_a_delta_applies_only_on_the_version_before_it() -> None:
    before = base()
    _, delta = committed(before, CHANGES["move"])
    with pytest.raises(Gap):
        apply(apply(before, delta), delta)  # once is enough
    with pytest.raises(Gap):
        apply(ClusterState(version=before.version - 1), delta)  # a version missed in between
    with pytest.raises(Gap):
        apply(before, Delta(version=before.version + 1, base=True))  # a base marker is never applied


@dataclass
class WithQuotas(ClusterState):
    """A field added by a later feature, with no delta code of its own."""

    quotas: dict[str, dict[str, float]] = field(default_factory=dict)


def test_a_new_field_is_persisted_and_carried_by_deltas_without_code_of_its_own() -> None:
    before = WithQuotas()
    before.create_topic("t", 2)
    new, delta = committed(before, lambda s: s.quotas.update({"user:alice": {"producer_byte_rate": 1e6}}))  # type: ignore[attr-defined]
    assert delta.sections == {"quotas": {"user:alice": {"producer_byte_rate": 1e6}}}
    applied = apply(before, delta)
    assert isinstance(applied, WithQuotas) and applied.quotas == new.quotas  # type: ignore[attr-defined]
    assert WithQuotas.from_bytes(new.to_bytes()).quotas == new.quotas  # type: ignore[attr-defined]
    # a snapshot written before the field existed reads with its default
    assert WithQuotas.from_bytes(ClusterState(version=3).to_bytes()).quotas == {}


def test_a_snapshot_in_the_old_format_reads_as_written() -> None:
    """``meta/cluster`` as brokers before deltas wrote it (indented, every field spelled out)."""
    doc = {"version": 12, "next_node_id": 4, "next_producer_id": 3000,
           "brokers": {"3": {"session": "s3", "host": "h", "port": 9092, "http": "h:9644",
                             "registered_ms": 5, "draining": False}},
           "topics": {"t": {"id": "6f1c0d0e-7b7e-4b49-9d0a-1b2c3d4e5f60", "internal": False,
                            "configs": {"retention.ms": "5"}, "partitions": [[3, 2, "s3"], [-1, 0, ""]]}},
           "fenced": {"s1": 1}, "retired": {"s0": [0]}}
    state = ClusterState.from_bytes(json.dumps(doc, indent=1, sort_keys=True).encode())
    written = json.loads(state.to_bytes())
    # what was there reads back as it was; fields added since (listeners, SCRAM, ACLs, quotas, dynamic
    # broker configs, cluster links and the producer ids they mirrored) get defaults
    assert {k: written[k] for k in doc} == {**doc, "brokers": {"3": {**doc["brokers"]["3"], "listeners": {}}}}
    assert {k: written[k] for k in written.keys() - doc.keys()} == {"scram": {}, "acls": [], "quotas": {},
                                                                   "broker_configs": {}, "links": {},
                                                                   "mirrored_producer_id_max": -1}


def test_led_partitions_follow_every_version_and_look_only_at_changed_topics() -> None:
    state = base()
    led = LedPartitions()
    assert led.of(state, 1) == full_scan(state, 1)
    new, _ = committed(state, CHANGES["move"])
    newer, _ = committed(new, CHANGES["create"])
    for s in (new, newer, state):
        assert led.of(s, 1) == full_scan(s, 1) and led.of(s, 2) == full_scan(s, 2)


def full_scan(state: ClusterState, node: int) -> dict[tuple[str, int], tuple[str, int]]:
    return {(t.name, i): (t.topic_id, p.epoch)
            for t in state.topics.values() for i, p in enumerate(t.partitions) if p.leader == node}
