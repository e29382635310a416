"""Metadata in the bucket: snapshot plus deltas, controller failover, catch-up, upgrade, cost.

Controllers here are real ``Controller`` objects on one memory store; a
"paused" controller is one whose lease another session took while it still
believes it holds it.
"""

from __future__ import annotations

import asyncio
import json

import pytest

from floe_api.internal import CreateTopic, MetadataPush
from floe_broker.cluster.controller import Controller, Lease, now_ms
from floe_broker.cluster.metadata import BrokerInfo, ClusterState
from floe_broker.cluster.metadata_log import MetadataLog
from floe_broker.errors import NotController, NotFound
from floe_broker.storage.instrumented import InstrumentedStore
from floe_broker.storage.layout import CLUSTER_KEY, LEASE_KEY, METADATA_LOG_PREFIX, metadata_delta_key
from floe_broker.storage.memory import MemoryStore

from .conftest import SESSION_TIMEOUT_MS, Cluster, NoPeers
from .test_membership import Seen, membership


def controller(store: MemoryStore | InstrumentedStore, session: str, log: MetadataLog | None = None) -> Controller:
    ctl = Controller(store, session=session, http=f"{session}:1", session_timeout_ms=SESSION_TIMEOUT_MS,
                     metadata_log=log)
    ctl.peers = NoPeers()
    return ctl


async def expire_lease(store: MemoryStore) -> None:
    """The holder stops renewing (paused, partitioned): its lease runs out without it knowing."""
    got = await store.get(LEASE_KEY)
    lease = Lease.from_bytes(got.data)
    lease.expires_ms = now_ms() - 1
    await store.put(LEASE_KEY, lease.to_bytes(), if_match=got.etag)


async def test_controller_failover_mid_stream_loses_no_change_and_applies_none_twice() -> None:
    store = MemoryStore()
    a, b = controller(store, "a"), controller(store, "b")
    assert await a.try_acquire()
    granted: list[int] = []  # first ids of every allocation a caller was told succeeded
    refused = 0
    halfway = asyncio.Event()

    async def allocate(ctl: Controller, n: int) -> None:
        nonlocal refused
        for _ in range(n):
            try:
                granted.append(await ctl.allocate_producer_ids(10))
                if len(granted) == 50:
                    halfway.set()
            except NotController:
                refused += 1
            await asyncio.sleep(0.001)

    worker_a = asyncio.create_task(allocate(a, 200))
    await halfway.wait()
    await expire_lease(store)  # a does not know: it goes on committing
    assert await b.try_acquire()  # b takes over while a is still committing
    await asyncio.gather(worker_a, allocate(b, 100))

    assert refused > 0, "the deposed controller kept committing"
    assert len(set(granted)) == len(granted)  # no id handed out twice
    assert b.state is not None and b.state.next_producer_id == 1000 + 10 * len(granted)  # none lost
    fresh = await MetadataLog(store).load()
    assert fresh.to_bytes() == b.state.to_bytes()
    versions = [int(k.rsplit("/", 1)[1]) for k in await store.list(METADATA_LOG_PREFIX)]
    assert versions == list(range(versions[0], versions[-1] + 1))  # one delta per version, no gap


async def test_a_controller_that_slept_through_retired_versions_cannot_commit() -> None:
    """Deleted delta keys can be created again: the predecessor check catches the stale writer."""
    store = MemoryStore()
    a = controller(store, "a")
    b = controller(store, "b", MetadataLog(store, snapshot_min_bytes=1, snapshot_ratio=0))
    assert await a.try_acquire()
    await a.allocate_producer_ids(1)
    assert a.state is not None
    stale = a.state.version
    await expire_lease(store)
    assert await b.try_acquire()
    for _ in range(5):
        await b.allocate_producer_ids(1)
        assert b.state is not None
        await b.log.snapshot(b.state)
    with pytest.raises(NotFound):
        await store.get(metadata_delta_key(stale + 1))  # retired: a's next key is free again
    with pytest.raises(NotController):
        await a.allocate_producer_ids(1)
    with pytest.raises(NotFound):
        await store.get(metadata_delta_key(stale + 1))  # a withdrew its stale write
    assert b.state is not None
    assert (await MetadataLog(store).load()).to_bytes() == b.state.to_bytes()


async def test_snapshots_bound_the_deltas_kept_and_a_reader_gets_the_same_state() -> None:
    store = MemoryStore()
    ctl = controller(store, "c", MetadataLog(store, snapshot_min_bytes=2000, snapshot_ratio=0))
    assert await ctl.try_acquire()
    for i in range(60):
        await ctl.commit(lambda s, i=i: s.create_topic(f"t{i}", 2))  # type: ignore[misc]
        if ctl._snapshotting is not None:
            await ctl._snapshotting  # a due snapshot, written in the background
    assert ctl.state is not None
    kept = await store.list(METADATA_LOG_PREFIX)
    assert len(kept) < 40, f"{len(kept)} deltas kept: old ones are not retired"
    assert json.loads((await store.get(CLUSTER_KEY)).data)["version"] > 30
    assert (await MetadataLog(store).load()).to_bytes() == ctl.state.to_bytes()


