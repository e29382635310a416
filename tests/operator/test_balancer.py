"""The pure balancer and its policy: properties (hypothesis) plus a few worked examples."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from floe_operator.planner import BrokerInfo, Move, PartitionInfo, RebalancePolicy, balancer, plan, skew_percent

# Float slack for "within the band" (the balancer works to 1e-9 of the mean).
SLACK = 1e-6


@st.composite
def clusters(
    draw: st.DrawFn, *, min_brokers: int = 1, max_brokers: int = 8, max_partitions: int = 40, draining: bool = True
) -> tuple[list[BrokerInfo], list[PartitionInfo]]:
    """Brokers (some draining, some new) and partitions led by any of them, or by a gone broker."""
    ids = draw(st.lists(st.integers(0, 50), min_size=min_brokers, max_size=max_brokers, unique=True))
    brokers = [
        BrokerInfo(
            node_id=i, draining=draining and draw(st.booleans()) and draw(st.booleans()), new=draw(st.booleans())
        )
        for i in ids
    ]
    leaders = st.sampled_from(ids) | st.just(99)  # 99: a broker that is gone
    n = draw(st.integers(0, max_partitions))
    topics = st.sampled_from(["a", "b", "orders"])
    keys = draw(st.lists(st.tuples(topics, st.integers(0, 63)), min_size=n, max_size=n, unique=True))
    loads = st.one_of(st.just(0.0), st.floats(0.0, 1e6), st.integers(0, 1000).map(float))
    partitions = [PartitionInfo(topic=t, partition=p, leader=draw(leaders), load=draw(loads)) for t, p in keys]
    return brokers, partitions


skews = st.sampled_from([5.0, 10.0, 20.0, 50.0])


def apply(partitions: Sequence[PartitionInfo], moves: Sequence[Move]) -> list[PartitionInfo]:
    target = {(m.topic, m.partition): m.target for m in moves}
    return [
        PartitionInfo(p.topic, p.partition, target.get((p.topic, p.partition), p.leader), p.load) for p in partitions
    ]


def active(brokers: Sequence[BrokerInfo]) -> set[int]:
    return {b.node_id for b in brokers if not b.draining}


def reachable(brokers: Sequence[BrokerInfo], partitions: Sequence[PartitionInfo], max_skew: float) -> bool:
    """Balance is certainly reachable when load is real and no partition is heavier
    than half the band (max_skew % of the mean): any out-of-band broker can then
    shed or take one partition without the other side crossing the band."""
    nodes = active(brokers)
    total = sum(p.load for p in partitions)
    if not nodes or total < balancer.IDLE_LOAD:
        return False
    mean = total / len(nodes)
    return all(p.load <= mean * max_skew / 100.0 * (1 + 1e-9) for p in partitions)


@settings(max_examples=300, deadline=None)
@given(clusters(), skews)
def test_moves_are_well_formed(cluster: tuple[list[BrokerInfo], list[PartitionInfo]], max_skew: float) -> None:
    brokers, partitions = cluster
    moves = plan(brokers, partitions, max_skew_percent=max_skew)
    by_key = {(p.topic, p.partition): p for p in partitions}
    assert len({(m.topic, m.partition) for m in moves}) == len(moves), "a partition moved twice in one plan"
    for m in moves:
        p = by_key[(m.topic, m.partition)]
        assert m.source == p.leader and m.load == p.load
        assert m.target != m.source
        assert m.target in active(brokers), f"moved onto draining or unknown broker {m.target}"
    assert moves == sorted(moves, key=lambda m: (m.topic, m.partition))


@settings(max_examples=300, deadline=None)
@given(clusters(), skews)
def test_nothing_left_on_draining_or_gone_brokers(
    cluster: tuple[list[BrokerInfo], list[PartitionInfo]], max_skew: float
) -> None:
    brokers, partitions = cluster
    assume(active(brokers))
    after = apply(partitions, plan(brokers, partitions, max_skew_percent=max_skew))
    assert all(p.leader in active(brokers) for p in after)


@st.composite
def reachable_clusters(draw: st.DrawFn) -> tuple[list[BrokerInfo], list[PartitionInfo], float]:
    """A cluster plus a max skew wide enough that balance is reachable (see ``reachable``),
    with leaders piled onto a few brokers so the balancer has work to do."""
    brokers, partitions = draw(clusters(max_partitions=60))
    loads = st.integers(1, 20).map(float)
    partitions = [PartitionInfo(p.topic, p.partition, p.leader, draw(loads)) for p in partitions]
    nodes = active(brokers)
    assume(nodes and sum(p.load for p in partitions) >= balancer.IDLE_LOAD)
    mean = sum(p.load for p in partitions) / len(nodes)
    tightest = 100.0 * max(p.load for p in partitions) / mean
    max_skew = tightest * draw(st.sampled_from([1.0, 1.01, 1.5, 3.0]))
    assert reachable(brokers, partitions, max_skew)
    return brokers, partitions, max_skew


@settings(max_examples=300, deadline=None)
@given(reachable_clusters())
def test_balance_is_reached_when_reachable(cluster: tuple[list[BrokerInfo], list[PartitionInfo], float]) -> None:
    brokers, partitions, max_skew = cluster
    after = apply(partitions, plan(brokers, partitions, max_skew_percent=max_skew))
    assert skew_percent(brokers, after) <= max_skew + SLACK


def test_moves_only_into_the_band_not_to_a_perfect_spread() -> None:
    """300 on one of three brokers: 120/90/90 is within 20 % and needs 18 moves, not 20."""
    brokers = [BrokerInfo(1), BrokerInfo(2), BrokerInfo(3, new=True)]
    partitions = [PartitionInfo("t", i, 1, 10.0) for i in range(30)]
    assert reachable(brokers, partitions, 20.0)
    moves = plan(brokers, partitions)
    assert len(moves) == 18
    assert skew_percent(brokers, apply(partitions, moves)) == pytest.approx(20.0)


@st.composite
def balanced_clusters(draw: st.DrawFn) -> tuple[list[BrokerInfo], list[PartitionInfo], float]:
    """Every broker within max_skew of the mean: random partitions, then one filler
    partition per broker that tops it up to the same level, give or take half the band."""
    brokers, partitions = draw(clusters(draining=False))
    max_skew = draw(skews)
    ids = sorted(active(brokers))
    partitions = [p for p in partitions if p.leader in ids]
    level = max([sum(p.load for p in partitions if p.leader == b) for b in ids] + [0.0]) + draw(st.floats(10.0, 1e6))
    for b in ids:
        jitter = draw(st.floats(-0.5, 0.5)) * max_skew / 100.0
        have = sum(p.load for p in partitions if p.leader == b)
        partitions.append(PartitionInfo("filler", b, b, level * (1.0 + jitter) - have))
    assume(skew_percent(brokers, partitions) <= max_skew)
    return brokers, partitions, max_skew


@settings(max_examples=300, deadline=None)
@given(balanced_clusters())
def test_balanced_cluster_gets_no_moves(cluster: tuple[list[BrokerInfo], list[PartitionInfo], float]) -> None:
    brokers, partitions, max_skew = cluster
    assert plan(brokers, partitions, max_skew_percent=max_skew) == []


@settings(max_examples=300, deadline=None)
@given(clusters(), skews)
def test_replanning_after_applying_moves_nothing(
    cluster: tuple[list[BrokerInfo], list[PartitionInfo]], max_skew: float
) -> None:
    """Stability: the planned state is a fixed point, reachable or not."""
    brokers, partitions = cluster
    after = apply(partitions, plan(brokers, partitions, max_skew_percent=max_skew))
    settled = [BrokerInfo(b.node_id, draining=b.draining) for b in brokers]
    assert plan(settled, after, max_skew_percent=max_skew) == []


@settings(max_examples=200, deadline=None)
@given(clusters(), skews, st.integers(1, 4))
def test_no_ping_pong_over_rounds(
    cluster: tuple[list[BrokerInfo], list[PartitionInfo]], max_skew: float, max_moves: int
) -> None:
    """Rounds capped at max_moves converge: no partition comes back to a broker it left.

    A partition may move more than once (an orphan placed first, then balanced
    on), but never back, so it leaves each broker at most once: the rounds are
    bounded by partitions x brokers, not by the partition count.
    """
    brokers, partitions = cluster
    left: set[tuple[str, int, int]] = set()
    for _round in range(len(partitions) * (len(brokers) + 1) + 2):
        moves = plan(brokers, partitions, max_skew_percent=max_skew, max_moves=max_moves)
        assert len(moves) <= max_moves
        if not moves:
            break
        for m in moves:
            assert (m.topic, m.partition, m.target) not in left, f"{m} moves back where it came from"
            left.add((m.topic, m.partition, m.source))
        partitions = apply(partitions, moves)
    else:
        pytest.fail("still moving after as many rounds as partitions")


@settings(max_examples=200, deadline=None)
@given(clusters(), skews, st.randoms(use_true_random=False))
def test_deterministic_whatever_the_input_order(
    cluster: tuple[list[BrokerInfo], list[PartitionInfo]], max_skew: float, rnd: object
) -> None:
    brokers, partitions = cluster
    first = plan(brokers, partitions, max_skew_percent=max_skew)
    shuffled_b, shuffled_p = list(brokers), list(partitions)
    rnd.shuffle(shuffled_b)  # type: ignore[attr-defined]
    rnd.shuffle(shuffled_p)  # type: ignore[attr-defined]
    assert plan(shuffled_b, shuffled_p, max_skew_percent=max_skew) == first
    assert plan(brokers, partitions, max_skew_percent=max_skew) == first


@settings(max_examples=200, deadline=None)
@given(clusters(), skews, st.integers(0, 5))
def test_max_moves_is_a_cap_and_drains_come_first(
    cluster: tuple[list[BrokerInfo], list[PartitionInfo]], max_skew: float, max_moves: int
) -> None:
    brokers, partitions = cluster
    moves = plan(brokers, partitions, max_skew_percent=max_skew, max_moves=max_moves)
    assert len(moves) <= max_moves
    stranded = sum(1 for p in partitions if p.leader not in active(brokers))
    if active(brokers):
        evacuations = sum(1 for m in moves if m.source not in active(brokers))
        assert evacuations == min(stranded, max_moves)


# -- worked examples ---------------------------------------------------------


def test_scale_out_moves_few_partitions_onto_the_new_broker() -> None:
    brokers = [BrokerInfo(1), BrokerInfo(2), BrokerInfo(3, new=True)]
    partitions = [PartitionInfo("t", i, 1 + i % 2, 100.0) for i in range(12)]
    moves = plan(brokers, partitions)
    assert {m.target for m in moves} == {3}
    assert len(moves) == 4  # 6/6/0 -> 4/4/4, the fewest possible
    assert {m.source for m in moves} == {1, 2}


def test_heavy_partition_moves_instead_of_many_light_ones() -> None:
    """Fewest moves: one heavy partition balances what would otherwise take five."""
    brokers = [BrokerInfo(1), BrokerInfo(2)]
    partitions = [PartitionInfo("t", i, 1, 10.0) for i in range(5)] + [PartitionInfo("t", 9, 1, 50.0)]
    assert plan(brokers, partitions) == [Move("t", 9, 1, 2, 50.0)]


def test_drain_evacuates_to_the_least_loaded_heaviest_first() -> None:
    brokers = [BrokerInfo(1), BrokerInfo(2), BrokerInfo(3, draining=True)]
    partitions = [
        PartitionInfo("t", 0, 1, 100.0),
        PartitionInfo("t", 1, 2, 10.0),
        PartitionInfo("t", 2, 3, 80.0),
        PartitionInfo("t", 3, 3, 20.0),
    ]
    moves = plan(brokers, partitions)
    assert moves == [Move("t", 2, 3, 2, 80.0), Move("t", 3, 3, 2, 20.0)]
    # Every partition got off broker 3 even though 1 and 2 end 100/110: within 20 %.
    assert skew_percent(brokers, apply(partitions, moves)) <= 20.0


def test_idle_cluster_balances_partition_counts() -> None:
    brokers = [BrokerInfo(1), BrokerInfo(2), BrokerInfo(3, new=True)]
    partitions = [PartitionInfo("t", i, 1, 0.0) for i in range(9)]
    moves = plan(brokers, partitions)
    after = apply(partitions, moves)
    assert sorted(sum(1 for p in after if p.leader == b) for b in (1, 2, 3)) == [3, 3, 3]
    assert skew_percent(brokers, partitions) == 0.0


def test_unreachable_balance_stops_without_oscillating() -> None:
    """One partition carries most of the load: it stays, the rest go elsewhere."""
    brokers = [BrokerInfo(1), BrokerInfo(2)]
    partitions = [PartitionInfo("t", 0, 1, 1000.0), PartitionInfo("t", 1, 1, 10.0), PartitionInfo("t", 2, 2, 10.0)]
    moves = plan(brokers, partitions)
    assert moves == [Move("t", 1, 1, 2, 10.0)]
    assert plan(brokers, apply(partitions, moves)) == []


def test_no_active_broker_means_no_moves() -> None:
    assert plan([BrokerInfo(1, draining=True)], [PartitionInfo("t", 0, 1, 5.0)]) == []
    assert skew_percent([BrokerInfo(1, draining=True)], [PartitionInfo("t", 0, 1, 5.0)]) == 0.0


def test_duplicate_partition_is_refused() -> None:
    with pytest.raises(ValueError, match="more than once"):
        plan([BrokerInfo(1)], [PartitionInfo("t", 0, 1, 1.0), PartitionInfo("t", 0, 1, 2.0)])


def test_skew_percent_definition() -> None:
    brokers = [BrokerInfo(1), BrokerInfo(2), BrokerInfo(3, draining=True)]
    # total 300 over two active brokers: mean 150; broker 1 has 200 -> 33.3 %; broker 2 has 0 -> 100 %.
    partitions = [PartitionInfo("t", 0, 1, 200.0), PartitionInfo("t", 1, 3, 100.0)]
    assert skew_percent(brokers, partitions) == pytest.approx(100.0)
    assert skew_percent(brokers, []) == 0.0


# -- the policy --------------------------------------------------------------

BALANCED = [PartitionInfo("t", 0, 1, 100.0), PartitionInfo("t", 1, 2, 100.0)]
SKEWED = [PartitionInfo("t", i, 1, 100.0) for i in range(4)] + [PartitionInfo("t", 9, 2, 100.0)]
TWO = [BrokerInfo(1), BrokerInfo(2)]


def test_policy_waits_for_skew_to_persist() -> None:
    policy = RebalancePolicy(max_skew_percent=20.0, skew_intervals=3)
    assert policy.decide(TWO, SKEWED, plan_running=False) == []
    assert policy.decide(TWO, SKEWED, plan_running=False) == []
    moves = policy.decide(TWO, SKEWED, plan_running=False)
    assert moves == plan(TWO, SKEWED) and moves
    # The count starts again after a plan.
    assert policy.decide(TWO, SKEWED, plan_running=False) == []


def test_policy_skew_streak_resets_when_balanced_in_between() -> None:
    policy = RebalancePolicy(max_skew_percent=20.0, skew_intervals=2)
    assert policy.decide(TWO, SKEWED, plan_running=False) == []
    assert policy.decide(TWO, BALANCED, plan_running=False) == []
    assert policy.decide(TWO, SKEWED, plan_running=False) == []
    assert policy.decide(TWO, SKEWED, plan_running=False) != []


def test_policy_plans_at_once_for_a_new_broker_or_a_drain() -> None:
    even = [PartitionInfo("t", i, 1 + i % 2, 100.0) for i in range(6)]
    new = [BrokerInfo(1), BrokerInfo(2), BrokerInfo(3, new=True)]
    moves = RebalancePolicy(skew_intervals=5).decide(new, even, plan_running=False)
    assert [m.target for m in moves] == [3, 3]
    draining = [BrokerInfo(1), BrokerInfo(2, draining=True)]
    assert RebalancePolicy(skew_intervals=5).decide(draining, BALANCED, plan_running=False) == [
        Move("t", 1, 2, 1, 100.0)
    ]


def test_policy_never_plans_while_a_plan_runs() -> None:
    policy = RebalancePolicy(skew_intervals=1)
    draining = [BrokerInfo(1), BrokerInfo(2, draining=True)]
    assert policy.decide(draining, BALANCED, plan_running=True) == []
    assert policy.decide(TWO, SKEWED, plan_running=True) == []
    assert policy.decide(TWO, SKEWED, plan_running=False) != []


def test_policy_rejects_nonsense() -> None:
    with pytest.raises(ValueError):
        RebalancePolicy(skew_intervals=0)
    with pytest.raises(ValueError):
        RebalancePolicy(max_skew_percent=-1)
