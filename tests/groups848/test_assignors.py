"""The server-side assignors on their own: what Kafka's uniform and range assignors would hand out."""

from __future__ import annotations

from floe_broker.groups.assignors import range_assign, uniform_assign


def flat(a: dict[str, set[int]]) -> set[tuple[str, int]]:
    return {(t, p) for t, ps in a.items() for p in ps}


def test_range_gives_contiguous_ranges_the_first_members_one_more() -> None:
    subs = {"m1": {"t"}, "m2": {"t"}, "m3": {"t"}}
    out = range_assign(subs, dict.fromkeys(subs), {"t": 7}, {})
    assert out == {"m1": {"t": {0, 1, 2}}, "m2": {"t": {3, 4}}, "m3": {"t": {5, 6}}}


def test_range_co_partitions_topics_with_the_same_subscribers() -> None:
    subs = {"a": {"x", "y"}, "b": {"x", "y"}}
    out = range_assign(subs, dict.fromkeys(subs), {"x": 4, "y": 4}, {})
    assert out["a"] == {"x": {0, 1}, "y": {0, 1}} and out["b"] == {"x": {2, 3}, "y": {2, 3}}


def test_range_orders_static_members_by_instance_id() -> None:
    subs = {"zzz": {"t"}, "aaa": {"t"}}
    out = range_assign(subs, {"zzz": "pod-0", "aaa": "pod-1"}, {"t": 4}, {})
    assert out["zzz"] == {"t": {0, 1}}, "pod-0 comes first whatever its member id"


def test_uniform_balances_over_all_topics_and_covers_every_partition() -> None:
    subs = {f"m{i}": {"x", "y"} for i in range(3)}
    out = uniform_assign(subs, dict.fromkeys(subs), {"x": 5, "y": 3}, {})
    sizes = sorted(len(flat(a)) for a in out.values())
    assert sizes == [2, 3, 3]
    every = set().union(*(flat(a) for a in out.values()))
    assert every == {("x", p) for p in range(5)} | {("y", p) for p in range(3)}
    assert sum(len(flat(a)) for a in out.values()) == len(every), "no partition twice"


def test_uniform_is_sticky_a_new_member_takes_only_its_share() -> None:
    subs = {"a": {"t"}, "b": {"t"}}
    before = uniform_assign(subs, dict.fromkeys(subs), {"t": 12}, {})
    subs3 = {**subs, "c": {"t"}}
    after = uniform_assign(subs3, dict.fromkeys(subs3), {"t": 12}, before)
    assert [len(flat(after[m])) for m in ("a", "b", "c")] == [4, 4, 4]
    assert flat(after["a"]) <= flat(before["a"]) and flat(after["b"]) <= flat(before["b"]), "nothing else moves"


def test_uniform_respects_different_subscriptions() -> None:
    subs = {"a": {"x"}, "b": {"x", "y"}}
    out = uniform_assign(subs, dict.fromkeys(subs), {"x": 2, "y": 2}, {})
    assert not out["a"].get("y"), "a member never gets a topic it does not subscribe to"
    assert len(flat(out["a"]) | flat(out["b"])) == 4
