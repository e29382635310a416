"""A partition's transaction state: open transactions, the last stable offset and the aborted index.

Batches go through the real append path of an in-process broker (memory
store); the state must be the same whether it is kept in memory, read back
from a checkpoint body, or rebuilt from the stored bytes after a crash.
"""

from __future__ import annotations

import asyncio
import dataclasses
import struct
import time

import crc32c
import pytest

from floe_broker.errors import SequenceError
from floe_broker.log.partition import Partition
from floe_broker.protocol import records
from floe_broker.txn.coordinator import TXN_TOPIC, TxnShard
from floe_broker.txn.state import Refused
from floe_broker.txn_journal import encode_marker
from tests.infra.batches import record_batch, zigzag
from tests.inprocess.harness import CONFIG, started_broker


def txn_batch(pid: int, epoch: int, seq: int, value: bytes = b"v", count: int = 1) -> bytes:
    """A transactional batch (attributes bit 4), laid out by hand as a client would."""
    recs = b""
    for i in range(count):
        body = b"\x00" + zigzag(0) + zigzag(i) + zigzag(1) + b"k" + zigzag(len(value)) + value + zigzag(0)
        recs += zigzag(len(body)) + body
    ts = int(time.time() * 1000)
    after_crc = struct.pack(">hiqqqhii", records.ATTR_TRANSACTIONAL, count - 1, ts, ts, pid, epoch, seq,
                            count) + recs
    return struct.pack(">qiibI", 0, 9 + len(after_crc), -1, 2, crc32c.crc32c(after_crc)) + after_crc


async def append(log, part: Partition, data: bytes) -> int:  # type: ignore[no-untyped-def]
    batches = records.scan_batches(data, max_batch_bytes=1 << 20)
    done = await log.append_durably(part, data, batches)
    return int(done.base)


async def marker(log, part: Partition, pid: int, epoch: int, commit: bool) -> int:  # type: ignore[no-untyped-def]
    data = encode_marker(pid, epoch, commit, 0)
    return int(await log.append_marker(part, data, records.scan_batches(data, max_batch_bytes=1 << 20),
                                       commit=commit))


async def test_lso_aborted_index_checkpoint_and_rebuild_agree() -> None:
    async with started_broker() as broker:
        await broker.serving.create_topic("t", 1, {})
        part = await broker.serving.leader_partition("t", 0)
        assert part is not None
        log = broker.serving.log
        await append(log, part, record_batch(b"plain"))                      # 0
        a = await append(log, part, txn_batch(100, 0, 0, b"a", count=2))      # 1-2: pid 100, aborted below
        b = await append(log, part, txn_batch(200, 0, 0, b"b"))               # 3: pid 200, committed below
        await append(log, part, record_batch(b"plain2"))                     # 4
        assert part.last_stable_offset == a, "the earliest open transaction holds the LSO"
        assert part.high_watermark == 5
        abort_at = await marker(log, part, 100, 0, commit=False)             # 5
        assert part.last_stable_offset == b
        commit_at = await marker(log, part, 200, 0, commit=True)             # 6
        assert part.last_stable_offset == part.high_watermark == 7
        assert part.txn_aborted == [[100, a, abort_at]]
        assert part.aborted_between(0, 6) == [(100, a)]
        assert part.aborted_between(abort_at + 1, 6) == [], "ranges after the abort marker carry no abort"
        assert commit_at == 6

        # read_committed stops at the LSO: open a third transaction and read
        c = await append(log, part, txn_batch(300, 0, 0, b"c"))
        views = await log.read(part, 0, 1 << 20, committed=True)
        last = records.iter_headers(views[-1])[-1].last_offset
        assert last == c - 1, "nothing at or above the last stable offset is returned"
        everything = await log.read(part, 0, 1 << 20)
        assert records.iter_headers(everything[-1])[-1].last_offset == c

        # the same state from a checkpoint body ...
        copy = Partition(part.topic, part.topic_id, part.index, part.epoch)
        copy.load_checkpoint_body(part.checkpoint_body())
        assert (copy.txn_open, copy.txn_aborted) == (part.txn_open, part.txn_aborted)
        assert copy.last_stable_offset == part.last_stable_offset == c
        # ... and rebuilt from the stored bytes (a successor's tail recovery)
        rebuilt = Partition(part.topic, part.topic_id, part.index, part.epoch)
        rebuilt.high_watermark = part.high_watermark
        for view in everything:
            rebuilt.rebuild_producers(bytes(view))
        assert (rebuilt.txn_open, rebuilt.txn_aborted) == (part.txn_open, part.txn_aborted)
        assert rebuilt.producers[100].epoch == 0


async def test_a_marker_fences_older_epochs_and_a_stale_marker_is_refused() -> None:
    async with started_broker() as broker:
        await broker.serving.create_topic("f", 1, {})
        part = await broker.serving.leader_partition("f", 0)
        assert part is not None
        log = broker.serving.log
        await append(log, part, txn_batch(100, 0, 0))
        await marker(log, part, 100, 1, commit=False)  # the coordinator aborts with a bumped epoch
        with pytest.raises(SequenceError) as stale_batch:
            await append(log, part, txn_batch(100, 0, 1))
        assert stale_batch.value.code == 47  # INVALID_PRODUCER_EPOCH: the zombie cannot write
        with pytest.raises(SequenceError):
            await marker(log, part, 100, 0, commit=True)
        await append(log, part, txn_batch(100, 1, 0))  # the new incarnation starts at sequence 0
        assert part.txn_open == {100: 2}


