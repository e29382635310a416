"""Checkpoint batches and shared consolidated objects, attacked in-process on the memory store.

The invariants of docs/architecture.md#invariants with batching in place: one
batch per round for every partition; a fenced zombie's batches are never
trusted; a successor that reads an older batch, or finds the newest one
corrupt, still recovers every acknowledged record from the WAL and reuses no
offset; a failed batch checkpoints nothing; a consolidated object shared by
two partitions stays until neither references it.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest
import structlog

from floe_broker.cluster.controller import fence_session
from floe_broker.errors import StoreUnavailable
from floe_broker.log import formats
from floe_broker.log.checkpoints import KEEP
from floe_broker.log.gc import WalCollector
from floe_broker.log.manager import Settings
from floe_broker.storage import layout
from floe_broker.storage.instrumented import InstrumentedStore, key_kind
from floe_broker.storage.memory import MemoryStore
from tests.test_log_invariants import Node, batch

TID = "ab" * 16
CONSOLIDATE = Settings(checkpoint_interval_ms=1000, compact_after_bytes=1, compact_after_ms=0,
                       retention_ms=-1, retention_bytes=-1, memory_cache_bytes=1 << 30, block_size=4096)


async def produce_n(node: Node, part: Any, n: int) -> list[int]:
    return [await node.produce(part, batch(payload=bytes([i % 256]) * 10)) for i in range(n)]


async def crash(node: Node, node_id: int, session: str, store: Any) -> None:
    """kill -9 and the controller's fence: no clean close, nothing after the tombstone."""
    await node.wal.stop()
    await fence_session(store, node_id, session)


def batch_keys(objects: list[str]) -> list[str]:
    return [k for k in objects if k.startswith(layout.BATCH_PREFIX)]


async def test_one_batch_per_round_for_every_changed_partition() -> None:
    store = InstrumentedStore(MemoryStore())
    a = Node(store, 1, "a")
    parts = [await a.pm.open("t", TID, i, epoch=1) for i in range(50)]
    for p in parts:
        await a.produce(p, batch())
    store.reset_stats()
    await a.pm.maintenance()
    puts = store.stats()["requests"]["put"]
    assert puts == {"checkpoint": 1}, "one object for all 50 partitions, no per-partition checkpoint"
    assert len(batch_keys(await store.list("meta/"))) == 1
    store.reset_stats()
    await a.pm.maintenance()
    assert "put" not in store.stats()["requests"], "nothing changed: nothing written"


async def test_successor_recovers_from_the_batch_and_the_wal_tail() -> None:
    store = MemoryStore()
    a = Node(store, 1, "a", CONSOLIDATE)
    p = await a.pm.open("t", TID, 0, epoch=1)
    await produce_n(a, p, 10)
    await a.pm.maintenance()  # consolidated; the batch names the data object
    await produce_n(a, p, 5)  # tail only in the WAL
    await WalCollector(store, grace_s=0).run_once(live_sessions={"a"})
    await crash(a, 1, "a", store)
    b = Node(store, 2, "b")
    pb = await b.pm.open("t", TID, 0, epoch=2)
    assert await b.read_all(pb) == list(range(15))
    assert await b.produce(pb, batch()) == 15


