"""A bucket written by the per-partition checkpoint layout opens without loss.

``fixtures/old_layout.json`` was written by that layout's own writer
(``fixtures/build_old_layout.py``): partition 0 closed cleanly (a
one-partition data object plus WAL ranges), partition 1 crashed with a tail
of idempotent batches only in the WAL of a fenced session.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

from floe_broker.cluster.controller import fence_session
from floe_broker.log.gc import WalCollector
from floe_broker.storage.memory import MemoryStore
from tests.test_log_invariants import Node, batch

FIXTURE = Path(__file__).parent / "fixtures" / "old_layout.json"


async def old_bucket() -> tuple[MemoryStore, str]:
    doc = json.loads(FIXTURE.read_text())
    store = MemoryStore()
    for key, data in doc["objects"].items():
        await store.put(key, base64.b64decode(data))
    return store, doc["topic_id"]


async def test_old_layout_opens_without_loss_and_keeps_working() -> None:
    store, tid = await old_bucket()
    old_data = sorted(k for k in await store.list("data/"))
    assert old_data and not await store.list("meta/checkpoints/")
    a = Node(store, 7, "new")
    p0 = await a.pm.open("t", tid, 0, epoch=2)
    p1 = await a.pm.open("t", tid, 1, epoch=2)
    assert await a.read_all(p0) == list(range(9)), "clean partition: old data object and WAL ranges"
    assert await a.read_all(p1) == list(range(16)), "crashed partition: old checkpoint plus the WAL tail"
    retry = await a.produce_batch(p1, batch(pid=42, epoch=0, seq=9))
    assert retry.duplicate and retry.base == 15, "idempotent state rebuilt from the old WAL"
    assert await a.produce(p0, batch()) == 9 and await a.produce(p1, batch()) == 16, "no offset reused"
    # The new writer takes over: batches, the collector, a crash, a successor.
    await a.pm.maintenance()
    assert await store.list("meta/checkpoints/")
    await WalCollector(store, grace_s=0).run_once(live_sessions={"new"})
    assert sorted(k for k in await store.list("data/") if k in old_data) == old_data, \
        "old data objects are still referenced"
    await a.wal.stop()
    await fence_session(store, 7, "new")
    b = Node(store, 8, "next")
    q0 = await b.pm.open("t", tid, 0, epoch=3)
    q1 = await b.pm.open("t", tid, 1, epoch=3)
    assert await b.read_all(q0) == list(range(10))
    assert await b.read_all(q1) == list(range(17))
