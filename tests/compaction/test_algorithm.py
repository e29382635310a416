"""Key compaction over the memory store: the real WAL writer, partition manager and compactor, no sockets.

What a consumer reads afterwards is decoded by kafka-python's record reader,
not by the broker's own code.
"""

from __future__ import annotations

import gzip
import struct
import time
from typing import Any

import cramjam
import crc32c
import pytest

from floe_broker.cluster.controller import fence_session
from floe_broker.log.compaction import records as rec
from floe_broker.log.compaction import require_keys
from floe_broker.log.compaction.keymap import ENTRY_BYTES, MIN_ENTRIES
from floe_broker.log.compaction.settings import CompactionSettings
from floe_broker.log.manager import Settings
from floe_broker.log.partition import Partition
from floe_broker.storage.memory import MemoryStore
from tests.compaction.helpers import consumed, keyed_batch
from tests.test_log_invariants import Node, topic_state

SETTINGS = Settings(checkpoint_interval_ms=1000, compact_after_bytes=0, compact_after_ms=0,
                    retention_ms=-1, retention_bytes=-1, memory_cache_bytes=1 << 30, block_size=4096)


def compacted(extra: dict[str, str] | None = None) -> Any:
    configs = {"cleanup.policy": "compact", **(extra or {})}
    return lambda topic, key: configs.get(key)


async def node(store: MemoryStore, node_id: int = 1, session: str = "s1", configs: Any = None,
               map_bytes: int | None = None) -> Node:
    settings = SETTINGS if map_bytes is None else Settings(**{**SETTINGS.__dict__, "compaction_map_bytes": map_bytes})
    n = Node(store, node_id, session, settings)
    n.pm.topic_config = configs or compacted()
    n.pm.compactor.topic_config = n.pm.topic_config
    return n


async def consolidate(n: Node) -> None:
    """One maintenance round (consolidation, checkpoint batch) without starting the background run."""
    kick = n.pm.compactor.kick
    n.pm.compactor.kick = lambda helds: None  # type: ignore[method-assign]
    try:
        await n.pm.maintenance()
    finally:
        n.pm.compactor.kick = kick  # type: ignore[method-assign]


async def compact(n: Node, part: Partition) -> int:
    return await n.pm.compactor.compact(n.pm.held[(part.topic, part.index)])


async def read(n: Node, part: Partition, offset: int | None = None) -> list[Any]:
    return consumed(await n.log.read(part, part.log_start if offset is None else offset, 1 << 30))


async def test_every_key_keeps_its_last_value_at_its_original_offset() -> None:
    store = MemoryStore()
    _, topic = topic_state()
    n = await node(store)
    part = await n.pm.open(topic.name, topic.topic_id, 0, epoch=1)
    written: dict[int, tuple[bytes, bytes]] = {}
    for rnd in range(5):
        pairs = [(b"k%d" % k, b"v%d-%d" % (k, rnd)) for k in range(10)]
        base = (await n.produce_batch(part, keyed_batch(pairs, ts=1_000_000 + rnd * 100))).base
        written.update({base + i: p for i, p in enumerate(pairs)})  # type: ignore[misc]
        await consolidate(n)
    await n.produce(part, keyed_batch([(b"tail", b"t")]))  # the active part: never compacted
    await consolidate(n)
    before = await read(n, part)
    assert len(before) == 51

    assert await compact(n, part) == 1
    after = await read(n, part)
    last = {key: (off, value) for off, key, value, _ in before}
    assert {key: (off, value) for off, key, value, _ in after} == last  # last value of every key, same offset
    assert [off for off, *_ in after] == sorted(off for off, _ in last.values())
    for off, key, value, ts in after:  # each surviving offset holds the one value ever written there
        assert written.get(off, (b"tail", b"t")) == (key, value)
        assert ts == next(t for o, _, _, t in before if o == off)  # timestamps to the millisecond
    assert part.next_offset == 51 and part.high_watermark == 51  # I4: offsets only gain gaps
    # A fetch from an offset compaction removed returns the next surviving batch.
    assert (await read(n, part, 3))[0][0] == 40
    await n.wal.stop()