async def test_zombie_batches_after_a_fence_are_never_trusted() -> None:
    store = MemoryStore()
    a = Node(store, 1, "zombie")
    p = await a.pm.open("t", TID, 0, epoch=1)
    await produce_n(a, p, 3)
    await a.pm.maintenance()
    await fence_session(store, 1, "zombie")  # paused past its session timeout
    b = Node(store, 2, "b")
    pb = await b.pm.open("t", TID, 0, epoch=2)
    assert pb.next_offset == 3
    await produce_n(b, pb, 2)
    # The zombie wakes and writes batches under its own session: a stale one at its
    # epoch, and a forged one claiming the successor's epoch, both with valid checksums.
    for seq, epoch in ((50, 1), (51, 2)):
        state = {"log_start": 0, "next_offset": 1000, "segments": [],
                 "wal": [[layout.wal_key(1, "zombie", 999), 0, 10, 0, 999, 0]], "producers": {}}
        doc = {"v": 1, "node": 1, "session": "zombie", "seq": seq, "wal_from": 999, "data_seq": 0,
               "partitions": [{"t": TID, "p": 0, "e": epoch, "s": state}]}
        await store.put(layout.batch_key(1, "zombie", seq), formats.encode_batch(json.dumps(doc).encode()),
                        if_none_match=True)
    # ... and a consolidated object no checkpoint will ever name.
    orphan = layout.consolidated_key(1, "zombie", 99)
    await store.put(orphan, formats.encode_object([batch()], [], formats.CONSOLIDATED_MAGIC), if_none_match=True)
    gc = WalCollector(store, grace_s=0)
    view = await gc.reference_view()
    assert layout.wal_key(1, "zombie", 999) not in view.referenced, "a zombie batch keeps nothing alive"
    await b.pm.maintenance()
    await gc.run_once(live_sessions={"b"})
    assert orphan not in await store.list("data/"), "the zombie's object is collected"
    await crash(b, 2, "b", store)
    c = Node(store, 3, "c")
    pc = await c.pm.open("t", TID, 0, epoch=3)
    assert pc.next_offset == 5, "the successor's state, not the zombie's"
    assert await c.read_all(pc) == list(range(5))


async def test_a_successor_reading_an_older_batch_recovers_every_ack() -> None:
    store = MemoryStore()
    a = Node(store, 1, "a", CONSOLIDATE)
    p = await a.pm.open("t", TID, 0, epoch=1)
    await produce_n(a, p, 10)
    await a.pm.maintenance()  # batch 1
    await produce_n(a, p, 10)
    await a.pm.maintenance()  # batch 2: a second consolidated object, a higher wal_from
    await produce_n(a, p, 5)
    newest = batch_keys(await store.list("meta/"))[-1]
    await WalCollector(store, grace_s=0).run_once(live_sessions={"a"})  # sees both batches
    await crash(a, 1, "a", store)
    real_list = store.list

    async def lagging_list(prefix: str) -> list[str]:  # a listing that does not show the newest yet
        return [k for k in await real_list(prefix) if k != newest]

    store.list = lagging_list  # type: ignore[method-assign]
    b = Node(store, 2, "b")
    pb = await b.pm.open("t", TID, 0, epoch=2)
    store.list = real_list  # type: ignore[method-assign]
    assert await b.read_all(pb) == list(range(25)), "the WAL after the older batch is still there"
    assert await b.produce(pb, batch()) == 25, "no offset reused"


