"""Each data-plane invariant of docs/architecture.md#invariants, attacked directly (in-process, memory store).

I1 single writer, I2 ack = durable, I3 fencing, I4 no offset reuse,
I5 read committed by storage. These run the real WAL writer, partition
manager and controller against the reference store, without sockets.
"""

from __future__ import annotations

import asyncio
import json
import time

import pytest

from floe_broker.cluster.controller import fence_session
from floe_broker.cluster.metadata import ClusterState, TopicInfo
from floe_broker.errors import Fenced, OffsetOutOfRange, PreconditionFailed, StoreUnavailable
from floe_broker.log import formats
from floe_broker.log.cache import BlockCache
from floe_broker.log.manager import PartitionManager, Settings
from floe_broker.log.service import LogService
from floe_broker.log.wal import WalWriter
from floe_broker.protocol import records
from floe_broker.storage import layout
from floe_broker.storage.memory import MemoryStore
from floe_broker.storage.objectstore import GetResult
from tests.infra.batches import opaque_batch as batch

SETTINGS = Settings(checkpoint_interval_ms=1000, compact_after_bytes=1 << 30, compact_after_ms=10**9,
                    retention_ms=-1, retention_bytes=-1, memory_cache_bytes=1 << 30, block_size=4096)


class Node:
    """A broker session's data plane: WAL + partition manager, written through the log service."""

    def __init__(self, store, node_id: int, session: str, settings: Settings = SETTINGS) -> None:  # type: ignore[no-untyped-def]
        self.fenced = False
        self.wal = WalWriter(store, node_id=node_id, session=session, flush_interval_ms=2, flush_bytes=1 << 20,
                             max_pending_bytes=1 << 26, max_inflight=4, on_fenced=self._on_fenced)
        self.wal.start()
        self.cache = BlockCache(store, block_size=settings.block_size, capacity_bytes=1 << 20)
        self.pm = PartitionManager(store, self.wal, self.cache, node_id=node_id, session=session,
                                   settings=settings, topic_config=lambda t, k: None)
        self.log = LogService(self.wal, self.pm, self.cache)

    def _on_fenced(self) -> None:
        self.fenced = True

    async def produce(self, part, data: bytes) -> int:  # type: ignore[no-untyped-def]
        return (await self.produce_batch(part, data)).base

    async def produce_batch(self, part, data: bytes):  # type: ignore[no-untyped-def]
        return await self.log.append_durably(part, data, records.scan_batches(data, max_batch_bytes=1 << 20))

    async def read_all(self, part):  # type: ignore[no-untyped-def]
        views = await self.log.read(part, part.log_start, 1 << 30)
        return [records.iter_headers(v)[0].base_offset for v in views]


def topic_state() -> tuple[ClusterState, TopicInfo]:
    state = ClusterState()
    t = state.create_topic("t", 1)
    return state, t


async def test_recovery_after_crash_and_no_offset_reuse() -> None:
    store = MemoryStore()
    _, topic = topic_state()
    a = Node(store, 1, "sessA")
    part = await a.pm.open(topic.name, topic.topic_id, 0, epoch=1)
    offsets = [await a.produce(part, batch()) for _ in range(20)]
    assert offsets == list(range(20))
    # crash: no clean close, no final checkpoint; the controller fences A
    await a.wal.stop()
    await fence_session(store, 1, "sessA")
    b = Node(store, 2, "sessB")
    part_b = await b.pm.open(topic.name, topic.topic_id, 0, epoch=2)
    assert part_b.next_offset == 20 and part_b.high_watermark == 20  # I2: acked data recovered
    assert await b.read_all(part_b) == list(range(20))
    assert await b.produce(part_b, batch()) == 20  # I4: continues after, no reuse


