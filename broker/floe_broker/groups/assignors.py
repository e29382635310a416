"""Server-side assignors of KIP-848 consumer groups: ``uniform`` and ``range``, pure functions.

The client names one with ``group.remote.assignor`` (ConsumerGroupHeartbeat
``server_assignor``); ``uniform`` is the default, as in Kafka. Both take the
members' subscriptions (topic ids), the partition count of every subscribed
topic and the current target assignment, and return a new target
assignment. Members are ordered by instance id when they have one, else by
member id, so the result is deterministic (a restarted static member gets the
same partitions back).

- ``uniform`` spreads all partitions of all subscribed topics evenly over the
  members (each gets the floor or the ceiling of partitions / members), as
  Kafka's UniformAssignor does for members with the same subscription: each
  member first keeps what it has up to its quota (sticky), then the free
  partitions (those nobody had in topic and partition order, then those given
  up) go out in contiguous runs, member after member, the extra ones to the
  last members. Members with different
  subscriptions get the same treatment, with a partition nobody's quota
  took going to its least-loaded subscriber (Kafka's heterogeneous builder
  balances differently there).
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
    base, extra = divmod(len(every), len(order))
    owner: dict[tuple[str, int], str] = {}
    count = dict.fromkeys(order, 0)
    released: list[tuple[str, int]] = []  # beyond a member's quota: handed out after the never-owned ones
    # 1. Stickiness, as Kafka: each member keeps up to its quota of what it has (within its
    #    subscription), one more while extra partitions remain.
    for m in order:
        kept = [(t, p) for t in sorted(current.get(m, {})) if t in subscriptions[m] and t in partitions
                for p in sorted(current[m][t]) if p < partitions[t]]
        quota = base
        if len(kept) > base and extra > 0:
            quota, extra = base + 1, extra - 1
        for tp in kept[:quota]:
            if tp not in owner:
                owner[tp] = m
                count[m] += 1
        released.extend(kept[quota:])
    # 2. The rest in topic and partition order, in contiguous runs, member after member; the
    #    extra partitions left go to the last members; partitions a member gave up come after
    #    those nobody had (Kafka's homogeneous uniform builder).
    gone = set(released)
    free = [tp for tp in every if tp not in owner and tp not in gone]
    free += [tp for tp in dict.fromkeys(released) if tp not in owner]
    unfilled = [m for m in order if count[m] < base or (count[m] == base and extra > 0)]
    with_extra = set(unfilled[len(unfilled) - extra:]) if extra > 0 else set()
    for m in unfilled:
        quota = base + (1 if m in with_extra else 0)
        able = [tp for tp in free if tp[0] in subscriptions[m]]
        take = able[: max(quota - count[m], 0)]
        for tp in take:
            owner[tp] = m
            count[m] += 1
        taken = set(take)
        free = [tp for tp in free if tp not in taken]
    # 3. Anything left (members with different subscriptions): the least loaded subscriber.
    for tp in free:
        subscribers = [x for x in order if tp[0] in subscriptions[x]]
        chosen = min(subscribers, key=lambda x: (count[x], order.index(x)))
        owner[tp] = chosen
        count[chosen] += 1
    for (t, p), m in owner.items():
        out[m].setdefault(t, set()).add(p)
    return out


ASSIGNORS: dict[str, Callable[[Mapping[str, set[str]], Mapping[str, str | None], Mapping[str, int],
                               Mapping[str, Assignment]], dict[str, Assignment]]] = {
    "uniform": uniform_assign,
    "range": range_assign,
}
