"""The partition balancer: brokers, leaders and load in, a short list of moves out.

Pure and deterministic: no I/O, no clock, no randomness, and the input order
does not matter (everything is sorted by stable keys first). The kopf loop
(``floe_operator.reconcile.rebalance``) and the local autoscaler both call
:func:`plan` through :class:`floe_operator.planner.policy.RebalancePolicy`.

How a plan is made
------------------
Moving leadership is metadata-only in Floe, so a move is cheap but not free:
each one briefly answers NOT_LEADER to that partition's clients. The plan
therefore aims for *few* moves, not a perfect spread.

1. **Evacuate.** Every partition led by a draining broker, or by a broker
   that is not in ``brokers`` at all (gone), goes to the least-loaded
   non-draining broker, heaviest partition first (the LPT rule).
2. **Balance.** Let ``mean`` be the total load over the non-draining brokers
   and the band ``[mean*(1-s), mean*(1+s)]`` with ``s = max_skew_percent/100``.
   The *excess* of a cluster is the sum over brokers of how far each lies
   outside the band. While the excess is above zero, make the single move
   (from a broker above the mean to one below it) that lowers the excess the
   most; ties go to the lighter partition, then to stable keys. Stop when the
   excess is zero or no move lowers it.

Why this reaches balance when it can: if no partition is heavier than
``s*mean`` (half the band), then whenever some broker is outside the band
there is a move that strictly lowers the excess: a broker above the band
gives any partition to a broker below the mean (neither crosses the band),
and a broker below the band takes any partition from one above the mean.
The excess only ever falls, so the loop ends, and it ends at zero. When a
single partition is heavier than that, balance may be impossible; the
balancer then stops at the first state no single move improves.

Why there is no ping-pong: the result is a state no move improves (or a
balanced one). Planning again from it with the same loads returns no moves.

An idle cluster (total load below :data:`IDLE_LOAD`) has no load to balance;
it balances partition *counts* instead, so a new broker still gets its share.
:func:`skew_percent` still reports load skew (0 for an idle cluster).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

# Below this total (bytes/s over the whole cluster) load is noise: balance counts.
IDLE_LOAD = 1.0


@dataclass(frozen=True)
class BrokerInfo:
    node_id: int
    draining: bool = False
    new: bool = False  # just became ready (scale-out)


@dataclass(frozen=True)
class PartitionInfo:
    topic: str
    partition: int
    leader: int
    load: float  # bytes/s in + out over the window


@dataclass(frozen=True)
class Move:
    topic: str
    partition: int
    source: int
    target: int
    load: float


def skew_percent(brokers: Sequence[BrokerInfo], partitions: Sequence[PartitionInfo]) -> float:
    """Max |broker load - mean| / mean * 100 over the non-draining brokers.

    ``mean`` is the *whole* cluster's load (including partitions still on
    draining or gone brokers) spread over the non-draining brokers: the load
    each would carry once balanced. 0 when the total load is 0 or no broker
    can take load.
    """
    active = sorted({b.node_id for b in brokers if not b.draining})
    total = sum(max(p.load, 0.0) for p in partitions)
    if not active or total <= 0.0:
        return 0.0
    mean = total / len(active)
    loads = dict.fromkeys(active, 0.0)
    for p in partitions:
        if p.leader in loads:
            loads[p.leader] += max(p.load, 0.0)
    return max(abs(load - mean) for load in loads.values()) / mean * 100.0


def plan(
    brokers: Sequence[BrokerInfo],
    partitions: Sequence[PartitionInfo],
    *,
    max_skew_percent: float = 20.0,
    max_moves: int | None = None,
) -> list[Move]:
    """The moves that evacuate draining brokers and bring the rest within the band.

    Moves are returned sorted by (topic, partition); each partition appears at
    most once, with its current leader as ``source``. ``max_moves`` caps the
    number of moves (evacuations are chosen first). Raises ``ValueError`` for
    a partition listed twice or a negative skew.
    """
    if max_skew_percent < 0:
        raise ValueError(f"max_skew_percent must be >= 0, not {max_skew_percent}")
    keys = [(p.topic, p.partition) for p in partitions]
    if len(set(keys)) != len(keys):
        raise ValueError("a partition is listed more than once")
    active = sorted({b.node_id for b in brokers if not b.draining})
    if not active or not partitions or (max_moves is not None and max_moves <= 0):
        return []

    ordered = sorted(partitions, key=lambda p: (p.topic, p.partition))
    total = sum(max(p.load, 0.0) for p in ordered)
    idle = total < IDLE_LOAD
    weight = {(p.topic, p.partition): (1.0 if idle else max(p.load, 0.0)) for p in ordered}
    origin = {(p.topic, p.partition): p.leader for p in ordered}
    state = _State(active=active, weight=weight, leader=dict(origin), origin=origin, max_moves=max_moves)

    state.evacuate(ordered)
    state.balance(max_skew_percent / 100.0)

    return [
        Move(topic=p.topic, partition=p.partition, source=p.leader, target=state.leader[key], load=p.load)
        for p in ordered
        if state.leader[key := (p.topic, p.partition)] != p.leader
    ]


Key = tuple[str, int]


class _State:
    """A working assignment: who leads what, and each active broker's load."""

    def __init__(
        self,
        *,
        active: list[int],
        weight: dict[Key, float],
        leader: dict[Key, int],
        origin: dict[Key, int],
        max_moves: int | None,
    ) -> None:
        self.active = active
        self.weight = weight
        self.leader = leader
        self.origin = origin
        self.max_moves = max_moves
        self.moved = 0  # partitions whose leader differs from ``origin``
        self.load = dict.fromkeys(active, 0.0)
        self.members: dict[int, set[Key]] = {b: set() for b in active}
        for key, node in leader.items():
            if node in self.load:
                self.load[node] += weight[key]
                self.members[node].add(key)

    def can_move(self, key: Key) -> bool:
        """Within ``max_moves``: a partition already moved may move again for free."""
        if self.max_moves is None or self.leader[key] != self.origin[key]:
            return True
        return self.moved < self.max_moves

    def move(self, key: Key, target: int) -> None:
        source = self.leader[key]
        self.moved += (target != self.origin[key]) - (source != self.origin[key])
        if source in self.load:
            self.load[source] -= self.weight[key]
            self.members[source].discard(key)
        self.load[target] += self.weight[key]
        self.members[target].add(key)
        self.leader[key] = target

    def evacuate(self, ordered: list[PartitionInfo]) -> None:
        """Heaviest first, each onto the least-loaded active broker (ties: lowest node id)."""
        stranded = [p for p in ordered if p.leader not in self.load]
        stranded.sort(key=lambda p: (-self.weight[(p.topic, p.partition)], p.topic, p.partition))
        for p in stranded:
            key = (p.topic, p.partition)
            if not self.can_move(key):
                return
            target = min(self.active, key=lambda b: (self.load[b], b))
            self.move(key, target)

    def balance(self, skew: float) -> None:
        total = sum(self.load.values())
        if total <= 0.0:
            return
        mean = total / len(self.active)
        lo, hi = mean * (1.0 - skew), mean * (1.0 + skew)
        eps = mean * 1e-9

        def outside(x: float) -> float:
            return max(0.0, x - hi) + max(0.0, lo - x)

        # The excess strictly falls each round, so this cap is only a guard.
        for _ in range(20 * len(self.leader) + 100):
            if sum(outside(x) for x in self.load.values()) <= eps:
                return
            best: tuple[float, bool, float, str, int, int] | None = None
            sources = [b for b in self.active if self.load[b] > mean + eps]
            targets = [b for b in self.active if self.load[b] < mean - eps]
            for src in sources:
                for key in self.members[src]:
                    w = self.weight[key]
                    if w <= 0.0 or not self.can_move(key):
                        continue
                    before_src = outside(self.load[src])
                    after_src = outside(self.load[src] - w)
                    for dst in targets:
                        gain = before_src - after_src + outside(self.load[dst]) - outside(self.load[dst] + w)
                        if gain <= eps:
                            continue
                        new_move = self.leader[key] == self.origin[key] and dst != self.origin[key]
                        # Most gain; then no new move; then less load moved; then stable keys.
                        rank = (-gain, new_move, w, key[0], key[1], dst)
                        if best is None or rank < best:
                            best = rank
            if best is None:
                return
            self.move((best[3], best[4]), best[5])
