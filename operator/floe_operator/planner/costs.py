"""Pod deletion costs: which broker an HPA scale-in should remove first.

Kubernetes removes the pods with the lowest ``controller.kubernetes.io/pod-deletion-cost``
first when a ReplicaSet shrinks. Giving the least-loaded broker the lowest
cost means a scale-in stops the broker whose SIGTERM drain has the least to
hand over. Costs are ranks (0, 1, 2, ...), not loads, so they only change
when the order does and the operator rarely has to patch a pod.
"""

from __future__ import annotations

from collections.abc import Sequence

from floe_operator.planner.balancer import IDLE_LOAD, BrokerInfo, PartitionInfo


def deletion_costs(brokers: Sequence[BrokerInfo], partitions: Sequence[PartitionInfo]) -> dict[int, int]:
    """node_id -> cost. Draining brokers first (they are leaving anyway), then by load
    (partition count when the cluster is idle), then fewer partitions, then node id."""
    load = {b.node_id: 0.0 for b in brokers}
    count = {b.node_id: 0 for b in brokers}
    for p in partitions:
        if p.leader in load:
            load[p.leader] += max(p.load, 0.0)
            count[p.leader] += 1
    idle = sum(load.values()) < IDLE_LOAD
    draining = {b.node_id for b in brokers if b.draining}
    order = sorted(
        load,
        key=lambda n: (n not in draining, count[n] if idle else load[n], count[n], n),
    )
    return {node: rank for rank, node in enumerate(order)}
