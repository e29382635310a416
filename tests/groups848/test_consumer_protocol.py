"""The KIP-848 state machine on its own: reconciliation, epochs, static members, regex, expiry, restore."""

from __future__ import annotations

from typing import Any

from kio.schema.errors import ErrorCode

from floe_broker.groups.consumer_protocol import ConsumerGroup, HeartbeatReply, HeartbeatRequest, TopicMeta

TOPICS = {"orders": TopicMeta("id-orders", "orders", 4), "audit": TopicMeta("id-audit", "audit", 2),
          "__consumer_offsets": TopicMeta("id-off", "__consumer_offsets", 16)}


def hb(g: ConsumerGroup, now: float, member: str, epoch: int, topics: dict[str, TopicMeta] = TOPICS,
       **kw: Any) -> HeartbeatReply:
    if epoch == 0:
        kw.setdefault("rebalance_timeout_ms", 10_000)
        kw.setdefault("owned", {})
        if "subscribed_regex" not in kw:
            kw.setdefault("subscribed_names", ("orders",))
    return g.heartbeat(now, HeartbeatRequest(member_id=member, member_epoch=epoch, session_timeout_ms=5_000, **kw),
                       topics)


def parts(a: dict[str, set[int]] | None) -> set[int]:
    return set().union(*a.values()) if a else set()


def never_owned_twice(g: ConsumerGroup) -> None:
    seen: set[tuple[str, int]] = set()
    for m in g.members.values():
        mine = {(t, p) for part in (m.assigned, m.revoking) for t, ps in part.items() for p in ps}
        assert not seen & mine, f"owned twice: {seen & mine}"
        seen |= mine


def test_second_member_gets_partitions_only_after_the_first_revokes_them() -> None:
    g = ConsumerGroup("g")
    a = hb(g, 0, "a", 0)
    assert a.epoch == 1 and parts(a.assignment) == {0, 1, 2, 3}
    b = hb(g, 1, "b", 0)
    assert b.epoch == 2 and parts(b.assignment) == set(), "nothing until a has released its share"
    never_owned_twice(g)
    a2 = hb(g, 2, "a", 1, owned={"id-orders": {0, 1, 2, 3}})
    assert a2.epoch == 1, "a keeps its epoch while revoking"
    assert len(parts(a2.assignment)) == 2
    kept = parts(a2.assignment)
    assert g.state_name == "Reconciling"
    b2 = hb(g, 3, "b", 2, owned={})
    assert parts(b2.assignment) == set(), "still pending revocation"
    a3 = hb(g, 4, "a", 1, owned={"id-orders": kept})
    assert a3.epoch == 2
    b3 = hb(g, 5, "b", 2, owned={})
    assert parts(b3.assignment) == {0, 1, 2, 3} - kept
    never_owned_twice(g)
    assert g.state_name == "Stable"


def test_epochs_are_checked() -> None:
    g = ConsumerGroup("g")
    hb(g, 0, "a", 0)
    assert hb(g, 1, "a", 7).error == ErrorCode.fenced_member_epoch
    assert hb(g, 1, "nobody", 3).error == ErrorCode.unknown_member_id
    assert g.check_member_epoch("a", 0) == ErrorCode.stale_member_epoch
    assert g.check_member_epoch("a", 2) == ErrorCode.fenced_member_epoch
    assert g.check_member_epoch("a", 1) == ErrorCode.none
    assert g.check_member_epoch("", -1) == ErrorCode.none


def test_bad_joins_get_kafkas_errors() -> None:
    g = ConsumerGroup("g")
    assert hb(g, 0, "", 0).error == ErrorCode.invalid_request
    assert hb(g, 0, "a", 0, server_assignor="sticky").error == ErrorCode.unsupported_assignor
    assert hb(g, 0, "a", 0, subscribed_regex="orders(").error == ErrorCode.invalid_regular_expression
    assert hb(g, 0, "a", 0, owned={"id-orders": {1}}).error == ErrorCode.invalid_request
    assert not g.members


