"""The cluster view of ``GET /v1/cluster``, built from the broker's metadata."""

from __future__ import annotations

from floe_api.public import BrokerView, ClusterView, PartitionView

from ..cluster.metadata import ClusterState


def cluster_view(state: ClusterState, *, controller: int) -> ClusterView:
    counts = state.partition_counts()
    return ClusterView(
        controller=controller,
        version=state.version,
        brokers=[
            BrokerView(node_id=n, host=b.host, port=b.port, http=b.http, draining=b.draining,
                       partitions=counts.get(n, 0))
            for n, b in sorted(state.brokers.items())
        ],
        partitions=[
            PartitionView(topic=t.name, partition=i, leader=p.leader, epoch=p.epoch)
            for t in state.topics.values()
            for i, p in enumerate(t.partitions)
        ],
    )
