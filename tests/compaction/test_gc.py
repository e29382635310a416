"""After a compaction swap (or a DeleteRecords), the collector deletes the old objects and nothing else.

In-process: real WAL writer, partition manager, compactor and collector over
the memory store; what is read back is decoded by kafka-python.
"""

from __future__ import annotations

from floe_broker.cluster.controller import fence_session
from floe_broker.log.gc import WalCollector
from floe_broker.log.partition import Segment
from floe_broker.storage.memory import MemoryStore
from tests.compaction.helpers import keyed_batch
from tests.compaction.test_algorithm import compact, consolidate, node, read
from tests.test_log_invariants import topic_state


async def test_old_objects_go_once_the_batches_name_the_compacted_ones() -> None:
    store = MemoryStore()
    _, topic = topic_state()
    a = await node(store)
    part = await a.pm.open(topic.name, topic.topic_id, 0, epoch=1)
    for value in (b"a", b"b", b"c"):
        await a.produce(part, keyed_batch([(b"k", value), (b"j", value)]))
        await consolidate(a)
    old = {p.key for p in part.pieces if isinstance(p, Segment)}
    assert len(old) == 3
    assert await compact(a, part) == 1
    new = {p.key for p in part.pieces if isinstance(p, Segment)}
    assert not new & old
    gc = WalCollector(store, grace_s=0)
    await gc.run_once(live_sessions={"s1"})
    assert old <= set(await store.list("data/")), "nothing goes before a batch names the new pieces"
    await consolidate(a)
    await consolidate(a)  # carried twice: no batch a successor may fall back to names the old pieces
    await gc.run_once(live_sessions={"s1"})
    data = set(await store.list("data/"))
    assert not old & data and new <= data
    expected = await read(a, part)
    assert [(o, v) for o, _, v, _ in expected] == [(4, b"c"), (5, b"c")]
    await a.wal.stop()
    await fence_session(store, 1, "s1")
    b = await node(store, 2, "s2")
    part_b = await b.pm.open(topic.name, topic.topic_id, 0, epoch=2)
    assert await read(b, part_b) == expected
    await b.wal.stop()


async def test_delete_records_lets_the_collector_drop_wholly_deleted_objects() -> None:
    store = MemoryStore()
    _, topic = topic_state()
    a = await node(store, configs=lambda t, k: None)
    part = await a.pm.open(topic.name, topic.topic_id, 0, epoch=1)
    for value in (b"a", b"b", b"c"):
        await a.produce(part, keyed_batch([(b"k", value)] * 10))
        await consolidate(a)
    first = part.pieces[0]
    assert isinstance(first, Segment) and first.last == 9
    assert await a.pm.delete_records(topic.name, 0, 15) == 15
    await consolidate(a)  # retention drops the segment wholly below the log start
    await consolidate(a)
    await WalCollector(store, grace_s=0).run_once(live_sessions={"s1"})
    assert first.key not in await store.list("data/")
    assert [o for o, *_ in await read(a, part)][0] == 10  # the batch holding offset 15 is returned whole
    await a.wal.stop()
