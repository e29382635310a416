"""Pydantic models of the admin API; the operator's broker client reuses them."""

from __future__ import annotations

from pydantic import BaseModel

from ..cluster.metadata import ClusterState


class BrokerView(BaseModel):
    node_id: int
    host: str
    port: int
    http: str
    draining: bool
    partitions: int


class PartitionView(BaseModel):
    topic: str
    partition: int
    leader: int
    epoch: int


class ClusterView(BaseModel):
    controller: int
    version: int
    brokers: list[BrokerView]
    partitions: list[PartitionView]


class Move(BaseModel):
    topic: str
    partition: int
    to: int


class ReassignRequest(BaseModel):
    moves: list[Move]


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
