"""Catch-up reads of consolidated objects: 4 MiB blocks, read-ahead bounded by the reader's range."""

from __future__ import annotations

import asyncio
import os

from floe_broker.log.cache import BlockCache
from floe_broker.storage import layout
from floe_broker.storage.instrumented import InstrumentedStore
from floe_broker.storage.memory import MemoryStore

MIB = 1024 * 1024


async def settle(cache: BlockCache) -> None:
    """Wait for the read-ahead the cache started (its background tasks)."""
    await asyncio.gather(*list(cache._tasks), return_exceptions=True)


async def cache_over(key: str, size: int) -> tuple[InstrumentedStore, BlockCache, bytes]:
    store = InstrumentedStore(MemoryStore())
    data = os.urandom(size)
    await store.put(key, data)
    store.reset_stats()
    return store, BlockCache(store, block_size=MIB, capacity_bytes=64 * MIB), data


def range_gets(store: InstrumentedStore) -> int:
    return sum(store.stats()["requests"].get("get_range", {}).values())


async def test_a_sequential_catch_up_costs_one_get_per_4_mib() -> None:
    key = layout.consolidated_key(1, "s", 1)
    store, cache, data = await cache_over(key, 16 * MIB)
    pos = 0
    while pos < 16 * MIB:  # a consumer reading 512 KiB at a time, front to back
        assert await cache.read(key, pos, 512 * 1024, 16 * MIB) == data[pos : pos + 512 * 1024]
        pos += 512 * 1024
        await settle(cache)
    assert range_gets(store) == 4


async def test_read_ahead_stops_at_the_end_of_the_readers_range() -> None:
    key = layout.consolidated_key(1, "s", 1)
    store, cache, data = await cache_over(key, 12 * MIB)
    assert await cache.read(key, 100, 1000, until=2000) == data[100:1100]
    await settle(cache)
    assert range_gets(store) == 1, "the next block belongs to other partitions: not fetched"
    await cache.read(key, 4 * MIB + 10, 10, until=10 * MIB)
    await settle(cache)
    assert range_gets(store) == 3, "a range that continues is read ahead"


async def test_wal_objects_keep_the_configured_block_size() -> None:
    key = layout.wal_key(1, "s", 1)
    store, cache, data = await cache_over(key, 3 * MIB)
    assert await cache.read(key, 0, 10) == data[:10]
    await settle(cache)
    reqs = store.stats()["requests"]["get_range"]
    assert reqs == {"wal": 2}, "a 1 MiB block and the read-ahead of the next"
