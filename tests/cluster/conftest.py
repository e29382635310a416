"""An in-process controller behind the real admin HTTP server, on a memory store.

Brokers here are just sessions with a Controller, a RemoteController and (for
the controller) the admin server's ``/internal/v1`` routes, so the client and
membership rules run against the real HTTP path without broker processes.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest
from aiohttp import web

from floe_api.internal import MetadataPush
from floe_api.public import MoveResult
from floe_broker.admin_http.server import build_app
from floe_broker.cluster.client import LocalController, RemoteController
from floe_broker.cluster.controller import Committed, Controller
from floe_broker.cluster.metadata import ClusterState
from floe_broker.cluster.rpc import Rpc
from floe_broker.config import Secrets
from floe_broker.storage.memory import MemoryStore

SESSION_TIMEOUT_MS = 2000


class NoPeers:
    """Moves commit without anyone to release or push to."""

    async def release(self, node: int, topic: str, index: int, epoch: int) -> None:
        pass

    async def push(self, node: int, committed: Committed) -> None:
        pass

    async def answers(self, node: int, *, timeout_s: float) -> bool:
        return self.alive

    alive = True  # what the liveness probe says of every broker; a test sets it False for a dead one


@dataclass
class Node:
    """One broker session: its own (maybe inactive) controller, served on a real port."""

    controller: Controller
    local: LocalController
    http: str
    draining: bool = False
    ready: bool = True
    node_id: int = -1
    released: list[tuple[str, int, int]] = field(default_factory=list)
    secrets: Secrets = field(default_factory=Secrets)

    @property
    def local_controller(self) -> LocalController:
        return self.local

    def state(self) -> ClusterState:
        return self.controller.state or ClusterState()

    def controller_node(self) -> int:
        return -1

    def store_state(self) -> str:
        return "ok"

    def spawn_drain(self) -> None:
        self.draining = True

    async def reassign(self, moves: list[tuple[str, int, int]]) -> list[MoveResult]:
        return await self.local.reassign(moves)

    async def metadata_pushed(self, push: MetadataPush) -> None:
        pass

    async def release_partition(self, topic: str, index: int, epoch: int) -> None:
        self.released.append((topic, index, epoch))


@dataclass
class Cluster:
    store: MemoryStore
    rpc: Rpc
    runners: list[web.AppRunner] = field(default_factory=list)

    async def node(self, session: str) -> Node:
        """A session with the admin routes served on a free port (not holding the lease yet)."""
        controller = Controller(self.store, session=session, http="", session_timeout_ms=SESSION_TIMEOUT_MS)
        controller.peers = NoPeers()
        node = Node(controller, LocalController(controller, accepting_moves=lambda: not node.draining), "")
        runner = web.AppRunner(build_app(node), access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        self.runners.append(runner)
        host, port = runner.addresses[0][:2]
        node.http = controller.http = f"{host}:{port}"  # the lease names it: listen first
        return node

    def remote(self, session: str) -> RemoteController:
        return RemoteController(self.store, self.rpc, session=session)


@pytest.fixture
async def cluster() -> AsyncIterator[Cluster]:
    c = Cluster(MemoryStore(), Rpc(timeout_s=2))
    yield c
    await c.rpc.close()
    for r in c.runners:
        await r.cleanup()
