"""Composition root: wires storage, controller, log, dispatch and servers together.

Start-up order (each step fails fast with a reason):
  1. open the object store and ``check()`` it (bucket, credentials, reachability);
  2. become controller if the lease is free, else wait for it (a restarted
     single broker waits for its predecessor's lease to expire);
  3. register: get a node id for this process's new session;
  4. start the WAL writer, open the partitions we lead, start listeners;
  5. ready.

SIGTERM (and ``POST /v1/drain``) drains: stop taking produce, make pending
data durable, write clean checkpoints, leave the cluster, exit 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from typing import Any

import structlog
from kio.schema.errors import ErrorCode
from prometheus_client import REGISTRY

from . import metrics
from .cluster.controller import CLUSTER_KEY, LEASE_KEY, Controller, Lease, MoveResult, new_session, now_ms
from .cluster.gc import WalCollector
from .cluster.metadata import ClusterState, apply_op
from .cluster.rpc import Rpc
from .config import BrokerConfig
from .dispatch import Dispatcher
from .errors import NotController, NotFound, RpcError, StartupError, StoreMisconfigured, StoreUnavailable, TopicError
from .group_journal import PartitionJournal
from .group_metrics import GroupOffsetsCollector
from .groups.coordinator import OFFSETS_TOPIC, GroupCoordinator
from .groups.state import Limits
from .log.cache import BlockCache
from .log.manager import PartitionManager, Settings
from .log.partition import Partition
from .log.service import LogService
from .log.wal import WalWriter
from .server.listener import KafkaListener
from .storage.objectstore import ObjectStore

log = structlog.get_logger(__name__)

INTERNAL_PREFIX = "__"
MAX_PARTITIONS_PER_TOPIC = 100_000
PRODUCER_ID_BLOCK = 1000


class Broker:
    def __init__(self, config: BrokerConfig, store: ObjectStore) -> None:
        self.config = config
        self.store = store
        self.session = new_session()
        self.node_id = -1
        self.cluster_id = config.cluster
        host, port = config.advertised
        self.http_address = f"{config.advertised[0]}:{config.http[1]}"
        self.controller = Controller(
            store,
            session=self.session,
            http=self.http_address,
            session_timeout_ms=config.session_timeout_ms,
            on_change=self._on_metadata,
        )
        self.cache = BlockCache(store, block_size=config.block_size, capacity_bytes=config.block_cache_bytes)
        self.wal: WalWriter = None  # type: ignore[assignment]
        self.partitions: PartitionManager = None  # type: ignore[assignment]
        self.log: LogService = None  # type: ignore[assignment]
        self.listener: KafkaListener | None = None
        self.http_server: Any = None
        self.ready = False
        self.draining = False
        self.leaving = False  # drained, now leaving the cluster: heartbeats may be refused
        self.stopped = asyncio.Event()
        self.exit_code = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self._sync_lock = asyncio.Lock()
        self._view = ClusterState()  # metadata as last pushed/read, when not the controller
        self._controller_session: str | None = None  # holder of a valid lease, as last read
        self._pid_next = 0
        self._pid_end = 0
        self._pid_lock = asyncio.Lock()
        self.wal_gc = WalCollector(store, grace_s=config.wal_gc_grace_ms / 1000)
        self._next_gc = time.monotonic() + config.wal_gc_interval_ms / 1000
        self.rpc = Rpc()
        self.controller.peers = self
        self._group_collector: GroupOffsetsCollector | None = None
        self._metadata_waiters: set[asyncio.Future[None]] = set()
        self._stranded: dict[tuple[str, int, int], float] = {}  # released, still ours: since when
        self.groups = GroupCoordinator(
            self._group_journal,
            self._offsets_partitions,
            Limits(
                min_session_timeout_ms=config.group_min_session_timeout_ms,
                max_session_timeout_ms=config.group_max_session_timeout_ms,
                initial_rebalance_delay_ms=config.group_initial_rebalance_delay_ms,
                max_size=config.group_max_size,
            ),
            snapshot_after=config.offsets_snapshot_records,
        )

    # ---- BrokerContext ------------------------------------------------------------

    def state(self) -> ClusterState:
        if self.controller.active and self.controller.state is not None:
            return self.controller.state
        return self._view

    def controller_node(self) -> int:
        if self.controller.active:
            return self.node_id
        holder = self._controller_session
        for n, b in self.state().brokers.items():
            if b.session == holder:
                return n
        return -1

    def topic_config(self, topic: str, key: str) -> str | None:
        info = self.state().topics.get(topic)
        return info.configs.get(key) if info else None

    async def leader_partition(self, topic: str, index: int) -> Partition | None:
        part = self.partitions.get(topic, index)
        if part is not None and part.accepting:
            return part
        info = self.state().topics.get(topic)
        if info is None or not 0 <= index < len(info.partitions) or self.draining:
            return None
        p = info.partitions[index]
        if p.leader != self.node_id:
            return None
        return await self.partitions.open(info, index, p.epoch)

    async def _group_journal(self, index: int) -> PartitionJournal | None:
        part = await self.leader_partition(OFFSETS_TOPIC, index)
        if part is None or self.partitions is None:
            return None
        return PartitionJournal(part, self.log)

    def _local_high_watermark(self, topic: str, index: int) -> int | None:
        part = self.partitions.get(topic, index) if self.partitions is not None else None
        return part.high_watermark if part is not None else None

    def _offsets_partitions(self) -> int:
        info = self.state().topics.get(OFFSETS_TOPIC)
        return len(info.partitions) if info else 0

    async def ensure_offsets_topic(self) -> None:
        """Create ``__consumer_offsets`` on first use (never expires: commits live until deleted)."""
        if OFFSETS_TOPIC in self.state().topics:
            return
        try:
            await self._op("create_topic", {"name": OFFSETS_TOPIC, "partitions": self.config.offsets_topic_partitions,
                                            "configs": {"retention.ms": "-1", "retention.bytes": "-1",
                                                        "cleanup.policy": "compact"}})
        except Exception as exc:
            if OFFSETS_TOPIC not in self.state().topics:
                raise TopicError(ErrorCode.coordinator_not_available,
                                 f"cannot create {OFFSETS_TOPIC}: {exc}") from exc

    async def create_topic(
        self, name: str, partitions: int, configs: dict[str, str], *, validate_only: bool = False
    ) -> None:
        if not name or len(name) > 249 or not all(c.isalnum() or c in "._-" for c in name):
            raise TopicError(ErrorCode.invalid_topic_exception, f"invalid topic name {name!r}")
        if not 0 < partitions <= MAX_PARTITIONS_PER_TOPIC:
            raise TopicError(ErrorCode.invalid_partitions, f"partition count {partitions} out of range")
        if name in self.state().topics:
            raise TopicError(ErrorCode.topic_already_exists, f"topic {name!r} already exists")
        if validate_only:
            return

        await self._op("create_topic", {"name": name, "partitions": partitions, "configs": configs})
        log.info("topic created", topic=name, partitions=partitions, configs=configs)

    async def delete_topic(self, name: str) -> None:
        await self._op("delete_topic", {"name": name})
        log.info("topic deleted", topic=name)

    async def create_partitions(self, name: str, total: int, *, validate_only: bool = False) -> None:
        info = self.state().topics.get(name)
        if info is None:
            raise TopicError(ErrorCode.unknown_topic_or_partition, f"topic {name!r} does not exist")
        if total <= len(info.partitions):
            raise TopicError(
                ErrorCode.invalid_partitions,
                f"topic {name!r} has {len(info.partitions)} partitions; the count can only grow",
            )
        if total > MAX_PARTITIONS_PER_TOPIC:
            raise TopicError(ErrorCode.invalid_partitions, f"partition count {total} out of range")
        if validate_only:
            return
        await self._op("add_partitions", {"name": name, "total": total})

    async def alter_topic_configs(
        self, name: str, changes: list[tuple[str, int, str | None]], *, validate_only: bool = False
    ) -> None:
        if name not in self.state().topics:
            raise TopicError(ErrorCode.unknown_topic_or_partition, f"topic {name!r} does not exist")
        for key, op, _ in changes:
            if op not in (0, 1):
                raise TopicError(ErrorCode.invalid_config, f"operation {op} on {key} is not supported for scalars")
        if validate_only:
            return
        await self._op("alter_configs", {"name": name, "changes": [list(c) for c in changes]})

    async def next_producer_id(self) -> int:
        """A producer id from this broker's block; a new block from the controller when empty."""
        async with self._pid_lock:
            if self._pid_next >= self._pid_end:
                if self.controller.active:
                    start = await self.controller.allocate_producer_ids(PRODUCER_ID_BLOCK)
                else:
                    lease = await self._read_lease()
                    if lease is None:
                        raise RpcError("no controller")
                    reply = await self.rpc.call(lease.http, "/internal/v1/producer-ids",
                                                {"count": PRODUCER_ID_BLOCK})
                    start = int(reply["start"])
                self._pid_next, self._pid_end = start, start + PRODUCER_ID_BLOCK
            pid = self._pid_next
            self._pid_next += 1
            return pid

    async def _op(self, op: str, args: dict[str, Any]) -> None:
        """Apply a metadata change at the controller (here, or forwarded by RPC)."""
        if self.controller.active:
            try:
                await self.controller.commit(lambda s: apply_op(s, op, args))
                return
            except NotController:
                pass
        lease = await self._read_lease()
        if lease is None or lease.holder == self.session:
            raise TopicError(ErrorCode.not_controller, "no controller is available right now")
        try:
            await self.rpc.call(lease.http, "/internal/v1/op", {"op": op, "args": args}, timeout_s=15)
        except RpcError as exc:
            raise TopicError(ErrorCode.not_controller, f"controller unreachable: {exc}") from None

    # ---- lifecycle -----------------------------------------------------------------

    async def start(self) -> None:
        try:
            await self.store.check()
        except StoreMisconfigured as exc:
            raise StartupError(f"object store unusable: {exc}") from exc
        self.node_id = await self._join()
        structlog.contextvars.bind_contextvars(node=self.node_id)
        self.wal = WalWriter(
            self.store,
            node_id=self.node_id,
            session=self.session,
            flush_interval_ms=self.config.flush_interval_ms,
            flush_bytes=self.config.flush_bytes,
            max_pending_bytes=self.config.max_pending_bytes,
            max_inflight=self.config.max_inflight_flushes,
            on_fenced=self._on_fenced,
        )
        self.wal.start()
        self.partitions = PartitionManager(
            self.store,
            self.wal,
            self.cache,
            node_id=self.node_id,
            session=self.session,
            settings=Settings(
                checkpoint_interval_ms=self.config.checkpoint_interval_ms,
                compact_after_bytes=self.config.compact_after_bytes,
                compact_after_ms=self.config.compact_after_ms,
                retention_ms=self.config.retention_ms,
                retention_bytes=self.config.retention_bytes,
                memory_cache_bytes=self.config.memory_cache_bytes,
                block_size=self.config.block_size,
            ),
            topic_config=self.topic_config,
        )
        self.log = LogService(self.wal, self.partitions, self.cache)
        await self.controller.place_orphans()
        await self._sync(self.state())
        self.listener = KafkaListener(
            Dispatcher(self),
            host=self.config.listen[0],
            port=self.config.listen[1],
            max_request_bytes=self.config.socket_request_max_bytes,
            max_inflight=self.config.max_inflight_requests,
            idle_timeout=self.config.idle_timeout_s,
        )
        try:
            await self.listener.start()
        except OSError as exc:
            raise StartupError(f"cannot listen on {self.config.listen}: {exc}") from exc
        self._spawn(self._lease_loop(), "lease")
        self._spawn(self._controller_loop(), "controller-loop")
        self._spawn(self._maintenance_loop(), "maintenance")
        self.groups.start()
        if self.config.per_partition_metrics:
            self._group_collector = GroupOffsetsCollector(self.groups, self._local_high_watermark)
            REGISTRY.register(self._group_collector)
        self.ready = True
        metrics.BROKER_STATE.labels("ready").set(1)
        log.info("broker ready", node=self.node_id, session=self.session,
                 kafka=f"{self.config.advertised[0]}:{self.listener.port}", http=self.http_address)

    async def _read_lease(self) -> Lease | None:
        try:
            got = await self.store.get(LEASE_KEY)
        except (NotFound, StoreUnavailable):
            return None
        lease = Lease.from_bytes(got.data)
        self._controller_session = lease.holder if lease.expires_ms > now_ms() else None
        return lease

    async def _join(self) -> int:
        """Become controller if the lease is free, else register with the one holding it."""
        host, port = self.config.advertised
        started = time.monotonic()
        while True:
            if await self.controller.try_acquire():
                return await self.controller.register(self.session, host, port, self.http_address)
            lease = await self._read_lease()
            if lease is not None and lease.expires_ms > now_ms():
                try:
                    reply = await self.rpc.call(lease.http, "/internal/v1/register", {
                        "session": self.session, "host": host, "port": port, "http": self.http_address})
                    await self._refresh_view()
                    return int(reply["node"])
                except RpcError as exc:
                    log.info("controller not reachable yet", controller=lease.http, error=str(exc))
            if time.monotonic() - started > 120:
                raise StartupError("could not join the cluster: no controller answered for 120 s")
            await asyncio.sleep(min(0.5, self.config.session_timeout_ms / 4000))

    async def _refresh_view(self) -> None:
        try:
            got = await self.store.get(CLUSTER_KEY)
        except (NotFound, StoreUnavailable):
            return
        state = ClusterState.from_bytes(got.data)
        if state.version > self._view.version:
            await self.apply_metadata(state)

    async def apply_metadata(self, state: ClusterState) -> None:
        """New metadata from the controller (push) or the bucket (catch-up)."""
        if not self.controller.active and state.version >= self._view.version:
            self._view = state
            self._metadata_changed()
        if self.partitions is not None:
            await self._sync(self.state())

    def _metadata_changed(self) -> None:
        for fut in self._metadata_waiters:
            if not fut.done():
                fut.set_result(None)
        self._metadata_waiters.clear()

    async def wait_for_new_leaders(self, keys: list[tuple[str, int]], within_s: float) -> None:
        """Wait (up to ``within_s``) until none of these partitions is led by us any more.

        A produce that reaches us while a partition is moving away would otherwise get
        NOT_LEADER_OR_FOLLOWER without the new leader, and the client would go through a
        metadata refresh; the move commits within milliseconds, so we wait for it and
        answer with the new leader (KIP-951) instead.
        """
        deadline = asyncio.get_running_loop().time() + within_s
        while True:
            state = self.state()
            if not any((p := state.partition(t, i)) is not None and p.leader == self.node_id for t, i in keys):
                return
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                return
            fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._metadata_waiters.add(fut)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(fut, remaining)

    def _spawn(self, coro: Any, name: str) -> None:
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _lease_loop(self) -> None:
        """Renew the controller lease on its own task: controller work (fencing,
        pushes to brokers recovering partitions) may take longer than the lease."""
        interval = self.config.heartbeat_interval_ms / 1000
        while True:
            await asyncio.sleep(interval)
            try:
                if self.controller.lease is not None and self.controller.lease.holder == self.session:
                    if not await self.controller.renew():
                        self.controller.lease = None  # someone else holds it now: become a member
            except Exception as exc:
                log.warning("lease renewal failed", error=repr(exc))

    async def _controller_loop(self) -> None:
        """Each heartbeat interval: supervise as controller, else heartbeat to it."""
        interval = self.config.heartbeat_interval_ms / 1000
        while True:
            await asyncio.sleep(interval)
            try:
                await self._reclaim_stranded()
            except Exception as exc:
                log.warning("reclaiming released partitions failed", error=repr(exc))
            try:
                if self.controller.lease is not None and self.controller.lease.holder == self.session:
                    if self.controller.active:
                        if not self.controller.heartbeat(self.node_id, self.session):
                            self._fenced("the controller no longer knows this session")
                            return
                        await self.controller.check_liveness()
                        await self._maybe_collect_wal()
                    continue
                await self._member_round()
            except Exception as exc:
                log.warning("controller round failed", error=repr(exc))

    async def _reclaim_stranded(self) -> None:
        """Partitions we released for a move that never committed (its controller died or
        gave up) are still ours in the metadata, at an epoch we may not reopen. After a grace
        period, ask for a new epoch so they are served again."""
        if self.partitions is None or self.draining:
            return
        now = time.monotonic()
        state = self.state()
        stranded: set[tuple[str, int, int]] = set()
        for (name, index), released in self.partitions.released.items():
            p = state.partition(name, index)
            if p is not None and p.leader == self.node_id and p.epoch <= released:
                stranded.add((name, index, p.epoch))
        self._stranded = {k: v for k, v in self._stranded.items() if k in stranded}
        for key in stranded:
            first = self._stranded.setdefault(key, now)
            if now - first >= RECLAIM_AFTER_S:
                name, index, epoch = key
                log.warning("reclaiming a partition released for a move that never committed",
                            topic=name, partition=index, epoch=epoch)
                await self._op("reclaim", {"name": name, "index": index, "node": self.node_id, "epoch": epoch})
                self._stranded.pop(key, None)

    async def _maybe_collect_wal(self) -> None:
        if time.monotonic() < self._next_gc:
            return
        self._next_gc = time.monotonic() + self.config.wal_gc_interval_ms / 1000
        state = self.state()
        await self.wal_gc.run_once(live_sessions={b.session for b in state.brokers.values()})

    async def _member_round(self) -> None:
        lease = await self._read_lease()
        if lease is None or lease.expires_ms <= now_ms():
            if await self.controller.try_acquire():
                log.info("took over as controller")
                if not self.controller.heartbeat(self.node_id, self.session):
                    self._fenced("this session was failed while the controller changed")
            return
        try:
            reply = await self.rpc.call(lease.http, "/internal/v1/heartbeat",
                                        {"node": self.node_id, "session": self.session}, timeout_s=interval_s(self))
        except RpcError:
            return  # the controller may be changing; the lease tells us
        if not reply.get("ok"):
            self._fenced("the controller failed this session (missed heartbeats)")
            return
        if reply.get("version", 0) > self._view.version:
            await self._refresh_view()

    def _fenced(self, reason: str) -> None:
        if self.leaving:
            return  # we are leaving on purpose: the controller forgetting this session is expected
        log.error("stopping: session fenced", reason=reason)
        self._on_fenced()

    async def _maintenance_loop(self) -> None:
        interval = self.config.checkpoint_interval_ms / 1000
        while True:
            await asyncio.sleep(interval)
            await self.partitions.maintenance()

    async def _on_metadata(self, state: ClusterState) -> None:
        """After every controller commit: every live broker applies it before we go on."""
        self._metadata_changed()
        nodes = list(state.brokers)
        await asyncio.gather(*(self.push(n, state) for n in nodes), return_exceptions=True)

    # ---- Peers (for the controller) ---------------------------------------------------

    async def push(self, node: int, state: ClusterState) -> None:
        if node == self.node_id or node not in state.brokers:
            if node == self.node_id and self.partitions is not None:
                await self._sync(state)
            return
        await self.rpc.call(state.brokers[node].http, "/internal/v1/metadata",
                            {"state": state.to_bytes().decode()}, timeout_s=10)

    async def release(self, node: int, topic: str, index: int, epoch: int) -> None:
        if node == self.node_id:
            await self.release_partition(topic, index, epoch)
            return
        info = self.state().brokers[node]
        await self.rpc.call(info.http, "/internal/v1/release",
                            {"topic": topic, "partition": index, "epoch": epoch}, timeout_s=10)

    async def release_partition(self, topic: str, index: int, epoch: int) -> None:
        """Our half of a move: stop produce, flush, clean checkpoint, never reopen <= epoch."""
        self.partitions.released[(topic, index)] = max(epoch, self.partitions.released.get((topic, index), -1))
        await self.partitions.close(topic, index, graceful=True)

    async def reassign(self, moves: list[tuple[str, int, int]]) -> list[MoveResult]:
        if self.controller.active:
            if self.draining:
                # Leaving: old leaders could release partitions for a move this controller
                # never gets to commit. The caller retries at the next controller.
                raise RpcError("the controller is draining; retry")
            return await self.controller.reassign(moves)
        lease = await self._read_lease()
        if lease is None:
            raise RpcError("no controller")
        reply = await self.rpc.call(lease.http, "/internal/v1/reassign",
                                    {"moves": [list(m) for m in moves]}, timeout_s=60)
        return [MoveResult(**r) for r in reply["results"]]

    async def _sync(self, state: ClusterState) -> None:
        """Open what we lead, close what we no longer lead."""
        async with self._sync_lock:
            mine = {}
            for t in state.topics.values():
                for i, p in enumerate(t.partitions):
                    if p.leader == self.node_id:
                        mine[(t.name, i)] = (t, p.epoch)
            for key, held in list(self.partitions.held.items()):
                want = mine.get(key)
                if want is None or want[1] != held.partition.epoch or want[0].topic_id != held.partition.topic_id:
                    await self.partitions.close(*key, graceful=want is not None)
            opens = [self.partitions.open(t, i, epoch) for (_, i), (t, epoch) in mine.items()
                     if self.partitions.get(t.name, i) is None]
            for start in range(0, len(opens), 64):
                await asyncio.gather(*opens[start : start + 64], return_exceptions=True)

    def _on_fenced(self) -> None:
        self.exit_code = 3
        self.ready = False
        metrics.BROKER_STATE.labels("fenced").set(1)
        self.stopped.set()

    def spawn_drain(self) -> None:
        self._spawn(self.drain(), "drain")

    async def drain(self) -> None:
        """Move every partition away (or, alone, make it durable and clean) and stop."""
        if self.draining:
            return
        self.draining = True
        self.ready = False
        metrics.BROKER_STATE.labels("draining").set(1)
        log.info("draining", partitions=len(self.partitions.held) if self.partitions else 0)
        try:
            if self.controller.active:
                await self.controller.drain_broker(self.node_id)
            else:
                lease = await self._read_lease()
                if lease is not None:
                    await self.rpc.call(lease.http, "/internal/v1/drain", {"node": self.node_id}, timeout_s=120)
        except Exception as exc:
            log.warning("could not move partitions away; closing them in place", error=repr(exc))
        await self.groups.stop()
        if self.partitions is not None:
            await self.partitions.close_all()
        self.leaving = True  # from here a refused heartbeat is our own doing, not a fence
        try:
            if self.controller.active:
                await self.controller.leave(self.node_id)
                await self.controller.release()
            else:
                lease = await self._read_lease()
                if lease is not None and lease.holder != self.session:
                    await self.rpc.call(lease.http, "/internal/v1/leave", {"node": self.node_id}, timeout_s=30)
        except Exception as exc:
            log.warning("could not leave the cluster cleanly", error=repr(exc))
        log.info("drained")
        self.stopped.set()

    async def stop(self) -> None:
        await self.groups.stop()
        if self._group_collector is not None:
            REGISTRY.unregister(self._group_collector)
            self._group_collector = None
        if self.listener is not None:
            await self.listener.stop()
        for task in list(self._tasks):
            task.cancel()
        if self.wal is not None:
            await self.wal.stop()
        await self.rpc.close()
        with contextlib.suppress(Exception):
            await self.store.close()


def install_signal_handlers(broker: Broker) -> None:
    loop = asyncio.get_running_loop()
    hits = {"n": 0}

    def on_term() -> None:
        hits["n"] += 1
        if hits["n"] > 1:
            log.warning("second signal: exiting without drain")
            broker.exit_code = 1
            broker.stopped.set()
            return
        asyncio.ensure_future(broker.drain())

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_term)



RECLAIM_AFTER_S = 3.0  # a move commits within milliseconds; this long means it never will


def interval_s(broker: Broker) -> float:
    return max(broker.config.heartbeat_interval_ms / 1000, 0.5)
