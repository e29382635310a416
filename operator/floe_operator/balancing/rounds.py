"""One round of either loop: the cluster and its load in, the leader moves to make out.

Both loops call :meth:`Rounds.decide` once per interval and
:func:`apply` with what it returns; they differ only in what they know about
brokers that are leaving (the local loop sent the SIGTERM itself) and in what
counts as a plan in progress (the Kubernetes loop's own running plan; locally
also a drain, which moves the draining broker's partitions itself).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from floe_api import public as schema
from floe_operator.balancing.admin import BrokerAdmin
from floe_operator.planner import BrokerInfo, Move, PartitionInfo, RebalancePolicy, skew_percent

Reason = Literal["ScaleOut", "Drain", "Skew"]


def new_brokers(view: schema.ClusterView, *, seen: Collection[int] | None, leaving: Collection[int] = ()) -> set[int]:
    """The brokers that should get their share at once, without waiting for skew to persist.

    A broker is *new* unless it is draining (or ``leaving``: known to be on its
    way out before the view says so) if the previous round did not see it, or
    (so that a restart of the loop does not miss a scale-out) if it leads
    nothing while there are at least as many partitions as brokers to take them.
    ``seen`` None means there was no previous round.
    """
    leads: dict[int, int] = {}
    for p in view.partitions:
        leads[p.leader] = leads.get(p.leader, 0) + 1
    staying = [b.node_id for b in view.brokers if not b.draining and b.node_id not in leaving]
    return {
        node
        for node in staying
        if (seen is not None and node not in seen) or (leads.get(node, 0) == 0 and len(view.partitions) >= len(staying))
    }


def planner_input(
    view: schema.ClusterView,
    loads: Mapping[tuple[str, int], float] | None,
    *,
    seen: Collection[int] | None,
    on_scale_out: bool = True,
    leaving: Collection[int] = (),
) -> tuple[list[BrokerInfo], list[PartitionInfo]]:
    """The admin view and the measured loads as the planner's input.

    ``loads`` None (no measurement) means every load is 0: the planner then
    balances partition counts. ``on_scale_out`` False marks no broker new.
    A ``leaving`` broker counts as draining, so it is never a move's target.
    """
    new = new_brokers(view, seen=seen, leaving=leaving) if on_scale_out else set()
    brokers = [
        BrokerInfo(node_id=b.node_id, draining=b.draining or b.node_id in leaving, new=b.node_id in new)
        for b in view.brokers
    ]
    partitions = [
        PartitionInfo(
            topic=p.topic,
            partition=p.partition,
            leader=p.leader,
            load=(loads or {}).get((p.topic, p.partition), 0.0),
        )
        for p in view.partitions
    ]
    return brokers, partitions


def plan_reason(brokers: Sequence[BrokerInfo], partitions: Sequence[PartitionInfo]) -> Reason:
    """Why the policy planned: a drain beats a scale-out beats skew."""
    draining = {b.node_id for b in brokers if b.draining}
    if any(p.leader in draining for p in partitions):
        return "Drain"
    if any(b.new for b in brokers):
        return "ScaleOut"
    return "Skew"


def after(partitions: Sequence[PartitionInfo], moves: Sequence[Move]) -> list[PartitionInfo]:
    """The partitions as they lead once ``moves`` are done."""
    moved = {(m.topic, m.partition): m.target for m in moves}
    return [
        PartitionInfo(p.topic, p.partition, moved.get((p.topic, p.partition), p.leader), p.load) for p in partitions
    ]


@dataclass(frozen=True)
class Round:
    """What one look at the cluster found and decided (``moves`` empty: nothing to do)."""

    brokers: list[BrokerInfo]
    partitions: list[PartitionInfo]
    moves: list[Move]

    @property
    def skew(self) -> float:
        return skew_percent(self.brokers, self.partitions)

    @property
    def skew_after(self) -> float:
        return skew_percent(self.brokers, after(self.partitions, self.moves))

    @property
    def reason(self) -> Reason:
        return plan_reason(self.brokers, self.partitions)


class Rounds:
    """One cluster's memory between rounds: the policy (and its skew counter) and the brokers seen last."""

    def __init__(self, policy: RebalancePolicy, *, on_scale_out: bool = True) -> None:
        self.policy = policy
        self.on_scale_out = on_scale_out
        self.seen: set[int] | None = None

    def decide(
        self,
        view: schema.ClusterView,
        loads: Mapping[tuple[str, int], float] | None,
        *,
        plan_running: bool,
        leaving: Collection[int] = (),
    ) -> Round:
        """Plan from ``view`` and ``loads``; never while ``plan_running`` (the cluster is changing under us)."""
        brokers, partitions = planner_input(
            view, loads, seen=self.seen, on_scale_out=self.on_scale_out, leaving=leaving
        )
        self.seen = {b.node_id for b in view.brokers}
        moves = self.policy.decide(brokers, partitions, plan_running=plan_running)
        return Round(brokers=brokers, partitions=partitions, moves=moves)


async def apply(admin: BrokerAdmin, moves: Sequence[Move], *, timeout_seconds: float = 120.0) -> schema.ReassignReply:
    """POST the moves to whichever broker ``admin`` reaches (it forwards them to the controller)."""
    return await admin.reassign([(m.topic, m.partition, m.target) for m in moves], timeout_seconds=timeout_seconds)