async def test_a_second_run_with_nothing_dirty_does_nothing() -> None:
    store = MemoryStore()
    _, topic = topic_state()
    n = await node(store)
    part = await n.pm.open(topic.name, topic.topic_id, 0, epoch=1)
    for value in (b"a", b"b"):
        await n.produce(part, keyed_batch([(b"k", value)]))
        await consolidate(n)
    await n.produce(part, keyed_batch([(b"tail", b"t")]))
    await consolidate(n)
    assert await compact(n, part) == 1
    assert await compact(n, part) == 0
    assert [(o, v) for o, _, v, _ in await read(n, part)] == [(1, b"b"), (2, b"t")]
    await n.wal.stop()


async def test_dirty_ratio_and_min_lag_hold_compaction_back() -> None:
    store = MemoryStore()
    _, topic = topic_state()
    n = await node(store, configs=compacted({"min.compaction.lag.ms": str(10**12)}))
    part = await n.pm.open(topic.name, topic.topic_id, 0, epoch=1)
    for value in (b"a", b"b", b"c"):
        await n.produce(part, keyed_batch([(b"k", value)]))
        await consolidate(n)
    assert await compact(n, part) == 0  # every record is younger than the lag
    n.pm.topic_config = n.pm.compactor.topic_config = compacted({"min.cleanable.dirty.ratio": "0.99"})
    assert await compact(n, part) == 1  # the first pass: everything is dirty
    await n.produce(part, keyed_batch([(b"k", b"d")]))
    await consolidate(n)
    assert await compact(n, part) == 0  # dirty part is one small piece out of more: below 0.99
    await n.wal.stop()


async def test_tombstones_go_only_after_delete_retention_once_compacted() -> None:
    store = MemoryStore()
    _, topic = topic_state()
    n = await node(store, configs=compacted({"delete.retention.ms": "1000"}))
    clock = [int(time.time() * 1000) + 10_000]
    n.pm.compactor.clock_ms = lambda: clock[0]
    part = await n.pm.open(topic.name, topic.topic_id, 0, epoch=1)
    await n.produce(part, keyed_batch([(b"a", b"1"), (b"b", b"1")]))
    await consolidate(n)
    await n.produce(part, keyed_batch([(b"a", None)]))  # tombstone for a
    await consolidate(n)
    await n.produce(part, keyed_batch([(b"tail", b"t")]))
    await consolidate(n)
    assert await compact(n, part) == 1
    assert [(o, k, v) for o, k, v, _ in await read(n, part)] == [(1, b"b", b"1"), (2, b"a", None), (3, b"tail", b"t")]
    clock[0] += 999
    assert await compact(n, part) == 0  # not yet due
    assert len(await read(n, part)) == 3
    clock[0] += 1
    assert await compact(n, part) == 1  # the tombstone's delete.retention.ms has passed: it goes
    assert [(o, k) for o, k, _, _ in await read(n, part)] == [(1, b"b"), (3, b"tail")]
    await n.wal.stop()



async def test_a_range_compacted_to_nothing_is_skipped_by_fetch() -> None:
    store = MemoryStore()
    _, topic = topic_state()
    n = await node(store, configs=compacted({"delete.retention.ms": "1"}))
    clock = [int(time.time() * 1000) + 10_000]
    n.pm.compactor.clock_ms = lambda: clock[0]
    part = await n.pm.open(topic.name, topic.topic_id, 0, epoch=1)
    await n.produce(part, keyed_batch([(b"k", b"v"), (b"k", None)]))
    await consolidate(n)
    await n.produce(part, keyed_batch([(b"x", b"1")]))  # a WAL chunk: the active part
    assert await compact(n, part) == 1  # the tombstone is kept: compacted for the first time
    clock[0] += 1
    assert await compact(n, part) == 1  # now it goes, and nothing is left of offsets 0-1
    assert [(o, k) for o, k, _, _ in await read(n, part, 0)] == [(2, b"x")]
    await n.wal.stop()

