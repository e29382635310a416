"""Pod deletion costs: which broker an HPA scale-in should remove first.

Kubernetes removes the pods with the lowest ``controller.kubernetes.io/pod-deletion-cost``
first when a ReplicaSet shrinks. Giving the least-loaded broker the lowest
cost means a scale-in stops the broker whose SIGTERM drain has the least to
hand over. Costs are ranks (0, 1, 2, ...), not loads, and loads are compared
with a margin of ``resolution_percent`` of the mean against the previous
ranks, so two brokers with nearly equal load do not swap costs on
every measurement and the operator rarely has to patch a pod.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from floe_operator.planner.balancer import IDLE_LOAD, BrokerInfo, PartitionInfo


def deletion_costs(
    brokers: Sequence[BrokerInfo],
    partitions: Sequence[PartitionInfo],
    *,
    previous: Mapping[int, int] | None = None,
    resolution_percent: float = 10.0,
) -> dict[int, int]:
    """node_id -> cost. Draining brokers first (they are leaving anyway), then by load
    (partition count when the cluster is idle); a broker overtakes one ranked below it
    in ``previous`` only when lighter by more than ``resolution_percent`` of the mean."""
    load = {b.node_id: 0.0 for b in brokers}
    count = {b.node_id: 0 for b in brokers}
    for p in partitions:
        if p.leader in load:
            load[p.leader] += max(p.load, 0.0)
            count[p.leader] += 1
    total = sum(load.values())
    idle = total < IDLE_LOAD
    step = total / max(len(load), 1) * resolution_percent / 100.0
    draining = {b.node_id for b in brokers if b.draining}
    weight = {n: float(count[n]) if idle else load[n] for n in load}
    margin = 0.0 if idle else step
    before = previous or {}
    # Start from the previous order (new brokers by load), then let a broker pass
    # its neighbour only when clearly lighter. Every swap removes an inversion of
    # the (draining first, lighter first) order, so this ends.
    order = sorted(load, key=lambda n: (before.get(n, math.inf), n not in draining, weight[n], count[n], n))

    def ahead(a: int, b: int) -> bool:
        if (a in draining) != (b in draining):
            return a in draining
        return weight[a] < weight[b] - margin

    swapped = True
    while swapped:
        swapped = False
        for i in range(len(order) - 1):
            if ahead(order[i + 1], order[i]):
                order[i], order[i + 1] = order[i + 1], order[i]
                swapped = True
    return {node: rank for rank, node in enumerate(order)}