async def test_fenced_session_can_never_ack_again() -> None:
    store = MemoryStore()
    _, topic = topic_state()
    a = Node(store, 1, "sessA")
    part = await a.pm.open(topic.name, topic.topic_id, 0, epoch=1)
    await a.produce(part, batch())
    await fence_session(store, 1, "sessA")
    with pytest.raises(Fenced):
        await a.produce(part, batch())  # I3: the next WAL key is a tombstone
    assert a.fenced
    assert part.high_watermark == 1  # the un-acked record never became visible (I5)


async def test_fencing_fills_gaps_so_a_late_retry_cannot_ack() -> None:
    """A session whose seq 2 PUT is stuck while seq 3 landed: fencing must cover seq 2 too."""
    store = MemoryStore()
    await store.put(layout.wal_key(1, "s", 1), b"one")
    await store.put(layout.wal_key(1, "s", 3), b"three")
    tomb = await fence_session(store, 1, "s")
    assert tomb == 4
    assert (await store.get(layout.wal_key(1, "s", 2))).data == layout.TOMBSTONE
    assert (await store.get(layout.wal_key(1, "s", 4))).data == layout.TOMBSTONE


async def test_lower_epoch_cannot_open_or_checkpoint() -> None:
    """I1: once epoch 2 opened the partition, epoch 1 can neither open it nor checkpoint it
    in a way anyone trusts: its checkpoint batches are its own, and the partition's checkpoint
    names epoch 2 (stopping an unfenced old leader's WAL is fencing's job, I3)."""
    store = MemoryStore()
    _, topic = topic_state()
    old = Node(store, 1, "old")
    part_old = await old.pm.open(topic.name, topic.topic_id, 0, epoch=1)
    await old.produce(part_old, batch())
    new = Node(store, 2, "new")
    part_new = await new.pm.open(topic.name, topic.topic_id, 0, epoch=2)
    assert part_new is not None and part_new.next_offset == 1
    assert await Node(store, 3, "stale").pm.open(topic.name, topic.topic_id, 0, epoch=1) is None
    await old.produce(part_old, batch())  # makes the old leader's checkpoint dirty
    await old.pm.maintenance()  # writes a batch under its own session ...
    assert await store.list(layout.batch_prefix(1, "old"))
    ck = json.loads((await store.get(layout.checkpoint_key(topic.topic_id, 0))).data)
    assert ck["epoch"] == 2 and ck["session"] == "new"  # ... which cannot touch the partition's checkpoint
    await new.wal.stop()
    await fence_session(store, 2, "new")
    after = await Node(store, 4, "after").pm.open(topic.name, topic.topic_id, 0, epoch=3)
    assert after is not None and after.next_offset == 1, "the epoch-1 leader's batch is never trusted"


async def test_consumers_never_see_beyond_the_high_watermark() -> None:
    """I5: appended but not yet durable data is invisible."""
    store = MemoryStore()
    _, topic = topic_state()
    a = Node(store, 1, "s")
    part = await a.pm.open(topic.name, topic.topic_id, 0, epoch=1)
    gate = asyncio.Event()
    real_put = store.put

    async def slow_put(key, data, **kw):  # type: ignore[no-untyped-def]
        if key.startswith("wal/"):
            await gate.wait()
        return await real_put(key, data, **kw)

    store.put = slow_put  # type: ignore[method-assign]
    appended = a.log.append(part, batch(), records.scan_batches(batch(), max_batch_bytes=1 << 20))
    await asyncio.sleep(0.05)
    assert part.high_watermark == 0
    assert await a.read_all(part) == []
    gate.set()
    await a.log.wait_durable([appended])
    assert part.high_watermark == 1


