"""Reading a partition tail spread over many WAL objects (what a successor recovers after kill -9).

Each produce request that a broker flushed lands in its own WAL object, so a
recovered partition's tail is one small range in each of dozens of objects.
On an object store under load every GET is a round trip of hundreds of
milliseconds: one after the other, a single fetch of such a tail took 39 s on
radosgw and consumers gave up. These tests hold a slow store and check what a
consumer would notice: the GETs of one fetch run together, and a fetch whose
``max_wait`` has passed answers with what is ready.
"""

from __future__ import annotations

import asyncio
import time

from floe_broker.log.cache import BlockCache
from floe_broker.log.partition import Partition
from floe_broker.protocol import records
from floe_broker.storage import layout
from floe_broker.storage.memory import MemoryStore
from tests.infra.batches import record_batch

CHUNKS = 12


class SlowStore(MemoryStore):
    """A store whose ranged GETs take ``delay`` seconds; remembers how many ran at once."""

    def __init__(self, delay: float) -> None:
        super().__init__()
        self.delay = delay
        self.running = 0
        self.peak = 0
        self.gets = 0

    async def get_range(self, key: str, start: int, length: int) -> bytes:
        self.running += 1
        self.gets += 1
        self.peak = max(self.peak, self.running)
        try:
            await asyncio.sleep(self.delay)
            return await super().get_range(key, start, length)
        finally:
            self.running -= 1


async def tail_in_many_wal_objects(store: SlowStore) -> Partition:
    """A partition whose CHUNKS batches are each durable in a WAL object of their own, none in memory."""
    part = Partition("t", "tid", 0, epoch=1)
    for i in range(CHUNKS):
        data = record_batch(f"value-{i}".encode() * 20)
        chunk = part.append(data, records.scan_batches(data, max_batch_bytes=1 << 20))
        key = layout.wal_key(1, "s", i)
        assert chunk.data is not None
        await store.put(key, bytes(chunk.data))
        chunk.key, chunk.pos, chunk.data = key, 0, None
    part.advance_high_watermark(part.next_offset)
    return part


def offsets(views: list[memoryview]) -> list[int]:
    return [h.base_offset for v in views for h in records.iter_headers(v)]


async def test_one_fetch_of_a_tail_in_many_wal_objects_runs_its_gets_together() -> None:
    store = SlowStore(delay=0.05)
    part = await tail_in_many_wal_objects(store)
    cache = BlockCache(store, block_size=1 << 20, capacity_bytes=64 << 20)
    views = await part.read(0, 1 << 20, cache.read, cache.read_suffix, prefetch=cache.prefetch)
    assert offsets(views) == list(range(CHUNKS)), "every batch, in order"
    assert store.peak >= 4, f"the GETs of one fetch ran {store.peak} at a time"
    assert store.gets == CHUNKS, "each WAL object read once"


async def test_read_ahead_stays_within_the_fetch_budget() -> None:
    store = SlowStore(delay=0.0)
    part = await tail_in_many_wal_objects(store)
    cache = BlockCache(store, block_size=1 << 20, capacity_bytes=64 << 20)
    size = part.pieces[0].size
    views = await part.read(0, 2 * size, cache.read, cache.read_suffix, prefetch=cache.prefetch)
    assert offsets(views) == [0, 1]
    await asyncio.gather(*list(cache._tasks), return_exceptions=True)
    assert store.gets <= 3, f"a two-batch fetch loaded {store.gets} objects"


async def test_a_fetch_past_its_deadline_answers_with_what_is_ready() -> None:
    store = SlowStore(delay=0.1)
    part = await tail_in_many_wal_objects(store)
    cache = BlockCache(store, block_size=1 << 20, capacity_bytes=64 << 20)
    started = time.monotonic()
    views = await part.read(0, 1 << 20, cache.read, cache.read_suffix, deadline=started + 0.25)
    got = offsets(views)
    assert got and got == list(range(len(got))), "a prefix of the log, at least one batch"
    assert len(got) < CHUNKS, "stopped at the deadline instead of reading all twelve objects"
    rest = await part.read(got[-1] + 1, 1 << 20, cache.read, cache.read_suffix)
    assert offsets(rest) == list(range(len(got), CHUNKS)), "the next fetch goes on where it stopped"


async def test_a_successor_reads_a_failed_sessions_wal_objects_once_for_all_its_partitions() -> None:
    """Recovery goes through the block cache: one GET per WAL object, not one per partition in it,
    and the first catch-up read after the failover costs no GET at all."""
    from floe_broker.cluster.controller import fence_session
    from floe_broker.storage.instrumented import InstrumentedStore
    from tests.test_log_invariants import Node, batch

    tid, partitions, rounds = "cd" * 16, 8, 6
    store = InstrumentedStore(MemoryStore())
    a = Node(store, 1, "a")
    parts = [await a.pm.open("t", tid, i, epoch=1) for i in range(partitions)]
    await a.pm.maintenance()  # checkpoints before any data: the whole log is tail
    for _ in range(rounds):  # every round's batches share one WAL flush
        await asyncio.gather(*(a.produce(p, batch()) for p in parts))
    await a.wal.stop()
    await fence_session(store, 1, "a")
    wal_objects = len([k for k in await store.list(layout.wal_prefix(1, "a"))])

    b = Node(store, 2, "b")
    store.reset_stats()
    opened = await asyncio.gather(*(b.pm.open("t", tid, i, epoch=2) for i in range(partitions)))
    assert [p.next_offset for p in opened if p is not None] == [rounds] * partitions
    gets = store.stats()["requests"].get("get_range", {}).get("wal", 0)
    assert gets <= wal_objects, f"{gets} ranged GETs for {wal_objects} WAL objects shared by {partitions} partitions"
    store.reset_stats()
    for p in opened:
        assert p is not None and await b.read_all(p) == list(range(rounds))
    assert store.stats()["requests"].get("get_range", {}) == {}, "the tail was read during recovery"