async def test_a_full_key_map_makes_several_passes_within_its_bound() -> None:
    store = MemoryStore()
    _, topic = topic_state()
    keys = MIN_ENTRIES * 4
    n = await node(store, map_bytes=MIN_ENTRIES * ENTRY_BYTES)
    part = await n.pm.open(topic.name, topic.topic_id, 0, epoch=1)
    for rnd in range(2):
        for first in range(0, keys, 256):
            await n.produce(part, keyed_batch([(b"key-%d" % k, b"%d" % rnd) for k in range(first, first + 256)]))
        await consolidate(n)
    await n.produce(part, keyed_batch([(b"tail", b"t")]))
    await consolidate(n)
    passes = await compact(n, part)
    assert passes >= 4
    assert n.pm.compactor.stats.peak_map_entries <= MIN_ENTRIES
    after = await read(n, part)
    assert len(after) == keys + 1
    assert all(v == b"1" for _, k, v, _ in after if k != b"tail")
    await n.wal.stop()


async def test_crash_before_the_batch_leaves_the_old_pieces_and_after_it_the_new() -> None:
    store = MemoryStore()
    _, topic = topic_state()
    a = await node(store)
    part = await a.pm.open(topic.name, topic.topic_id, 0, epoch=1)
    for value in (b"a", b"b", b"c"):
        await a.produce(part, keyed_batch([(b"k", value), (b"j", value)]))
        await consolidate(a)
    await a.produce(part, keyed_batch([(b"tail", b"t")]))
    await consolidate(a)
    full = await read(a, part)
    assert await compact(a, part) == 1
    # Crash now: the swap is in memory only; the successor reads the old, complete pieces.
    await a.wal.stop()
    await fence_session(store, 1, "s1")
    b = await node(store, 2, "s2")
    part_b = await b.pm.open(topic.name, topic.topic_id, 0, epoch=2)
    assert await read(b, part_b) == full
    assert await compact(b, part_b) == 1
    await consolidate(b)  # the checkpoint batch names the compacted pieces
    small = await read(b, part_b)
    assert [o for o, *_ in small] == [4, 5, 6]
    await b.wal.stop()
    await fence_session(store, 2, "s2")
    c = await node(store, 3, "s3")
    part_c = await c.pm.open(topic.name, topic.topic_id, 0, epoch=3)
    assert await read(c, part_c) == small
    assert part_c.compacted_upto == 7 and part_c.next_offset == 7
    assert await c.produce(part_c, keyed_batch([(b"k", b"d")])) == 7  # I4
    await c.wal.stop()


async def test_policy_switch_takes_effect_on_the_next_run() -> None:
    store = MemoryStore()
    _, topic = topic_state()
    configs: dict[str, str] = {"cleanup.policy": "delete"}
    n = await node(store, configs=lambda t, k: configs.get(k))
    n.pm.compactor.topic_config = n.pm.topic_config
    part = await n.pm.open(topic.name, topic.topic_id, 0, epoch=1)
    for value in (b"a", b"b", b"c"):
        await n.produce(part, keyed_batch([(b"k", value)]))
        await consolidate(n)
    assert await compact(n, part) == 0
    configs["cleanup.policy"] = "compact,delete"
    assert await compact(n, part) == 1
    assert [o for o, *_ in await read(n, part)] == [2]
    await n.wal.stop()


def _compressed(batch: bytes, codec: int) -> bytes:
    head = rec.header(batch)
    section = rec.records_section(batch, 0)
    payload = {1: gzip.compress, 4: lambda b: bytes(cramjam.zstd.compress(b)),
               3: lambda b: bytes(cramjam.lz4.compress(b))}[codec](section)
    after_crc = struct.pack(">hiqqqhii", codec, head.last_offset_delta, head.base_timestamp, head.max_timestamp,
                            -1, -1, -1, head.records_count) + payload
    return struct.pack(">qiibI", 0, 9 + len(after_crc), -1, 2, crc32c.crc32c(after_crc)) + after_crc