async def test_transaction_state_is_snapshotted_and_replays_from_the_snapshot() -> None:
    """Many transactions of few ids: the coordinator rewrites the live state and trims the rest, and a
    coordinator loading the partition afterwards knows every id's last state."""
    async with started_broker(dataclasses.replace(CONFIG, transaction_state_partitions=1)) as broker:
        await broker.serving.ensure_txn_topic()
        shard = await broker.serving.txn.shard_at(0)
        assert shard is not None
        shard.snapshot_after = 40
        await broker.serving.create_topic("s", 1, {})

        async def new_pid() -> int:
            return await broker.serving.next_producer_id()

        for _ in range(30):
            for txn_id in ("a", "b"):
                meta = await shard.init_producer(txn_id, 60_000, (-1, -1), new_pid)
                assert not isinstance(meta, Refused)
        part = await broker.serving.leader_partition(TXN_TOPIC, 0)
        assert part is not None
        for _ in range(100):  # the snapshot runs in the background: poll for its trim
            if part.log_start > 0:
                break
            await asyncio.sleep(0.05)
        assert part.log_start > 0, "the snapshot moved the log start"
        fresh = TxnShard(0, shard.journal, shard.markers, shard.limits)
        await fresh.load()
        assert {k: (m.producer_id, m.producer_epoch) for k, m in fresh.txns.items()} == \
            {k: (m.producer_id, m.producer_epoch) for k, m in shard.txns.items()}
        assert shard.txns["a"].producer_epoch == 29


class _Markers:
    """Markers that fail until allowed (a partition leader that is down), recording what they wrote."""

    def __init__(self) -> None:
        self.allowed = False
        self.written: list[tuple[str, bool]] = []

    async def write(self, meta, commit: bool) -> None:  # type: ignore[no-untyped-def]
        if not self.allowed:
            raise ConnectionError("leader unreachable")
        self.written.append((meta.transactional_id, commit))


async def test_a_new_coordinator_finishes_a_decided_commit() -> None:
    """PrepareCommit is durable but the markers never got written (the coordinator died): the broker that
    loads the partition next writes them and completes the transaction, without any client."""
    async with started_broker(dataclasses.replace(CONFIG, transaction_state_partitions=1)) as broker:
        await broker.serving.ensure_txn_topic()
        part = await broker.serving.leader_partition(TXN_TOPIC, 0)
        assert part is not None
        journal = await broker.serving.txn_journal(0)
        assert journal is not None
        markers = _Markers()
        first = TxnShard(0, journal, markers, broker.serving.txn.limits)

        async def new_pid() -> int:
            return 42

        meta = await first.init_producer("tx-dead", 60_000, (-1, -1), new_pid)
        assert not isinstance(meta, Refused)
        assert await first.add_partitions("tx-dead", 42, 0, {("t", 0)}) == 0
        ending = asyncio.create_task(first.end("tx-dead", 42, 0, True))
        for _ in range(100):  # PrepareCommit durable, markers failing
            if first.txns["tx-dead"].state.value == "PrepareCommit":
                break
            await asyncio.sleep(0.02)
        assert first.txns["tx-dead"].state.value == "PrepareCommit"
        first.close()  # the coordinator is gone
        ending.cancel()

        markers_next = _Markers()
        markers_next.allowed = True
        second = TxnShard(0, journal, markers_next, broker.serving.txn.limits)
        await second.load()
        for _ in range(100):
            if second.txns["tx-dead"].state.value == "CompleteCommit":
                break
            await asyncio.sleep(0.02)
        assert markers_next.written == [("tx-dead", True)]
        assert second.txns["tx-dead"].state.value == "CompleteCommit"
        second.close()
        for _ in range(100):  # Complete is appended without waiting: a reload sees it once durable
            third = TxnShard(0, journal, _Markers(), broker.serving.txn.limits)
            await third.load()
            third.close()
            if third.txns["tx-dead"].state.value == "CompleteCommit":
                break
            await asyncio.sleep(0.02)
        assert third.txns["tx-dead"].state.value == "CompleteCommit"


async def test_an_abort_durable_above_the_checkpoints_high_watermark_survives_a_crash() -> None:
    """A checkpoint taken between an abort marker's flush and the high watermark passing it must
    leave the transaction open, so the successor that recovers the marker indexes the abort."""
    async with started_broker() as broker:
        await broker.serving.create_topic("t", 1, {})
        part = await broker.serving.leader_partition("t", 0)
        assert part is not None
        log = broker.serving.log
        a = await append(log, part, txn_batch(100, 0, 0, b"a"))
        abort_at = await marker(log, part, 100, 0, commit=False)
        tail = b"".join(bytes(v) for v in await log.read(part, abort_at, 1 << 20))
        part.high_watermark = abort_at  # the checkpoint is written before the HW passes the marker
        successor = Partition(part.topic, part.topic_id, part.index, part.epoch)
        successor.load_checkpoint_body(part.checkpoint_body())
        assert successor.last_stable_offset == a, "the aborted transaction is still open at the checkpoint"
        successor.high_watermark = abort_at + 1
        successor.rebuild_producers(tail)  # the WAL tail after the checkpoint holds the marker
        assert successor.txn_aborted == [[100, a, abort_at]]
        assert successor.aborted_between(a, a) == [(100, a)], "read_committed consumers drop the aborted record"