async def test_store_errors_are_retried_and_nothing_is_acked_meanwhile() -> None:
    """I2 under 5xx: the WAL PUT is retried; the ack waits for the real PUT."""
    store = MemoryStore()
    _, topic = topic_state()
    a = Node(store, 1, "s")
    part = await a.pm.open(topic.name, topic.topic_id, 0, epoch=1)
    failures = {"left": 5}
    real_put = store.put

    async def flaky_put(key, data, **kw):  # type: ignore[no-untyped-def]
        if key.startswith("wal/") and failures["left"] > 0:
            failures["left"] -= 1
            raise StoreUnavailable("503 SlowDown")
        return await real_put(key, data, **kw)

    store.put = flaky_put  # type: ignore[method-assign]
    offset = await a.produce(part, batch())
    assert failures["left"] == 0
    assert (await store.get(layout.wal_key(1, "s", 1))).data.endswith(formats.WAL_MAGIC)
    assert offset == 0 and part.high_watermark == 1


async def test_lost_put_answer_is_not_mistaken_for_fencing() -> None:
    """A PUT that succeeded but whose answer was lost, then retried, gets 412: still ours."""
    store = MemoryStore()
    _, topic = topic_state()
    a = Node(store, 1, "s")
    part = await a.pm.open(topic.name, topic.topic_id, 0, epoch=1)
    real_put = store.put
    state = {"lost": False}

    async def lossy_put(key, data, **kw):  # type: ignore[no-untyped-def]
        etag = await real_put(key, data, **kw)
        if key.startswith("wal/") and not state["lost"]:
            state["lost"] = True
            raise StoreUnavailable("connection reset after write")
        return etag

    store.put = lossy_put  # type: ignore[method-assign]
    assert await a.produce(part, batch()) == 0
    assert not a.fenced


async def test_retention_advances_log_start_but_never_resets_offsets() -> None:
    """I4 across retention: after everything expires, offsets continue, even after a restart."""
    store = MemoryStore()
    _, topic = topic_state()
    settings = Settings(checkpoint_interval_ms=1000, compact_after_bytes=1, compact_after_ms=0,
                        retention_ms=1000, retention_bytes=-1, memory_cache_bytes=1 << 30, block_size=4096)
    a = Node(store, 1, "s", settings)
    part = await a.pm.open(topic.name, topic.topic_id, 0, epoch=1)
    old_ts = int(time.time() * 1000) - 3_600_000
    for _ in range(10):
        await a.produce(part, batch(ts=old_ts))
    await a.pm.maintenance()  # compacts into a data object, then drops it as expired
    assert part.log_start == 10 and part.next_offset == 10
    with pytest.raises(OffsetOutOfRange):
        await a.log.read(part, 0, 100)
    from floe_broker.log.gc import WalCollector

    await WalCollector(store, grace_s=0).run_once(live_sessions={"s"})
    assert not [k for k in await store.list("data/")], "expired data object should be deleted"
    await a.pm.close("t", 0)
    b = Node(store, 2, "s2", settings)
    part_b = await b.pm.open(topic.name, topic.topic_id, 0, epoch=2)
    assert (part_b.log_start, part_b.next_offset) == (10, 10)
    assert await b.produce(part_b, batch()) == 10


async def test_compacted_data_reads_back_through_the_block_cache() -> None:
    store = MemoryStore()
    _, topic = topic_state()
    settings = Settings(checkpoint_interval_ms=1000, compact_after_bytes=1, compact_after_ms=0,
                        retention_ms=-1, retention_bytes=-1, memory_cache_bytes=0, block_size=512)
    a = Node(store, 1, "s", settings)
    part = await a.pm.open(topic.name, topic.topic_id, 0, epoch=1)
    for i in range(30):
        await a.produce(part, batch(payload=bytes([i]) * 10))
    await a.pm.maintenance()
    assert [k.split("/")[0] for k in await store.list("data/")] == ["data"]
    b = Node(store, 2, "s2", settings)
    await a.pm.close("t", 0)
    part_b = await b.pm.open(topic.name, topic.topic_id, 0, epoch=2)
    assert await b.read_all(part_b) == list(range(30))
    views = await b.log.read(part_b, 17, 1)
    assert records.iter_headers(views[0])[0].base_offset == 17