def test_leave_frees_the_partitions_for_the_others() -> None:
    g = ConsumerGroup("g")
    hb(g, 0, "a", 0)
    hb(g, 0, "b", 0)
    a = hb(g, 1, "a", 1, owned={"id-orders": {0, 1, 2, 3}})
    hb(g, 1, "a", 1, owned={"id-orders": parts(a.assignment)})
    hb(g, 1, "b", 2, owned={})
    left = hb(g, 2, "b", -1)
    assert left.epoch == -1 and "b" not in g.members
    a = hb(g, 3, "a", 2, owned={"id-orders": parts(a.assignment)})
    assert parts(a.assignment) == {0, 1, 2, 3}


def test_session_expiry_and_revocation_timeout_remove_members() -> None:
    g = ConsumerGroup("g")
    hb(g, 0, "a", 0)
    hb(g, 0, "b", 0)
    assert not g.tick(4.0)
    hb(g, 4.0, "a", 1, owned={"id-orders": {0, 1, 2, 3}})  # a must revoke two, b stays silent
    assert g.tick(5.5) and set(g.members) == {"a"}, "b's session expired"
    g2 = ConsumerGroup("g2")
    hb(g2, 0, "a", 0, rebalance_timeout_ms=1_000)
    hb(g2, 0, "b", 0)
    hb(g2, 0.1, "a", 1, owned={"id-orders": {0, 1, 2, 3}})
    hb(g2, 1.0, "b", 2, owned={})
    assert g2.tick(1.5) and set(g2.members) == {"b"}, "a did not revoke within its rebalance timeout"


def test_static_member_leaves_and_comes_back_with_its_partitions() -> None:
    g = ConsumerGroup("g")
    first = hb(g, 0, "a", 0, instance_id="pod-0")
    assert hb(g, 1, "a", -2).epoch == -2
    other = hb(g, 1, "x", 0, instance_id="pod-1")
    assert other.error == ErrorCode.none and parts(other.assignment) == set(), "pod-0's partitions stay its own"
    again = hb(g, 2, "a2", 0, instance_id="pod-0")
    assert again.error == ErrorCode.none
    assert parts(again.assignment) and parts(again.assignment) <= parts(first.assignment), "it keeps its share"
    never_owned_twice(g)
    assert "a" not in g.members and "a2" in g.members
    taken = hb(g, 3, "a3", 0, instance_id="pod-0")
    assert taken.error == ErrorCode.unreleased_instance_id


def test_regex_subscription_picks_up_a_new_topic_and_never_internal_ones() -> None:
    g = ConsumerGroup("g")
    r = hb(g, 0, "a", 0, subscribed_regex="ord.*|__.*")
    assert set(r.assignment or {}) == {"id-orders"}
    grown = {**TOPICS, "ordersEU": TopicMeta("id-eu", "ordersEU", 3)}
    r = hb(g, 1, "a", r.epoch, topics=grown, owned=r.assignment)
    assert set(r.assignment or {}) == {"id-orders", "id-eu"} and r.epoch == 2


def test_new_partitions_are_picked_up() -> None:
    g = ConsumerGroup("g")
    r = hb(g, 0, "a", 0)
    more = {**TOPICS, "orders": TopicMeta("id-orders", "orders", 6)}
    r = hb(g, 1, "a", r.epoch, topics=more, owned=r.assignment)
    assert parts(r.assignment) == set(range(6))


def test_range_is_chosen_by_the_members() -> None:
    g = ConsumerGroup("g")
    hb(g, 0, "b", 0, server_assignor="range")
    hb(g, 0, "a", 0, server_assignor="range")
    assert g.assignor == "range"
    assert g.target["a"] == {"id-orders": {0, 1}} and g.target["b"] == {"id-orders": {2, 3}}


def test_snapshot_restores_epochs_and_assignments() -> None:
    g = ConsumerGroup("g")
    hb(g, 0, "a", 0, instance_id="pod-0")
    hb(g, 0, "b", 0, subscribed_regex="audit")
    hb(g, 0.5, "a", 1, owned={"id-orders": {0, 1, 2, 3}})
    back = ConsumerGroup.restore("g", g.snapshot(), now=100.0)
    assert back.snapshot() == g.snapshot()
    assert all(m.last_seen == 100.0 for m in back.members.values()), "sessions restart at the takeover"