@pytest.mark.parametrize("damage", ["flip", "truncate"])
async def test_a_corrupt_batch_falls_back_to_the_previous_one_and_the_wal(damage: str) -> None:
    store = MemoryStore()
    a = Node(store, 1, "a", CONSOLIDATE)
    p = await a.pm.open("t", TID, 0, epoch=1)
    await produce_n(a, p, 10)
    await a.pm.maintenance()
    await produce_n(a, p, 10)
    await a.pm.maintenance()
    await produce_n(a, p, 5)
    newest = batch_keys(await store.list("meta/"))[-1]
    raw = bytearray((await store.get(newest)).data)
    if damage == "flip":
        raw[len(raw) // 2] ^= 0x20
    else:
        del raw[len(raw) // 2:]
    await store.put(newest, bytes(raw))
    await WalCollector(store, grace_s=0).run_once(live_sessions={"a"})  # must not trust it either
    await crash(a, 1, "a", store)
    b = Node(store, 2, "b")
    with structlog.testing.capture_logs() as logs:
        pb = await b.pm.open("t", TID, 0, epoch=2)
    assert any("corrupt" in e["event"] and e.get("key") == newest for e in logs), logs
    assert await b.read_all(pb) == list(range(25))
    assert await b.produce(pb, batch()) == 25


async def test_a_failed_batch_checkpoints_nothing() -> None:
    store = MemoryStore()
    a = Node(store, 1, "a", CONSOLIDATE)
    p = await a.pm.open("t", TID, 0, epoch=1)
    await produce_n(a, p, 10)
    real_put = store.put

    async def failing_batches(key, data, **kw):  # type: ignore[no-untyped-def]
        if key.startswith(layout.BATCH_PREFIX):
            raise StoreUnavailable("503 SlowDown")
        return await real_put(key, data, **kw)

    store.put = failing_batches  # type: ignore[method-assign]
    await a.pm.maintenance()  # consolidates, but the batch never lands
    assert not batch_keys(await store.list("meta/"))
    held = a.pm.held[("t", 0)]
    assert held.changed, "still to be checkpointed"
    gc = WalCollector(store, grace_s=0)
    await gc.run_once(live_sessions={"a"})
    assert len(await store.list("wal/")) == 10, "no WAL goes on the strength of a batch that never landed"
    assert await store.list("data/"), "the live session's new object is kept until a batch names it"
    store.put = real_put  # type: ignore[method-assign]
    await crash(a, 1, "a", store)
    b = Node(store, 2, "b")
    pb = await b.pm.open("t", TID, 0, epoch=2)
    assert await b.read_all(pb) == list(range(10))


async def test_the_next_round_retries_a_failed_batch() -> None:
    store = MemoryStore()
    a = Node(store, 1, "a")
    p = await a.pm.open("t", TID, 0, epoch=1)
    await produce_n(a, p, 3)
    real_put = store.put
    calls = {"n": 0}

    async def flaky(key, data, **kw):  # type: ignore[no-untyped-def]
        if key.startswith(layout.BATCH_PREFIX) and calls["n"] < 10:
            calls["n"] += 1
            raise StoreUnavailable("reset")
        return await real_put(key, data, **kw)

    store.put = flaky  # type: ignore[method-assign]
    await a.pm.maintenance()
    assert a.pm.held[("t", 0)].changed
    await a.pm.maintenance()
    assert not a.pm.held[("t", 0)].changed
    assert len(batch_keys(await store.list("meta/"))) == 1


async def test_writer_keeps_a_window_of_batches_and_refreshes_unchanged_partitions() -> None:
    store = MemoryStore()
    a = Node(store, 1, "a")
    quiet = await a.pm.open("t", TID, 0, epoch=1)
    busy = await a.pm.open("t", TID, 1, epoch=1)
    await a.produce(quiet, batch())
    for _ in range(3 * KEEP):
        await a.produce(busy, batch())
        await a.pm.maintenance()
    keys = batch_keys(await store.list("meta/"))
    assert len(keys) == KEEP
    reader = a.pm.batch_reader
    carrying = [k for k in keys if (TID, 0, 1) in (await reader.load(k)).entries]  # type: ignore[union-attr]
    assert len(carrying) >= 2, "an unchanged partition stays in the window, twice"
    await crash(a, 1, "a", store)
    b = Node(store, 2, "b")
    assert (await b.pm.open("t", TID, 0, epoch=2)).next_offset == 1  # type: ignore[union-attr]
    assert (await b.pm.open("t", TID, 1, epoch=2)).next_offset == 3 * KEEP  # type: ignore[union-attr]


async def test_consolidation_packs_partitions_into_one_object_read_in_few_gets() -> None:
    store = InstrumentedStore(MemoryStore())
    a = Node(store, 1, "a", CONSOLIDATE)
    parts = [await a.pm.open("t", TID, i, epoch=1) for i in range(100)]
    for p in parts:
        for _ in range(3):
            await a.produce(p, batch(payload=bytes([p.index]) * 10))
    await a.pm.maintenance()
    objects = await store.list("data/")
    assert len(objects) == 1 and layout.is_consolidated(objects[0])
    await a.pm.close_all()
    b = Node(store, 2, "b", CONSOLIDATE)
    store.reset_stats()
    for i in range(100):
        pb = await b.pm.open("t", TID, i, epoch=2)
        assert await b.read_all(pb) == [0, 1, 2]
    reqs = store.stats()["requests"]
    assert reqs["get_range"] == {"data": 1}, "100 partitions' catch-up reads: one GET for the shared block"
    assert reqs["get_suffix"] == {"data": 1}, "one index read for all of them"


async def test_a_partition_that_fills_an_object_alone_gets_its_own() -> None:
    store = MemoryStore()
    settings = Settings(checkpoint_interval_ms=1000, compact_after_bytes=1, compact_after_ms=0,
                        retention_ms=-1, retention_bytes=-1, memory_cache_bytes=1 << 30, block_size=4096,
                        consolidation_target_bytes=2000)
    a = Node(store, 1, "a", settings)
    big = await a.pm.open("t", TID, 0, epoch=1)
    small = [await a.pm.open("t", TID, i, epoch=1) for i in (1, 2)]
    size = len(batch())
    for _ in range(2 * 2000 // size + 1):
        await a.produce(big, batch())
    for p in small:
        await a.produce(p, batch())
    await a.pm.maintenance()
    owners: dict[str, set[int]] = {}
    for key in await store.list("data/"):
        suffix = await store.get_suffix(key, 1 << 20)
        index, _, magic = formats.index_from_suffix(suffix)
        assert magic == formats.CONSOLIDATED_MAGIC and index is not None
        owners[key] = {r.partition for r in formats.range_entries(index)}
        assert len((await store.get(key)).data) <= 2000 + 4096
    assert sum(1 for o in owners.values() if o == {0}) >= 2, "the big partition is split into its own objects"
    assert {1, 2} in owners.values(), "the small ones share one"
    await a.pm.close_all()
    b = Node(store, 2, "b", settings)
    pb = await b.pm.open("t", TID, 0, epoch=2)
    assert await b.read_all(pb) == list(range(2 * 2000 // size + 1))


async def test_a_shared_object_outlives_retention_of_one_partition() -> None:
    store = MemoryStore()
    retention = {"short": "1000", "long": "-1"}
    a = Node(store, 1, "a", CONSOLIDATE)
    a.pm.topic_config = lambda topic, key: retention[topic] if key == "retention.ms" else None
    short = await a.pm.open("short", TID, 0, epoch=1)
    long_ = await a.pm.open("long", "cd" * 16, 0, epoch=1)
    old_ts = int(time.time() * 1000) - 3_600_000
    for _ in range(5):
        await a.produce(short, batch(ts=old_ts))
        await a.produce(long_, batch(ts=old_ts))
    await a.pm.maintenance()  # one shared object; then retention drops the short topic's range
    [shared] = await store.list("data/")
    assert short.log_start == 5 and long_.log_start == 0
    gc = WalCollector(store, grace_s=0)
    await gc.run_once(live_sessions={"a"})
    assert await store.list("data/") == [shared], "still referenced by the other partition"
    assert await a.read_all(long_) == list(range(5))
    retention["long"] = "1000"
    await a.pm.maintenance()
    assert long_.log_start == 5
    await gc.run_once(live_sessions={"a"})
    assert await store.list("data/") == [shared], "the batch before, a successor's fallback, still names it"
    await a.pm.maintenance()  # carries the partition once more
    await gc.run_once(live_sessions={"a"})
    assert await store.list("data/") == [], "deleted once neither references it"


async def test_a_dead_sessions_batches_go_once_no_checkpoint_names_it() -> None:
    store = MemoryStore()
    a = Node(store, 1, "a")
    p = await a.pm.open("t", TID, 0, epoch=1)
    await a.produce(p, batch())
    await a.pm.maintenance()
    await crash(a, 1, "a", store)
    gc = WalCollector(store, grace_s=0)
    await gc.run_once(live_sessions=set())
    assert batch_keys(await store.list("meta/")), "the unclean checkpoint still names the session"
    b = Node(store, 2, "b")
    await b.pm.open("t", TID, 0, epoch=2)
    await gc.run_once(live_sessions={"b"})
    assert not batch_keys(await store.list("meta/"))


def test_checkpoint_keys_are_counted_apart_from_cluster_metadata() -> None:
    assert key_kind(layout.batch_key(1, "s", 3)) == "checkpoint"
    assert key_kind(layout.checkpoint_key(TID, 0)) == "checkpoint"
    assert key_kind(layout.CLUSTER_KEY) == "cluster"
    assert key_kind(layout.consolidated_key(1, "s", 1)) == "data"


class NoListedEtags(MemoryStore):
    """A store whose listing names no ETags (as some S3-compatible gateways do)."""

    async def list_etags(self, prefix: str) -> list[tuple[str, str]]:
        return [(key, "") for key in await self.list(prefix)]


async def test_without_listed_etags_the_collector_guesses_changes_from_the_metadata() -> None:
    store = NoListedEtags()
    a = Node(store, 1, "a", CONSOLIDATE)
    parts = [await a.pm.open("t", TID, i, epoch=1) for i in range(20)]
    for p in parts:
        await a.produce(p, batch())
    await a.pm.maintenance()
    leaders = {(TID, i): (1, "a") for i in range(20)}
    gc = WalCollector(store, grace_s=10)
    await gc.run_once(live_sessions={"a"}, leaders=leaders, now=0)
    assert gc.checkpoint_reads == 20
    await gc.run_once(live_sessions={"a"}, leaders=leaders, now=1)
    assert gc.checkpoint_reads == 20, "nothing moved: no checkpoint is read again"
    # Partition 3 moves to b: a closes it cleanly, b opens it at epoch 2.
    await a.pm.close("t", 3)
    b = Node(store, 2, "b", CONSOLIDATE)
    moved = await b.pm.open("t", TID, 3, epoch=2)
    await b.produce(moved, batch())
    await b.pm.maintenance()
    leaders[(TID, 3)] = (2, "b")
    await gc.run_once(live_sessions={"a", "b"}, leaders=leaders, now=2)
    assert gc.checkpoint_reads == 21, "the moved partition's checkpoint is read again"
    # a dies (a lone broker's clean drain would look the same): its checkpoints are read again.
    await gc.run_once(live_sessions={"b"}, leaders=leaders, now=3)
    assert gc.checkpoint_reads == 21 + 19
    await gc.run_once(live_sessions={"b"}, leaders=leaders, now=100)
    assert await b.read_all(moved) == [0, 1], "what the moved partition references survived"
    assert set(await store.list("data/")) >= {row[0] for row in moved.checkpoint_body()["segments"]}


async def test_the_partitions_of_a_failed_session_share_one_batch_read() -> None:
    store = InstrumentedStore(MemoryStore())
    a = Node(store, 1, "a")
    parts = [await a.pm.open("t", TID, i, epoch=1) for i in range(50)]
    for p in parts:
        await a.produce(p, batch())
    await a.pm.maintenance()
    await crash(a, 1, "a", store)
    b = Node(store, 2, "b")
    store.reset_stats()
    opened = await asyncio.gather(*(b.pm.open("t", TID, i, epoch=2) for i in range(50)))
    assert [p.next_offset for p in opened] == [1] * 50  # type: ignore[union-attr]
    reqs = store.stats()["requests"]
    assert reqs["get"]["checkpoint"] == 50 + 1, "each partition's checkpoint, and the batch once"
    assert reqs["list"]["checkpoint"] == 1


async def test_encoding_a_batch_of_long_unconsolidated_partitions_lets_others_run() -> None:
    """A batch's partitions may each carry hundreds of WAL ranges: encoding them must not hold the loop."""
    from floe_broker.log.checkpoints import ENCODE_SLICE_PIECES

    store = MemoryStore()
    a = Node(store, 1, "a")
    parts = [await a.pm.open("t", TID, i, epoch=1) for i in range(4)]
    data, scanned = _one_batch()
    appended = [a.log.append(p, data, scanned)  # far fewer partitions than a slice, far more pieces
                for p in parts for _ in range(ENCODE_SLICE_PIECES // 2)]
    await a.log.wait_durable(appended)
    turns = 0

    async def other() -> None:
        nonlocal turns
        while True:
            turns += 1
            await asyncio.sleep(0)

    ticker = asyncio.create_task(other())
    await asyncio.sleep(0)
    before = turns
    await a.pm.batches.write(parts, wal_from=a.wal.completed_seq, data_seq=0)
    ticker.cancel()
    assert turns - before >= 1, "the event loop never got a turn while the batch was encoded"
    await a.wal.stop()


def _one_batch() -> tuple[bytes, Any]:
    from floe_broker.protocol import records

    data = batch()
    return data, records.scan_batches(data, max_batch_bytes=1 << 20)
