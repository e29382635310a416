"""Cluster links: topics of a running Apache Kafka mirrored at the same offsets (docs/architecture.md#cluster-links).

``source`` reaches the source cluster, ``batches`` picks what a Fetch answer
may append, ``mirror`` is one partition's copy loop on its leader, ``offsets``
copies consumer group offsets, ``topics`` makes Floe's topics follow the
source's, ``service`` runs them all on a broker. The package's top is the
produce check: pure, so the produce handler imports nothing else of it.
"""

from __future__ import annotations

from ..cluster.metadata import ClusterState


def produce_refusal(state: ClusterState, topic: str, index: int) -> str | None:
    """Why produce to ``topic``/``index`` is refused (it is a link's mirror, not promoted yet), or None."""
    for name, link in state.links.items():
        linked = link.topics.get(topic)
        if linked is not None and index not in linked.promoted:
            return (f"{topic}-{index} is a read-only mirror of {link.definition.source.bootstrap_servers} "
                    f"(cluster link {name}): produce there, or promote the topic first")
    return None
