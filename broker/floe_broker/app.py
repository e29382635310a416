"""Composition root: builds the broker's parts, starts them in order, stops and drains them.

Start-up order (each step fails fast with a reason):
  1. open the object store and ``check()`` it (bucket, credentials, reachability);
  2. become controller if the lease is free, else wait for it (a restarted
     single broker waits for its predecessor's lease to expire);
  3. register: get a node id for this process's new session;
  4. start the WAL writer, open the partitions we lead, start listeners;
  5. ready.

SIGTERM (and ``POST /v1/drain``) drains: stop taking produce, make pending
data durable, write clean checkpoints, leave the cluster, exit 0.

The rules live elsewhere: ``cluster.membership`` (join, lease, heartbeats),
``cluster.client`` (reaching the controller), ``leadership`` (which
partitions are open), ``topics`` and ``serving`` (what handlers call).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Coroutine
from dataclasses import replace
from typing import Any

import structlog
from prometheus_client import REGISTRY

from floe_api.internal import MetadataPush, RegisterRequest, TxnMarkersRequest, TxnVerifyReply, TxnVerifyRequest
from floe_api.public import MoveResult

from . import metrics
from .cluster.client import LocalController, RemoteController, RoutedController
from .cluster.controller import Committed, Controller, new_session
from .cluster.membership import DRAIN_TIMEOUT_S, LEAVE_TIMEOUT_S, Membership
from .cluster.metadata import ClusterState
from .cluster.peers import BrokerPeers
from .cluster.rpc import Rpc
from .config import BrokerConfig, Secrets
from .dispatch import Dispatcher
from .errors import StartupError, StoreMisconfigured
from .group_metrics import GroupOffsetsCollector
from .leadership import Leadership
from .link.service import LinkService
from .log.cache import BlockCache
from .log.gc import WalCollector
from .log.manager import PartitionManager, Settings
from .log.wal import WalWriter
from .security.bootstrap_users import BootstrapUsersError, read_users, seed_change
from .server.endpoints import Endpoints, build_endpoints, listener_specs
from .server.listener import KafkaListener
from .serving import Serving
from .storage.health import StoreHealth
from .storage.objectstore import ObjectStore

log = structlog.get_logger(__name__)


class Broker:
    def __init__(self, config: BrokerConfig, store: ObjectStore, *, secrets: Secrets | None = None) -> None:
        self.config = config
        self.secrets = secrets or Secrets()
        self.store = store
        self.session = new_session()
        self._config_error: StartupError | None = None
        try:
            self.listener_specs = listener_specs(config)
        except StartupError as exc:  # reported by start(), where start-up failures are handled
            self._config_error, self.listener_specs = exc, listener_specs(replace(config, listeners=None,
                                                                                  advertised_listeners=None))
        primary = self.listener_specs[0]
        self.http_address = f"{primary.advertised_host}:{config.http[1]}"
        self.ready = False
        self.draining = False
        self.stopped = asyncio.Event()
        self.exit_code = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self._group_collector: GroupOffsetsCollector | None = None
        self.listener: KafkaListener | None = None  # the primary (first) Kafka listener
        self.endpoints = Endpoints()
        self.wal: WalWriter | None = None
        self.rpc = Rpc(cluster_secret=self.secrets.cluster_secret)
        self.controller = Controller(store, session=self.session, http=self.http_address,
                                     session_timeout_ms=config.session_timeout_ms, on_change=self._on_commit)
        self.local_controller = LocalController(self.controller, accepting_moves=lambda: not self.draining)
        remote = RemoteController(store, self.rpc, session=self.session)
        self.controller_client = RoutedController(self.local_controller, remote)
        self.wal_gc = WalCollector(store, grace_s=config.wal_gc_grace_ms / 1000)
        self.membership = Membership(
            self.controller, remote, store,
            registration=RegisterRequest(
                session=self.session, host=primary.advertised_host, port=primary.advertised_port,
                http=self.http_address,
                listeners={s.name: (s.advertised_host, s.advertised_port) for s in self.listener_specs}),
            heartbeat_interval_ms=config.heartbeat_interval_ms,
            session_timeout_ms=config.session_timeout_ms,
            wal_gc_interval_ms=config.wal_gc_interval_ms,
            on_fenced=self._on_fenced,
            on_metadata=self.apply_metadata,
            collect_wal=lambda live: self.wal_gc.run_once(live_sessions=live, leaders=self._leaders()),
        )
        self.leadership = Leadership(state=self.membership.state, node_id=lambda: self.membership.node_id,
                                     draining=lambda: self.draining, controller=self.controller_client)
        self.peers = BrokerPeers(self.rpc, node_id=lambda: self.membership.node_id, state=self.membership.state,
                                 apply_here=self.leadership.sync, release_here=self.leadership.release_partition)
        self.controller.peers = self.peers
        self.cache = BlockCache(store, block_size=config.block_size, capacity_bytes=config.block_cache_bytes)
        self.serving = Serving(config, self.cache, self.membership, self.leadership, self.controller_client,
                               rpc=self.rpc)
        self.groups = self.serving.groups
        self.txn = self.serving.txn
        self.links = LinkService(state=self.state, node_id=lambda: self.membership.node_id,
                                 is_controller=lambda: self.local_controller.active,
                                 apply=self.controller_client.apply, leader_partition=self.serving.leader_partition,
                                 log_service=lambda: self.serving.log, groups=self.groups)

    # ---- what the admin HTTP server asks (admin_http.server.AdminBroker) ----------------

    @property
    def node_id(self) -> int:
        return self.membership.node_id

    def state(self) -> ClusterState:
        return self.membership.state()

    def controller_node(self) -> int:
        return self.membership.controller_node()

    def store_state(self) -> str:
        health = getattr(self.store, "health", None)  # the instrumented store keeps it
        return health.state() if isinstance(health, StoreHealth) else "ok"

    async def reassign(self, moves: list[tuple[str, int, int]]) -> list[MoveResult]:
        return await self.controller_client.reassign(moves)

    async def release_partition(self, topic: str, index: int, epoch: int) -> None:
        await self.leadership.release_partition(topic, index, epoch)

    async def txn_markers(self, body: TxnMarkersRequest) -> None:
        await self.serving.txn_links.apply_markers(body)

    async def txn_verify(self, body: TxnVerifyRequest) -> TxnVerifyReply:
        return await self.serving.txn_links.answer_verify(body)

    def _leaders(self) -> dict[tuple[str, int], tuple[int, str]]:
        """Every partition's leader epoch and session, for the collector to skip unchanged checkpoints."""
        return {(t.topic_id, i): (p.epoch, p.session)
                for t in self.state().topics.values() for i, p in enumerate(t.partitions)}

    async def apply_metadata(self, state: ClusterState) -> None:
        """New metadata from the controller (push) or the bucket (catch-up)."""
        if self.membership.adopt(state):
            self.leadership.metadata_changed()
        await self.leadership.sync(self.state())

    async def metadata_pushed(self, push: MetadataPush) -> None:
        """A commit's delta from the controller: applied in order, or caught up from the bucket."""
        state = await self.membership.receive(push)
        if state is not None:
            await self.apply_metadata(state)

    async def _on_commit(self, committed: Committed) -> None:
        """After every controller commit: every live broker applies it before we go on."""
        self.leadership.metadata_changed()
        await self.peers.broadcast(committed)

    # ---- lifecycle -------------------------------------------------------------------

    async def start(self) -> None:
        if self._config_error is not None:
            raise self._config_error
        # TLS files, mechanisms and rules are checked before joining, so a bad setting never registers
        self.endpoints = build_endpoints(self.config, Dispatcher(self.serving), self.listener_specs)
        try:
            await self.store.check()
        except StoreMisconfigured as exc:
            raise StartupError(f"object store unusable: {exc}") from exc
        node_id = await self.membership.join()
        structlog.contextvars.bind_contextvars(node=node_id)
        cfg = self.config
        self.wal = WalWriter(self.store, node_id=node_id, session=self.session,
                             flush_interval_ms=cfg.flush_interval_ms, flush_bytes=cfg.flush_bytes,
                             max_pending_bytes=cfg.max_pending_bytes, max_inflight=cfg.max_inflight_flushes,
                             on_fenced=self._on_fenced)
        self.wal.start()
        settings = Settings(checkpoint_interval_ms=cfg.checkpoint_interval_ms,
                            compact_after_bytes=cfg.compact_after_bytes, compact_after_ms=cfg.compact_after_ms,
                            retention_ms=cfg.retention_ms, retention_bytes=cfg.retention_bytes,
                            memory_cache_bytes=cfg.memory_cache_bytes, block_size=cfg.block_size,
                            consolidation_target_bytes=cfg.consolidation_target_bytes)
        settings.compaction_map_bytes = cfg.key_compaction_map_bytes
        partitions = PartitionManager(self.store, self.wal, self.cache, node_id=node_id, session=self.session,
                                      settings=settings, topic_config=self.serving.topic_config)
        self.serving.serve(node_id, self.wal, partitions)
        await self.controller.place_orphans()
        await self.leadership.sync(self.state())
        if cfg.sasl_bootstrap_users_file:
            await self._seed_users(cfg.sasl_bootstrap_users_file)
        self.listener = self.endpoints.listeners[0]
        await self.endpoints.start()
        for i, tls in enumerate(self.endpoints.tls):
            self._spawn(tls.watch(), f"tls-reload-{i}")
        self._spawn(self.membership.lease_loop(), "lease")
        self._spawn(self.membership.heartbeat_loop(), "controller-loop")
        self._spawn(self.leadership.reclaim_loop(cfg.heartbeat_interval_ms / 1000), "reclaim")
        self._spawn(self._maintenance_loop(partitions), "maintenance")
        self.groups.start()
        self.txn.start()
        self._spawn(self.links.run(), "links")
        if cfg.per_partition_metrics:
            self._group_collector = GroupOffsetsCollector(self.groups, self.serving.local_high_watermark)
            REGISTRY.register(self._group_collector)
        self.ready = True
        metrics.BROKER_STATE.labels("ready").set(1)
        log.info("broker ready", node=node_id, session=self.session,
                 kafka=f"{self.listener_specs[0].advertised_host}:{self.listener.port}",
                 listeners={x.name: f"{x.host}:{x.port}" for x in self.endpoints.listeners}, http=self.http_address)

    async def _seed_users(self, path: str) -> None:
        """Give the users of the bootstrap file SCRAM credentials, unless they exist already."""
        try:
            users = read_users(path)
        except BootstrapUsersError as exc:
            raise StartupError(str(exc)) from exc
        missing = {u: p for u, p in users.items() if u not in self.state().scram}
        if not missing:
            return
        change = await asyncio.to_thread(seed_change, missing)
        try:
            await self.controller_client.apply(change)
        except Exception as exc:
            raise StartupError(f"cannot store the bootstrap users: {exc}") from exc
        log.info("bootstrap users seeded", users=sorted(missing))

    def _spawn(self, coro: Coroutine[Any, Any, None], name: str) -> None:
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _maintenance_loop(self, partitions: PartitionManager) -> None:
        while True:
            await asyncio.sleep(self.config.checkpoint_interval_ms / 1000)
            await partitions.maintenance()

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
        partitions = self.serving.partitions
        log.info("draining", partitions=len(partitions.held) if partitions else 0)
        try:
            await self.membership.at_controller(lambda c: c.drain(self.node_id), timeout_s=DRAIN_TIMEOUT_S)
        except Exception as exc:
            log.warning("could not move partitions away; closing them in place", error=repr(exc))
        await self.groups.stop()
        await self.txn.stop()
        if partitions is not None:
            await partitions.close_all()
        try:
            await self.membership.leave(timeout_s=LEAVE_TIMEOUT_S)
        except Exception as exc:
            log.warning("could not leave the cluster cleanly", error=repr(exc))
        log.info("drained")
        self.stopped.set()

    async def stop(self) -> None:
        await self.groups.stop()
        await self.txn.stop()
        if self._group_collector is not None:
            REGISTRY.unregister(self._group_collector)
            self._group_collector = None
        await self.endpoints.stop()
        for task in list(self._tasks):
            task.cancel()
        if self.wal is not None:
            await self.wal.stop()
        await self.rpc.close()
        with contextlib.suppress(Exception):
            await self.store.close()

