"""A metadata push costs the partitions it changed, not the partitions this broker holds.

``Leadership.sync`` runs on every push; at 100,000 partitions a walk over every
held partition per push made one move cost hundreds of milliseconds. These
tests hold 10,000 partitions in a fake partition manager that counts what is
looked at, and check a push that moves one partition opens or closes that one
and walks nothing else.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from floe_broker.cluster.delta import Delta, apply, diff
from floe_broker.cluster.metadata import BrokerInfo, ClusterState, LedPartitions
from floe_broker.leadership import Leadership

PARTITIONS = 10_000
PER_TOPIC = 1_000
ME = 1


class CountingDict(dict):  # type: ignore[type-arg]
    """The held partitions; counts every walk over all of them."""

    walks = 0

    def __iter__(self) -> Iterator[Any]:
        CountingDict.walks += 1
        return super().__iter__()

    def items(self):  # type: ignore[no-untyped-def]
        CountingDict.walks += 1
        return super().items()

    def keys(self):  # type: ignore[no-untyped-def]
        CountingDict.walks += 1
        return super().keys()

    def values(self):  # type: ignore[no-untyped-def]
        CountingDict.walks += 1
        return super().values()


@dataclass
class FakePartition:
    topic_id: str
    epoch: int


@dataclass
class FakeHeld:
    partition: FakePartition


class FakeManager:
    """Just what ``Leadership.sync`` uses of a ``PartitionManager``, with counters."""

    def __init__(self) -> None:
        self.held: CountingDict = CountingDict()
        self.opened: list[tuple[str, int, int]] = []
        self.closed: list[tuple[str, int, bool]] = []
        self.refuse: set[tuple[str, int]] = set()

    def get(self, topic: str, index: int) -> FakePartition | None:
        h = dict.get(self.held, (topic, index))
        return h.partition if h is not None else None

    async def open(self, topic: str, topic_id: str, index: int, epoch: int) -> FakePartition | None:
        self.opened.append((topic, index, epoch))
        if (topic, index) in self.refuse:
            return None
        part = FakePartition(topic_id, epoch)
        dict.__setitem__(self.held, (topic, index), FakeHeld(part))
        return part

    async def close(self, topic: str, index: int, *, graceful: bool = True) -> None:
        self.closed.append((topic, index, graceful))
        dict.pop(self.held, (topic, index), None)


def cluster() -> ClusterState:
    s = ClusterState(version=1)
    for n in (1, 2):
        s.brokers[n] = BrokerInfo(n, f"s{n}", "h", 9000 + n, f"h:{n}", 0)
    for t in range(PARTITIONS // PER_TOPIC):
        s.create_topic(f"t{t}", PER_TOPIC)
    return s


def pushed(before: ClusterState, change: Callable[[ClusterState], object]) -> ClusterState:
    """The next version as a broker gets it: the controller's delta, over the wire form, applied."""
    new = before.copy()
    change(new)
    new.version += 1
    return apply(before, Delta.from_bytes(diff(before, new).to_bytes()))


async def started(state: ClusterState) -> tuple[Leadership, FakeManager]:
    pm = FakeManager()
    lead = Leadership(state=lambda: state, node_id=lambda: ME, draining=lambda: False,
                      controller=None)  # type: ignore[arg-type]
    lead.partitions = pm  # type: ignore[assignment]
    await lead.sync(state)
    assert len(pm.held) == PARTITIONS // 2  # placement alternates between the two brokers
    pm.opened.clear()
    CountingDict.walks = 0
    return lead, pm


def led_index(state: ClusterState, topic: str, node: int) -> int:
    return next(i for i, p in enumerate(state.topics[topic].partitions) if p.leader == node)


async def test_a_move_away_closes_that_partition_and_walks_nothing_else() -> None:
    state = cluster()
    lead, pm = await started(state)
    i = led_index(state, "t3", ME)
    after = pushed(state, lambda s: s.set_leader("t3", i, 2))

    await lead.sync(after)

    assert pm.closed == [("t3", i, False)]
    assert pm.opened == []
    assert CountingDict.walks == 0
    assert lead.last_sync_looked_at == 1


async def test_a_move_here_opens_that_partition_at_the_new_epoch() -> None:
    state = cluster()
    lead, pm = await started(state)
    i = led_index(state, "t7", 2)
    after = pushed(state, lambda s: s.set_leader("t7", i, ME))

    await lead.sync(after)

    assert pm.opened == [("t7", i, 1)]
    assert pm.closed == []
    assert CountingDict.walks == 0
    assert lead.last_sync_looked_at == 1


async def test_a_new_epoch_here_reopens_gracefully() -> None:
    state = cluster()
    lead, pm = await started(state)
    i = led_index(state, "t0", ME)
    after = pushed(state, lambda s: s.set_leader("t0", i, ME))  # a reclaim: same leader, epoch + 1

    await lead.sync(after)

    assert pm.closed == [("t0", i, True)]
    assert pm.opened == [("t0", i, 1)]
    assert CountingDict.walks == 0


async def test_a_partition_that_would_not_open_is_tried_again_on_the_next_push() -> None:
    state = cluster()
    lead, pm = await started(state)
    i = led_index(state, "t1", 2)
    pm.refuse.add(("t1", i))
    after = pushed(state, lambda s: s.set_leader("t1", i, ME))
    await lead.sync(after)
    assert pm.get("t1", i) is None

    pm.refuse.clear()
    later = pushed(after, lambda s: s.set_leader("t2", led_index(s, "t2", 2), 2))  # unrelated
    await lead.sync(later)

    assert pm.get("t1", i) is not None
    assert lead.last_sync_looked_at <= 2


async def test_deleting_a_topic_closes_only_its_partitions() -> None:
    state = cluster()
    lead, pm = await started(state)
    after = pushed(state, lambda s: s.topics.pop("t5"))

    await lead.sync(after)

    mine = {("t5", i) for i, p in enumerate(state.topics["t5"].partitions) if p.leader == ME}
    assert {(t, i) for t, i, _ in pm.closed} == mine
    assert CountingDict.walks == 0
    assert lead.last_sync_looked_at == PER_TOPIC // 2


def test_led_partitions_reports_only_what_changed() -> None:
    state = cluster()
    led = LedPartitions()
    assert led.update(state, ME) is None  # the first look is a full one
    i, j = led_index(state, "t4", ME), led_index(state, "t4", 2)
    after = pushed(state, lambda s: s.set_leaders([("t4", i, 2), ("t4", j, ME)]))

    assert led.update(after, ME) == {("t4", i), ("t4", j)}
    assert ("t4", i) not in led.led
    assert led.led[("t4", j)] == (after.topics["t4"].topic_id, 1)
    assert led.update(after, ME) == set()


async def test_a_sync_that_failed_is_followed_by_a_full_one() -> None:
    state = cluster()
    lead, pm = await started(state)
    i = led_index(state, "t6", ME)
    after = pushed(state, lambda s: s.set_leader("t6", i, 2))
    real_close = pm.close

    async def failing(topic: str, index: int, *, graceful: bool = True) -> None:
        raise OSError("store unavailable")

    pm.close = failing  # type: ignore[method-assign]
    with pytest.raises(OSError):
        await lead.sync(after)
    assert pm.get("t6", i) is not None  # still held, though no longer ours

    pm.close = real_close  # type: ignore[method-assign]
    later = pushed(after, lambda s: None)
    await lead.sync(later)  # nothing changed in this push, but the failed one is made good
    assert pm.get("t6", i) is None
