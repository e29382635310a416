"""What a producing client saw during a fault, from a :class:`~tests.test_cluster.Ledger`'s acknowledgements.

The ledger proves no acknowledged record was lost and no offset has two
values; these helpers add the timing a client feels: which partitions were
acknowledged in a window, the last acknowledgement a partition got before a
moment (a cut-off leader must stop acknowledging within its session timeout),
and waiting until every partition is acknowledged again.
"""

from __future__ import annotations

from collections.abc import Iterable

from tests.infra.broker import wait_until
from tests.test_cluster import Ledger


def acked_between(ledger: Ledger, start: float, end: float = float("inf")) -> set[int]:
    """Partitions that got an acknowledgement in ``[start, end)`` (``time.monotonic()`` times)."""
    with ledger.lock:
        return {part for at, part in ledger.acked_at if start <= at < end}


def acks_between(ledger: Ledger, partitions: Iterable[int], start: float, end: float) -> list[tuple[float, int]]:
    """The acknowledgements of ``partitions`` in ``[start, end)``."""
    wanted = set(partitions)
    with ledger.lock:
        return [(at, part) for at, part in ledger.acked_at if start <= at < end and part in wanted]


def wait_every_partition_served(ledger: Ledger, since: float, timeout: float) -> float:
    """Wait until every partition got an acknowledgement after ``since``; return the seconds it took."""
    wait_until(lambda: len(acked_between(ledger, since)) == ledger.partitions, timeout, interval=0.2,
               message=f"every partition of {ledger.topic} acknowledged again "
                       f"(so far {sorted(acked_between(ledger, since))})")
    with ledger.lock:
        first: dict[int, float] = {}
        for at, part in ledger.acked_at:
            if at >= since:
                first.setdefault(part, at)
    return max(first.values()) - since if first else float("nan")


def first_acks_after(ledger: Ledger, partitions: Iterable[int], since: float) -> dict[int, float]:
    """Seconds from ``since`` to each partition's first acknowledgement after it (missing: none yet)."""
    wanted = set(partitions)
    first: dict[int, float] = {}
    with ledger.lock:
        for at, part in ledger.acked_at:
            if at >= since and part in wanted:
                first.setdefault(part, at - since)
    return first