async def test_a_bucket_from_before_deltas_opens_without_loss(cluster: Cluster) -> None:
    legacy = {"version": 41, "next_node_id": 8, "next_producer_id": 5000,
              "brokers": {"7": {"session": "old", "host": "h", "port": 9092, "http": "h:9644",
                                "registered_ms": 1, "draining": False}},
              "topics": {"t": {"id": "6f1c0d0e-7b7e-4b49-9d0a-1b2c3d4e5f60", "internal": False,
                               "configs": {"retention.ms": "5"}, "partitions": [[7, 3, "old"], [7, 1, "old"]]}},
              "fenced": {"gone": 2}, "retired": {}}
    await cluster.store.put(CLUSTER_KEY, json.dumps(legacy, indent=1, sort_keys=True).encode())
    ctl = await cluster.node("new")
    assert await ctl.controller.try_acquire()
    state = ctl.controller.state
    assert state is not None and state.version == 42  # the takeover commit on top of version 41
    assert state.topics["t"].partitions[0].epoch == 3 and state.topics["t"].configs == {"retention.ms": "5"}
    assert state.next_producer_id == 5000 and state.fenced == {"gone": 2} and 7 in state.brokers
    await ctl.local.apply(CreateTopic(name="u", partitions=1))
    seen = Seen()
    m = membership(cluster, (await cluster.node("member")).controller, seen)
    await m.join()
    assert m.view.to_bytes() == ctl.state().to_bytes()  # a joining broker reads snapshot + deltas


async def test_a_member_applies_the_next_delta_and_catches_up_after_a_gap(cluster: Cluster) -> None:
    ctl = await cluster.node("ctl")
    assert await ctl.controller.try_acquire()
    seen = Seen()
    m = membership(cluster, (await cluster.node("member")).controller, seen)
    await m.join()
    pushes: list[MetadataPush] = []

    class Recording(NoPeers):
        async def push(self, node: int, committed) -> None:  # type: ignore[no-untyped-def]
            pushes.append(MetadataPush(version=committed.state.version, delta=committed.delta.decode()))

    ctl.controller.peers = Recording()

    async def broadcast(committed) -> None:  # type: ignore[no-untyped-def]
        await ctl.controller.peers.push(m.node_id, committed)  # type: ignore[union-attr]

    ctl.controller.on_change = broadcast
    for i in range(4):
        await ctl.local.apply(CreateTopic(name=f"t{i}", partitions=3))

    # the next one: applied as it is
    state = await m.receive(pushes[0])
    assert state is not None and state.version == pushes[0].version and "t0" in m.view.topics
    # one lost: the push after it is a gap, and the member reads the bucket
    state = await m.receive(pushes[2])
    assert state is not None and m.view.version >= pushes[2].version  # as far as the bucket goes
    assert {"t1", "t2"} <= m.view.topics.keys()
    # an old or repeated push changes nothing
    assert await m.receive(pushes[1]) is None and await m.receive(pushes[2]) is None
    # missed every push after: the heartbeat's version makes it catch up
    ctl.controller.on_change = None
    await ctl.local.apply(CreateTopic(name="late", partitions=1))
    assert "late" not in m.view.topics
    await m.member_round()
    assert m.view.to_bytes() == ctl.state().to_bytes()


async def test_metadata_bytes_written_per_move_do_not_grow_with_partitions() -> None:
    """Today's single object wrote ~50 bytes per partition per change; a delta writes the change."""

    async def bytes_per_move(partitions: int) -> float:
        store = InstrumentedStore(MemoryStore())
        ctl = controller(store, "c")  # type: ignore[arg-type]
        assert await ctl.try_acquire()

        def setup(s: ClusterState) -> None:
            for n in (1, 2):
                s.brokers[n] = BrokerInfo(n, f"s{n}", "h", n, f"h:{n}", 0)
            for t in range(max(1, partitions // 100)):
                s.create_topic(f"t{t}", min(100, partitions))

        await ctl.commit(setup)
        assert ctl._snapshotting is None or await ctl._snapshotting is None
        store.reset_stats()
        moves = 400
        for i in range(moves):
            assert ctl.state is not None
            p = ctl.state.topics["t0"].partitions[i % 100]
            await ctl.commit(lambda s, i=i, p=p: s.set_leader("t0", i % 100, 3 - p.leader))  # type: ignore[misc]
            if ctl._snapshotting is not None:
                await ctl._snapshotting  # count the snapshots their moves made due
        return store.stats()["bytes_written"].get("cluster", 0) / moves  # snapshot and deltas

    small, large = await bytes_per_move(100), await bytes_per_move(10_000)
    assert large < 2048, f"{large:.0f} bytes of metadata written per move at 10,000 partitions"
    assert large < 8 * small, f"{small:.0f} bytes per move at 100 partitions, {large:.0f} at 10,000"


async def test_a_snapshot_is_never_replaced_by_an_older_version() -> None:
    store = MemoryStore()
    old = ClusterState(version=5)
    new = ClusterState(version=9)
    new.create_topic("t", 2)
    slow, fast = MetadataLog(store), MetadataLog(store)
    await slow.load()
    await fast.load()
    await fast.snapshot(new)
    await slow.snapshot(old)  # a deposed controller's late snapshot
    assert ClusterState.from_bytes((await store.get(CLUSTER_KEY)).data).to_bytes() == new.to_bytes()
    assert slow.snapshot_version == 9  # it learnt the newer one