async def test_compressed_batches_are_rebuilt_with_their_codec() -> None:
    store = MemoryStore()
    _, topic = topic_state()
    n = await node(store)
    part = await n.pm.open(topic.name, topic.topic_id, 0, epoch=1)
    for codec in (1, 3, 4):
        await n.produce(part, _compressed(keyed_batch([(b"k%d" % codec, b"old"), (b"shared", b"%d" % codec)]), codec))
        await consolidate(n)
    await n.produce(part, keyed_batch([(b"tail", b"t")]))
    await consolidate(n)
    assert await compact(n, part) == 1
    got = [(o, k, v) for o, k, v, _ in await read(n, part)]
    assert got == [(0, b"k1", b"old"), (2, b"k3", b"old"), (4, b"k4", b"old"), (5, b"shared", b"4"), (6, b"tail", b"t")]
    codecs = [rec.header(v).codec for v in await n.log.read(part, 0, 1 << 30)]
    assert codecs == [1, 3, 4, 0]
    await n.wal.stop()


def test_keyless_records_are_refused_only_by_require_keys() -> None:
    assert require_keys(keyed_batch([(b"k", b"v"), (b"j", None)])) is None
    assert require_keys(keyed_batch([(b"k", b"v"), (None, b"v")])) == 87
    assert require_keys(_compressed(keyed_batch([(None, b"v")]), 4)) == 87


def test_settings_have_kafkas_defaults() -> None:
    s = CompactionSettings.from_topic_configs({})
    assert (s.compact, s.delete, s.min_compaction_lag_ms, s.max_compaction_lag_ms, s.delete_retention_ms,
            s.min_cleanable_dirty_ratio) == (False, True, 0, (1 << 63) - 1, 86_400_000, 0.5)
    both = CompactionSettings.from_topic_configs({"cleanup.policy": "compact, delete"})
    assert both.compact and both.delete
    assert not CompactionSettings.from_topic_configs({"cleanup.policy": "compact"}).delete


@pytest.mark.slow
async def test_a_million_keys_compact_within_the_map_bound_in_several_passes() -> None:
    store = MemoryStore()
    _, topic = topic_state()
    bound = 48 * 1024 * 1024  # about 315,000 keys a pass: four passes over 1.1 million records
    n = await node(store, map_bytes=bound)
    part = await n.pm.open(topic.name, topic.topic_id, 0, epoch=1)
    keys, per_batch = 1_000_000, 1000
    for first in range(0, keys, per_batch):
        await n.produce(part, keyed_batch([(b"%07d" % k, b"a") for k in range(first, first + per_batch)]))
    for first in range(0, keys, 10 * per_batch):  # every tenth thousand keys written again
        await n.produce(part, keyed_batch([(b"%07d" % k, b"b") for k in range(first, first + per_batch)]))
    await consolidate(n)
    passes = await compact(n, part)
    stats = n.pm.compactor.stats
    assert passes >= 3
    assert stats.peak_map_bytes <= bound and stats.peak_map_entries * ENTRY_BYTES <= bound
    views = await n.log.read(part, 0, 1 << 31)
    assert sum(rec.header(v).records_count for v in views) == keys
    assert part.compacted_upto == part.next_offset
    await n.wal.stop()


async def test_the_key_check_reads_compressed_batches_off_the_event_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    import threading

    from floe_broker.log import compaction

    threads: list[threading.Thread] = []
    real = compaction.require_keys

    def spy(data: bytes) -> Any:
        threads.append(threading.current_thread())
        return real(data)

    monkeypatch.setattr(compaction, "require_keys", spy)
    assert await compaction.produce_error("compact", _compressed(keyed_batch([(None, b"v")]), 4)) == 87
    assert await compaction.produce_error("compact", keyed_batch([(b"k", b"v")])) is None
    assert await compaction.produce_error("delete", _compressed(keyed_batch([(None, b"v")]), 4)) is None
    assert threads[0] is not threading.main_thread()  # decompressing: a worker thread
    assert threads[1:] == [threading.main_thread()]  # a small plain batch: in place; an ordinary topic: never
