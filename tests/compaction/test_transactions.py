"""Key compaction of transactional data over the memory store: Kafka's cleaner rules, no sockets.

Aborted transactions' records go and never supersede a committed value; a
commit or abort marker stays while any data of its transaction does, then
``delete.retention.ms`` more; an open transaction (at or above the last
stable offset) is not touched; the aborted-transaction index loses an entry
only with its marker. Records are decoded by kafka-python's reader.
"""

from __future__ import annotations

import time
from typing import Any

from floe_broker.cluster.controller import fence_session
from floe_broker.log.compaction import records as rec
from floe_broker.log.partition import Partition
from floe_broker.protocol import records
from floe_broker.storage.memory import MemoryStore
from floe_broker.txn_journal import encode_marker
from tests.compaction.helpers import consumed, keyed_batch
from tests.compaction.test_algorithm import compact, compacted, consolidate, node, read
from tests.test_log_invariants import Node, topic_state

RETENTION_MS = 1000
A, B, C = 100, 200, 300  # producer ids: A commits, B aborts, C stays open until told


def txn(pid: int, seq: int, pairs: list[tuple[bytes | None, bytes | None]]) -> bytes:
    return keyed_batch(pairs, producer_id=pid, producer_epoch=0, base_sequence=seq,
                       attributes=records.ATTR_TRANSACTIONAL)


async def end(n: Node, part: Partition, pid: int, commit: bool) -> int:
    data = encode_marker(pid, 0, commit, 0)
    return await n.log.append_marker(part, data, records.scan_batches(data, max_batch_bytes=1 << 20), commit=commit)


async def batches(n: Node, part: Partition) -> list[rec.Header]:
    return [rec.header(b) for v in await n.log.read(part, part.log_start, 1 << 30) for b in rec.iter_batches(v)]


def values(got: list[Any]) -> list[tuple[int, bytes | None, bytes | None]]:
    return [(o, k, v) for o, k, v, _ in got]


async def interleaved() -> tuple[Node, Partition, list[int]]:
    """0-1 A (committed), 2 A's commit, 3 B (aborted), 4 B's abort, 5 C (open), 6 a plain tail."""
    n = await node(MemoryStore(), configs=compacted({"delete.retention.ms": str(RETENTION_MS)}))
    clock = [int(time.time() * 1000) + 10_000]
    n.pm.compactor.clock_ms = lambda: clock[0]
    _, topic = topic_state()
    part = await n.pm.open(topic.name, topic.topic_id, 0, epoch=1)
    await n.produce(part, txn(A, 0, [(b"k", b"committed"), (b"j", b"committed")]))
    await end(n, part, A, commit=True)
    await n.produce(part, txn(B, 0, [(b"k", b"aborted")]))
    await end(n, part, B, commit=False)
    await consolidate(n)
    await n.produce(part, txn(C, 0, [(b"j", b"open")]))
    await n.produce(part, keyed_batch([(b"tail", b"t")]))
    await consolidate(n)
    return n, part, clock


async def test_aborted_records_go_and_never_supersede_a_committed_value() -> None:
    n, part, _ = await interleaved()
    assert part.last_stable_offset == 5
    assert await compact(n, part) == 1
    assert values(await read(n, part)) == [(0, b"k", b"committed"), (1, b"j", b"committed"), (5, b"j", b"open"),
                                           (6, b"tail", b"t")]
    heads = await batches(n, part)
    assert [(h.base_offset, h.control) for h in heads] == [(0, False), (2, True), (4, True), (5, False), (6, False)]
    commit, abort = heads[1], heads[2]
    assert commit.delete_horizon is None  # A's data is still there: its marker waits without a horizon
    assert abort.delete_horizon is not None  # the pass removed all of B's data: the marker's clock runs
    assert part.txn_aborted == [[B, 3, 4]]  # the marker is still there, so is its entry
    await n.wal.stop()


async def test_an_open_transaction_is_untouched_until_it_ends() -> None:
    n, part, clock = await interleaved()
    await compact(n, part)
    # C is open at 5: its j must not have removed A's committed j at 1, since C may still abort.
    assert (1, b"j", b"committed") in values(await read(n, part))
    await end(n, part, C, commit=False)  # 7
    await n.produce(part, keyed_batch([(b"tail", b"t2")]))  # 8
    await consolidate(n)
    assert part.last_stable_offset == part.high_watermark == 9
    assert await compact(n, part) == 1
    assert values(await read(n, part)) == [(0, b"k", b"committed"), (1, b"j", b"committed"), (8, b"tail", b"t2")]
    await n.wal.stop()


