"""What a load reader returns, and how a partition's load is counted.

Both readers (``prometheus`` and ``scrape``) measure the same counters the
brokers export and hand the loops one :class:`LoadSnapshot`, so the HPA-style
metric and the balancer's input are computed the same way wherever they come
from.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

PARTITION_IN = "floe_partition_bytes_in_total"
PARTITION_OUT = "floe_partition_bytes_out_total"
BROKER_IN = "floe_bytes_in_total"

PartitionRates = dict[tuple[str, int], float]


class LoadUnavailable(Exception):
    """The load could not be read; ``str()`` is one sentence for a person (it ends up in a status)."""


@dataclass(frozen=True)
class LoadSnapshot:
    """Rates in bytes/s.

    ``partitions`` is each partition's load as :func:`partition_load` counts
    it; ``broker_bytes_in`` is keyed by scrape target (``host:port``);
    ``bytes_in`` is the cluster's total, None while nothing has been measured
    yet (an HPA without its metric keeps the replica count).
    """

    partitions: Mapping[tuple[str, int], float] = field(default_factory=dict)
    broker_bytes_in: Mapping[str, float] = field(default_factory=dict)
    bytes_in: float | None = None


class LoadReader(Protocol):
    async def load(self) -> LoadSnapshot:
        """The current snapshot; raises :class:`LoadUnavailable`."""
        ...


def partition_load(ins: Mapping[tuple[str, int], float], outs: Mapping[tuple[str, int], float]) -> PartitionRates:
    """Each partition's bytes in + out, with its *out* taken as its bytes in times its topic's out/in.

    After a leader moves, the partition's consumers pause until they find the new leader, so its
    own bytes out dip for a while and a freshly moved partition looked up to half as heavy as its
    peers, which made the balancer pile more onto the broker that had just received it. Bytes in
    follow a move within a round trip (producers get the new leader in the NOT_LEADER answer), and
    the topic's out/in ratio is steady across the moves of a few of its partitions.
    """
    topic_in: dict[str, float] = {}
    topic_out: dict[str, float] = {}
    for (t, _), v in ins.items():
        topic_in[t] = topic_in.get(t, 0.0) + v
    for (t, _), v in outs.items():
        topic_out[t] = topic_out.get(t, 0.0) + v
    out: PartitionRates = {}
    for key in {*ins, *outs}:
        t = key[0]
        if topic_in.get(t, 0.0) > 0:
            out[key] = ins.get(key, 0.0) * (1.0 + topic_out.get(t, 0.0) / topic_in[t])
        else:  # a topic nobody writes to: what is read is the load
            out[key] = outs.get(key, 0.0)
    return out
