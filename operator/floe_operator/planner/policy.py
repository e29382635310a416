"""When to plan: the one rule shared by the kopf loop and the local autoscaler.

:class:`RebalancePolicy` is called once per interval with the cluster as it
is now. It plans at once when there is something a person is waiting for (a
new broker that should take load, or a draining broker that still leads
partitions); for plain skew it waits until the skew has stayed above the
threshold for ``skew_intervals`` consecutive calls, so one noisy rate window
does not move partitions. It never plans while a previous plan is still
running. It keeps one counter and no clock, so tests drive it call by call.
"""

from __future__ import annotations

from collections.abc import Sequence

from floe_operator.planner import balancer
from floe_operator.planner.balancer import BrokerInfo, Move, PartitionInfo


class RebalancePolicy:
    def __init__(self, *, max_skew_percent: float = 20.0, skew_intervals: int = 3) -> None:
        if max_skew_percent < 0:
            raise ValueError(f"max_skew_percent must be >= 0, not {max_skew_percent}")
        if skew_intervals < 1:
            raise ValueError(f"skew_intervals must be >= 1, not {skew_intervals}")
        self.max_skew_percent = max_skew_percent
        self.skew_intervals = skew_intervals
        # Consecutive calls that saw skew above the threshold.
        self.skewed_intervals = 0

    def decide(
        self, brokers: Sequence[BrokerInfo], partitions: Sequence[PartitionInfo], *, plan_running: bool
    ) -> list[Move]:
        """[] = nothing to do. Plans at once when a broker is new (scale-out) or any partition leads on a
        draining broker; otherwise only after skew stayed above max_skew_percent for skew_intervals
        consecutive calls; never while plan_running."""
        if plan_running:
            # The cluster is changing under us; judge skew afresh afterwards.
            self.skewed_intervals = 0
            return []
        draining = {b.node_id for b in brokers if b.draining}
        urgent = any(b.new for b in brokers) or any(p.leader in draining for p in partitions)
        if not urgent:
            if balancer.skew_percent(brokers, partitions) > self.max_skew_percent:
                self.skewed_intervals += 1
            else:
                self.skewed_intervals = 0
            if self.skewed_intervals < self.skew_intervals:
                return []
        self.skewed_intervals = 0
        return balancer.plan(brokers, partitions, max_skew_percent=self.max_skew_percent)