async def test_recovery_ignores_wal_after_a_tombstone() -> None:
    """Objects a zombie managed to write after its tombstone are never recovered."""
    store = MemoryStore()
    _, topic = topic_state()
    a = Node(store, 1, "z")
    part = await a.pm.open(topic.name, topic.topic_id, 0, epoch=1)
    await a.produce(part, batch())
    tomb = await fence_session(store, 1, "z")
    # simulate a zombie write *above* the tombstone
    fake = formats.encode_object([batch()], [[topic.topic_id, 0, 1, 1, 1, 0, 0, len(batch())]], formats.WAL_MAGIC)
    await store.put(layout.wal_key(1, "z", tomb + 1), fake)
    b = Node(store, 2, "b")
    part_b = await b.pm.open(topic.name, topic.topic_id, 0, epoch=2)
    assert part_b.next_offset == 1


async def test_memory_store_semantics_used_by_these_tests() -> None:
    s = MemoryStore()
    etag = await s.put("k", b"1", if_none_match=True)
    assert isinstance(await s.get("k"), GetResult)
    with pytest.raises(PreconditionFailed):
        await s.put("k", b"2", if_none_match=True)
    await s.put("k", b"2", if_match=etag)


async def test_wal_gc_deletes_only_what_no_one_needs() -> None:
    """Compacted WAL objects go; the un-checkpointed tail, tombstones and referenced ones stay."""
    from floe_broker.log.gc import WalCollector

    store = MemoryStore()
    _, topic = topic_state()
    settings = Settings(checkpoint_interval_ms=1000, compact_after_bytes=1, compact_after_ms=0,
                        retention_ms=-1, retention_bytes=-1, memory_cache_bytes=1 << 30, block_size=4096)
    a = Node(store, 1, "live", settings)
    part = await a.pm.open(topic.name, topic.topic_id, 0, epoch=1)
    for _ in range(10):
        await a.produce(part, batch())
    await a.pm.maintenance()  # compacts into data/, checkpoint no longer lists those WAL objects
    await a.produce(part, batch())  # an un-checkpointed tail object
    tail_key = layout.wal_key(1, "live", a.wal.completed_seq)
    # a dead, fenced session whose partitions were never reopened keeps its tail too
    dead = Node(store, 2, "dead", SETTINGS)
    _, topic2 = topic_state()
    p2 = await dead.pm.open(topic2.name, topic2.topic_id, 0, epoch=1)
    await dead.produce(p2, batch())
    await dead.wal.stop()
    tomb = await fence_session(store, 2, "dead")

    gc = WalCollector(store, grace_s=10)
    assert await gc.run_once(live_sessions={"live"}, now=0) == 0, "nothing goes before the grace period"
    deleted = await gc.run_once(live_sessions={"live"}, now=11)
    remaining = set(await store.list("wal/"))
    assert deleted == 10
    assert tail_key in remaining, "the live session's un-checkpointed tail must stay"
    assert layout.wal_key(2, "dead", 1) in remaining, "the dead session's tail is needed for recovery"
    assert layout.wal_key(2, "dead", tomb) in remaining, "tombstones are never deleted"
    # everything acknowledged is still readable by a successor
    await a.wal.stop()
    await fence_session(store, 1, "live")
    b = Node(store, 3, "next", settings)
    part_b = await b.pm.open(topic.name, topic.topic_id, 0, epoch=2)
    assert await b.read_all(part_b) == list(range(11))
    c = Node(store, 4, "next2", SETTINGS)
    p2b = await c.pm.open(topic2.name, topic2.topic_id, 0, epoch=2)
    assert await c.read_all(p2b) == [0]


