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

from . import metrics
from .cluster.controller import Controller, NotController, new_session
from .cluster.metadata import ClusterState
from .config import BrokerConfig
from .dispatch import Dispatcher
from .handlers.context import TopicError
from .log.cache import BlockCache
from .log.manager import PartitionManager, Settings
from .log.partition import Partition
from .log.wal import WalWriter
from .server.listener import KafkaListener
from .storage.objectstore import ObjectStore, StoreMisconfigured

log = structlog.get_logger(__name__)

INTERNAL_PREFIX = "__"
MAX_PARTITIONS_PER_TOPIC = 100_000


class StartupError(Exception):
    """Start-up cannot proceed (misconfigured store, port in use, ...)."""


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
        self.listener: KafkaListener | None = None
        self.http_server: Any = None
        self.ready = False
        self.draining = False
        self.stopped = asyncio.Event()
        self.exit_code = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self._sync_lock = asyncio.Lock()

    # ---- BrokerContext ------------------------------------------------------------

    def state(self) -> ClusterState:
        return self.controller.state or ClusterState()

    def controller_node(self) -> int:
        return self.node_id

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

    async def create_topic(
        self, name: str, partitions: int, configs: dict[str, str], *, validate_only: bool = False
    ) -> None:
        from kio.schema.errors import ErrorCode

        if not name or len(name) > 249 or not all(c.isalnum() or c in "._-" for c in name):
            raise TopicError(ErrorCode.invalid_topic_exception, f"invalid topic name {name!r}")
        if not 0 < partitions <= MAX_PARTITIONS_PER_TOPIC:
            raise TopicError(ErrorCode.invalid_partitions, f"partition count {partitions} out of range")
        if name in self.state().topics:
            raise TopicError(ErrorCode.topic_already_exists, f"topic {name!r} already exists")
        if validate_only:
            return

        def change(s: ClusterState) -> None:
            if name not in s.topics:
                s.create_topic(name, partitions, configs, internal=name.startswith(INTERNAL_PREFIX))

        await self._commit(change)
        log.info("topic created", topic=name, partitions=partitions, configs=configs)

    async def delete_topic(self, name: str) -> None:
        await self._commit(lambda s: s.topics.pop(name, None))
        log.info("topic deleted", topic=name)

    async def create_partitions(self, name: str, total: int, *, validate_only: bool = False) -> None:
        from kio.schema.errors import ErrorCode

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
        await self._commit(lambda s: s.add_partitions(name, total))

    async def alter_topic_configs(
        self, name: str, changes: list[tuple[str, int, str | None]], *, validate_only: bool = False
    ) -> None:
        from kio.schema.errors import ErrorCode

        if name not in self.state().topics:
            raise TopicError(ErrorCode.unknown_topic_or_partition, f"topic {name!r} does not exist")
        for key, op, _ in changes:
            if op not in (0, 1):
                raise TopicError(ErrorCode.invalid_config, f"operation {op} on {key} is not supported for scalars")
        if validate_only:
            return

        def change(s: ClusterState) -> None:
            configs = s.topics[name].configs
            for key, op, value in changes:
                if op == 0 and value is not None:
                    configs[key] = value
                else:
                    configs.pop(key, None)

        await self._commit(change)

    async def _commit(self, change: Any) -> None:
        from kio.schema.errors import ErrorCode

        try:
            await self.controller.commit(change)
        except NotController:
            raise TopicError(ErrorCode.not_controller, "this broker is not the controller") from None

    # ---- lifecycle -----------------------------------------------------------------

    async def start(self) -> None:
        try:
            await self.store.check()
        except StoreMisconfigured as exc:
            raise StartupError(f"object store unusable: {exc}") from exc
        await self._acquire_controller()
        self.node_id = await self.controller.register(
            self.session, *self.config.advertised, self.http_address
        )
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
        self._spawn(self._controller_loop(), "controller-loop")
        self._spawn(self._maintenance_loop(), "maintenance")
        self.ready = True
        metrics.BROKER_STATE.labels("ready").set(1)
        log.info("broker ready", node=self.node_id, session=self.session,
                 kafka=f"{self.config.advertised[0]}:{self.listener.port}", http=self.http_address)

    async def _acquire_controller(self) -> None:
        waited_since = time.monotonic()
        announced = False
        while not await self.controller.try_acquire():
            if not announced:
                log.info("waiting for the controller lease (held by an earlier or other broker)")
                announced = True
            await asyncio.sleep(min(0.5, self.config.session_timeout_ms / 4000))
        if announced:
            log.info("controller lease acquired", waited_s=round(time.monotonic() - waited_since, 1))

    def _spawn(self, coro: Any, name: str) -> None:
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _controller_loop(self) -> None:
        interval = self.config.heartbeat_interval_ms / 1000
        while True:
            await asyncio.sleep(interval)
            try:
                if not await self.controller.renew():
                    log.error("lost the controller lease; stopping so a fresh session can rejoin")
                    self.exit_code = 1
                    self.stopped.set()
                    return
                self.controller.heartbeat(self.node_id, self.session)
                await self.controller.check_liveness()
            except Exception as exc:
                log.warning("controller round failed", error=repr(exc))

    async def _maintenance_loop(self) -> None:
        interval = self.config.checkpoint_interval_ms / 1000
        while True:
            await asyncio.sleep(interval)
            await self.partitions.maintenance()

    async def _on_metadata(self, state: ClusterState) -> None:
        if self.partitions is not None:
            self._spawn(self._sync(state), "sync")

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
        if self.partitions is not None:
            await self.partitions.close_all()
        try:
            if self.controller.active:
                await self.controller.leave(self.node_id)
                await self.controller.release()
        except Exception as exc:
            log.warning("could not leave the cluster cleanly", error=repr(exc))
        log.info("drained")
        self.stopped.set()

    async def stop(self) -> None:
        if self.listener is not None:
            await self.listener.stop()
        for task in list(self._tasks):
            task.cancel()
        if self.wal is not None:
            await self.wal.stop()
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