async def test_markers_go_only_after_their_data_and_delete_retention() -> None:
    n, part, clock = await interleaved()
    await compact(n, part)  # B's data goes: its marker's horizon is now + RETENTION_MS
    clock[0] += RETENTION_MS // 2
    await end(n, part, C, commit=True)  # 7: C commits, so its j supersedes A's
    await n.produce(part, txn(A, 2, [(b"k", b"again")]))  # 8: A's next transaction supersedes its k
    await end(n, part, A, commit=True)  # 9
    await n.produce(part, keyed_batch([(b"tail", b"t2")]))  # 10
    await consolidate(n)
    assert await compact(n, part) == 1  # A's first transaction and B are now wholly gone
    assert values(await read(n, part)) == [(5, b"j", b"open"), (8, b"k", b"again"), (10, b"tail", b"t2")]
    controls = [h.base_offset for h in await batches(n, part) if h.control]
    assert controls == [2, 4, 7, 9]  # no marker goes before delete.retention.ms has passed
    clock[0] += RETENTION_MS // 2 - 1
    assert await compact(n, part) == 0  # nothing due yet
    clock[0] += 1
    assert await compact(n, part) == 1  # B's horizon (set in the first pass) has passed
    heads = await batches(n, part)
    assert [h.base_offset for h in heads if h.control] == [2, 7, 9]  # A's first commit: horizon from pass two
    assert part.txn_aborted == []  # B's entry went with its marker, in the same swap
    clock[0] += RETENTION_MS // 2
    assert await compact(n, part) == 1
    # 7 and 9 close transactions whose data is still there; 2's transaction is gone, so is 2.
    assert [h.base_offset for h in await batches(n, part) if h.control] == [7, 9]
    await n.wal.stop()


async def test_a_successor_after_kill9_mid_compaction_removes_the_markers_when_their_horizon_comes() -> None:
    n, part, clock = await interleaved()
    store = n.pm.store
    await end(n, part, C, commit=False)
    await n.produce(part, keyed_batch([(b"tail", b"t2")]))
    await consolidate(n)
    assert await compact(n, part) == 1  # B's and C's data go; their markers wait for their horizon
    await consolidate(n)  # the checkpoint batch names the compacted pieces (and when the markers may go)
    expected = values(await read(n, part))
    assert expected == [(0, b"k", b"committed"), (1, b"j", b"committed"), (8, b"tail", b"t2")]
    clock[0] += RETENTION_MS
    assert await compact(n, part) == 1 and part.txn_aborted == []  # markers and entries go, in memory only
    await n.wal.stop()
    await fence_session(store, 1, "s1")  # kill -9 before a checkpoint names that: the successor has the bucket
    successor = await node(store, 2, "s2", configs=compacted({"delete.retention.ms": str(RETENTION_MS)}))
    successor.pm.compactor.clock_ms = lambda: clock[0]
    again = await successor.pm.open(part.topic, part.topic_id, 0, epoch=2)
    assert values(await read(successor, again)) == expected
    # The checkpointed state: every marker still there with its entry, as consistent as before the pass.
    assert [h.base_offset for h in await batches(successor, again) if h.control] == [2, 4, 7]
    assert again.txn_aborted == [[B, 3, 4], [C, 5, 7]] and again.last_stable_offset == 9
    assert await compact(successor, again) == 1  # no new data at all: the checkpointed horizon alone is due
    assert [h.base_offset for h in await batches(successor, again) if h.control] == [2]
    assert again.txn_aborted == [] and values(await read(successor, again)) == expected
    await successor.wal.stop()


def test_a_delete_horizon_keeps_every_record_timestamp() -> None:
    batch = keyed_batch([(b"a", b"1"), (b"b", None), (b"c", b"3")], ts=1_700_000_000_000, ts_step=700)
    stamped = rec.with_delete_horizon(batch, 1_800_000_000_000)
    head = rec.header(stamped)
    assert head.delete_horizon == 1_800_000_000_000 and head.max_timestamp == rec.header(batch).max_timestamp
    assert [(k, v, ts) for _, k, v, ts in consumed([memoryview(stamped)])] == [
        (b"a", b"1", 1_700_000_000_000), (b"b", None, 1_700_000_000_700), (b"c", b"3", 1_700_000_001_400)]