async def test_idempotent_state_survives_a_crash_and_rejects_gaps_and_stale_epochs() -> None:
    from floe_broker.errors import SequenceError

    store = MemoryStore()
    _, topic = topic_state()
    a = Node(store, 1, "a")
    part = await a.pm.open(topic.name, topic.topic_id, 0, epoch=1)
    for i in range(4):
        appended = await a.produce_batch(part, batch(n_records=2, pid=77, epoch=0, seq=i * 2))
        assert not appended.duplicate and appended.base == i * 2
    # crash before any checkpoint carried the producer state; the successor rebuilds it from the WAL
    await a.wal.stop()
    await fence_session(store, 1, "a")
    b = Node(store, 2, "b")
    pb = await b.pm.open(topic.name, topic.topic_id, 0, epoch=2)
    retry = await b.produce_batch(pb, batch(n_records=2, pid=77, epoch=0, seq=6))
    assert retry.duplicate and (retry.base, retry.last) == (6, 7), "a retry of the last batch is recognised"
    assert pb.next_offset == 8, "and not appended again"
    following = await b.produce_batch(pb, batch(n_records=2, pid=77, epoch=0, seq=8))
    assert not following.duplicate and following.base == 8, "the next batch is accepted"
    with pytest.raises(SequenceError) as gap:
        await b.produce_batch(pb, batch(n_records=2, pid=77, epoch=0, seq=12))
    assert gap.value.code == 45  # OUT_OF_ORDER_SEQUENCE_NUMBER
    await b.produce_batch(pb, batch(pid=77, epoch=1, seq=0))  # the producer bumped its epoch
    with pytest.raises(SequenceError) as stale:
        await b.produce_batch(pb, batch(n_records=2, pid=77, epoch=0, seq=10))
    assert stale.value.code == 47  # INVALID_PRODUCER_EPOCH: a fenced epoch
    assert pb.next_offset == 11 and pb.high_watermark == 11, "rejected batches were not appended"


async def test_idempotent_state_moves_with_the_partition() -> None:
    """A clean move (release + checkpoint) carries producer state to the next leader."""
    store = MemoryStore()
    _, topic = topic_state()
    a = Node(store, 1, "a")
    part = await a.pm.open(topic.name, topic.topic_id, 0, epoch=1)
    for i in range(3):
        await a.produce(part, batch(pid=5, epoch=2, seq=i))
    await a.pm.close("t", 0, graceful=True)
    b = Node(store, 2, "b")
    pb = await b.pm.open(topic.name, topic.topic_id, 0, epoch=2)
    retry = await b.produce_batch(pb, batch(pid=5, epoch=2, seq=2))
    assert retry.duplicate and (retry.base, retry.last) == (2, 2)
    following = await b.produce_batch(pb, batch(pid=5, epoch=2, seq=3))
    assert not following.duplicate and following.base == 3


async def test_a_retried_batch_is_answered_only_once_its_original_is_durable() -> None:
    """I2 for idempotent retries: the duplicate answer carries the original offsets, and waits for them."""
    store = MemoryStore()
    _, topic = topic_state()
    a = Node(store, 1, "s")
    part = await a.pm.open(topic.name, topic.topic_id, 0, epoch=1)
    await a.produce(part, batch())  # offset 0, durable
    gate = asyncio.Event()
    real_put = store.put

    async def slow_put(key, data, **kw):  # type: ignore[no-untyped-def]
        if key.startswith("wal/"):
            await gate.wait()
        return await real_put(key, data, **kw)

    store.put = slow_put  # type: ignore[method-assign]
    data = batch(n_records=3, pid=9, epoch=0, seq=0)
    infos = records.scan_batches(data, max_batch_bytes=1 << 20)
    original = a.log.append(part, data, infos)
    retry = a.log.append(part, data, infos)
    assert retry.duplicate and (retry.base, retry.last) == (original.base, original.last) == (1, 3)
    assert part.next_offset == 4, "the retry is not appended again"
    waiting = asyncio.ensure_future(a.log.wait_durable([retry]))
    await asyncio.sleep(0.05)
    assert not waiting.done(), "the retry must not be answered before its original is durable"
    gate.set()
    await asyncio.wait_for(waiting, 5)
    assert part.high_watermark == 4
