"""Server-side assignors of KIP-848 consumer groups: ``uniform`` and ``range``, pure functions.

The client names one with ``group.remote.assignor`` (ConsumerGroupHeartbeat
``server_assignor``); ``uniform`` is the default, as in Kafka. Both take the
members' subscriptions (topic ids), the partition count of every subscribed
topic and the current target assignment, and return a new target
assignment. Members are ordered by instance id when they have one, else by
member id, so the result is deterministic (a restarted static member gets the
same partitions back).

- ``uniform`` spreads all partitions of all subscribed topics evenly over the
  members (each gets the floor or the ceiling of partitions / members among
  the partitions it may have), keeping every partition where it already is
  when that does not break the balance (sticky), as Kafka's UniformAssignor.
- ``range`` assigns each topic on its own, in contiguous ranges over the
  members subscribed to it, the first ``partitions % members`` getting one
  more, as Kafka's RangeAssignor: members subscribed to the same topics get
  the same partition numbers of each (co-partitioning).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

Assignment = dict[str, set[int]]  # topic id -> partitions
DEFAULT_ASSIGNOR = "uniform"


def member_order(members: Mapping[str, str | None]) -> list[str]:
    """Member ids in the assignors' order: by instance id if set, else by member id."""
    return sorted(members, key=lambda m: (members[m] is None, members[m] or m, m))


def range_assign(subscriptions: Mapping[str, set[str]], instances: Mapping[str, str | None],
                 partitions: Mapping[str, int], current: Mapping[str, Assignment]) -> dict[str, Assignment]:
    out: dict[str, Assignment] = {m: {} for m in subscriptions}
    order = member_order(instances)
    for topic in sorted({t for s in subscriptions.values() for t in s if t in partitions}):
        members = [m for m in order if topic in subscriptions[m]]
        count = partitions[topic]
        per, extra = divmod(count, len(members))
        start = 0
        for i, m in enumerate(members):
            n = per + (1 if i < extra else 0)
            if n:
                out[m][topic] = set(range(start, start + n))
            start += n
    return out


def uniform_assign(subscriptions: Mapping[str, set[str]], instances: Mapping[str, str | None],
                   partitions: Mapping[str, int], current: Mapping[str, Assignment]) -> dict[str, Assignment]:
    order = member_order(instances)
    out: dict[str, Assignment] = {m: {} for m in subscriptions}
    if not order:
        return out
    every = [(t, p) for t in sorted({t for s in subscriptions.values() for t in s if t in partitions})
             for p in range(partitions[t])]
    # Quotas: floor for everyone, one more for the first members while extra partitions remain.
    base, extra = divmod(len(every), len(order))
    quota = {m: base + (1 if i < extra else 0) for i, m in enumerate(order)}
    owner: dict[tuple[str, int], str] = {}
    count = dict.fromkeys(order, 0)
    # 1. Stickiness: keep what a member has, within its quota and its subscription.
    for m in order:
        for t in sorted(current.get(m, {})):
            if t not in subscriptions[m] or t not in partitions:
                continue
            for p in sorted(current[m][t]):
                if p < partitions[t] and (t, p) not in owner and count[m] < quota[m]:
                    owner[(t, p)] = m
                    count[m] += 1
    # 2. The rest, in topic and partition order, to the least-loaded member subscribed to it.
    for tp in every:
        if tp in owner:
            continue
        able = [m for m in order if tp[0] in subscriptions[m]]
        under = [m for m in able if count[m] < quota[m]]
        m = min(under or able, key=lambda x: (count[x] - quota[x], order.index(x)))
        owner[tp] = m
        count[m] += 1
    for (t, p), m in owner.items():
        out[m].setdefault(t, set()).add(p)
    return out


ASSIGNORS: dict[str, Callable[[Mapping[str, set[str]], Mapping[str, str | None], Mapping[str, int],
                               Mapping[str, Assignment]], dict[str, Assignment]]] = {
    "uniform": uniform_assign,
    "range": range_assign,
}
