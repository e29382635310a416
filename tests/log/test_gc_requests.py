"""The WAL collector's requests per pass do not grow with partitions.

Every pass builds the reference view from the per-partition checkpoints and
the checkpoint batches. The checkpoints' listing carries ETags, so a pass
reads a checkpoint again only when it was rewritten; these tests count the
requests on the instrumented store, in-process, for two partition counts.
"""

from __future__ import annotations

from floe_broker.log.gc import FULL_PASS_EVERY, WalCollector
from floe_broker.protocol import records
from floe_broker.storage.instrumented import InstrumentedStore
from floe_broker.storage.memory import MemoryStore
from tests.log.test_checkpoint_batches import CONSOLIDATE, TID
from tests.test_log_invariants import Node, batch


async def checkpoint_requests_per_pass(partitions: int, passes: int) -> list[dict[str, int]]:
    """Per steady pass (after the first), the collector's GET and LIST requests on checkpoint keys."""
    store = InstrumentedStore(MemoryStore())
    a = Node(store, 1, "a", CONSOLIDATE)
    parts = [await a.pm.open("t", TID, i, epoch=1) for i in range(partitions)]
    leaders = {(TID, i): (1, "a") for i in range(partitions)}
    gc = WalCollector(store, grace_s=3600)
    await gc.run_once(live_sessions={"a"}, leaders=leaders, now=0)
    data = batch()
    scanned = records.scan_batches(data, max_batch_bytes=1 << 20)
    out = []
    for n in range(1, passes + 1):
        await a.log.wait_durable([a.log.append(p, data, scanned) for p in parts])
        await a.pm.maintenance()  # one new checkpoint batch for all of them
        store.reset_stats()
        await gc.run_once(live_sessions={"a"}, leaders=leaders, now=n)
        reqs = store.stats()["requests"]
        out.append({op: reqs.get(op, {}).get("checkpoint", 0) for op in ("get", "list")})
    await a.wal.stop()
    return out


async def test_a_pass_reads_the_same_whatever_the_number_of_partitions() -> None:
    passes = FULL_PASS_EVERY + 1  # long enough for any periodic full re-read to show
    few = await checkpoint_requests_per_pass(5, passes)
    many = await checkpoint_requests_per_pass(200, passes)
    assert few == many, "checkpoint requests per pass grow with partitions"
    assert all(p == {"get": 1, "list": 2} for p in many), \
        f"one GET for the new batch, one LIST of checkpoints and one of batches per pass: {many}"


async def test_a_rewritten_checkpoint_is_read_on_the_next_pass() -> None:
    store = InstrumentedStore(MemoryStore())
    a = Node(store, 1, "a", CONSOLIDATE)
    parts = [await a.pm.open("t", TID, i, epoch=1) for i in range(20)]
    for p in parts:
        await a.produce(p, batch())
    await a.pm.maintenance()
    gc = WalCollector(store, grace_s=3600)
    # The metadata still names a at epoch 1 for every partition: only the ETag can tell.
    leaders = {(TID, i): (1, "a") for i in range(20)}
    await gc.run_once(live_sessions={"a"}, leaders=leaders, now=0)
    reads = gc.checkpoint_reads
    await a.pm.close("t", 7)  # a clean checkpoint now names partition 7's segments itself
    await gc.run_once(live_sessions={"a"}, leaders=leaders, now=1)
    assert gc.checkpoint_reads == reads + 1, "the rewritten checkpoint, and only it, is read again"
    view = await gc.reference_view(live_sessions={"a"}, leaders=leaders)
    closed = parts[7].checkpoint_body()
    assert {row[0] for row in closed["segments"] + closed["wal"]} <= view.referenced
    await a.wal.stop()
