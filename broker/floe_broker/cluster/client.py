"""A broker's calls to the controller, the same whether the controller is this process or another.

Any broker may hold the controller lease, and it can move at any moment. Code
that needs the controller (topic changes, producer ids, moves, drain, leave,
register, heartbeat) talks to a :class:`ControllerClient` and never asks where
the controller is: :class:`RoutedController` calls the in-process
:class:`~.controller.Controller` while this broker holds an active lease, and
otherwise POSTs the ``floe_api.internal`` bodies to the lease holder.

Failures come in two kinds: :class:`NotController` (no controller right now,
or the one asked is not it: look again later) and :class:`RpcError` (the
controller did not answer, or refused).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Protocol, TypeVar

from pydantic import BaseModel, ValidationError

from floe_api import internal as api
from floe_api.public import MoveResult

from ..errors import NotController, NotFound, RpcError, StoreUnavailable
from ..storage.layout import LEASE_KEY
from ..storage.objectstore import ObjectStore
from .controller import Controller, Lease, now_ms
from .metadata import apply_op
from .rpc import Rpc

Reply = TypeVar("Reply", bound=BaseModel)
T = TypeVar("T")

Move = tuple[str, int, int]  # topic, partition, to node


class ControllerClient(Protocol):
    async def register(self, req: api.RegisterRequest) -> int:
        """A node id for this broker session."""

    async def heartbeat(self, req: api.HeartbeatRequest) -> api.HeartbeatReply: ...

    async def apply(self, change: api.MetadataOp) -> None:
        """Commit one metadata change."""

    async def producer_ids(self, count: int) -> int:
        """Reserve ``count`` producer ids; the first one."""

    async def reassign(self, moves: list[Move]) -> list[MoveResult]: ...

    async def drain(self, node: int) -> list[MoveResult]:
        """Move every partition of ``node`` to the other brokers."""

    async def leave(self, node: int) -> None: ...


class LocalController:
    """The in-process controller; every call raises NotController unless its lease is active."""

    def __init__(self, controller: Controller, *, accepting_moves: Callable[[], bool] = lambda: True) -> None:
        self.controller = controller
        self._accepting_moves = accepting_moves

    @property
    def active(self) -> bool:
        return self.controller.active

    def _active(self) -> Controller:
        if not self.controller.active:
            raise NotController("controller lease not held")
        return self.controller

    async def register(self, req: api.RegisterRequest) -> int:
        return await self._active().register(req.session, req.host, req.port, req.http, req.listeners)

    async def heartbeat(self, req: api.HeartbeatRequest) -> api.HeartbeatReply:
        ctl = self._active()
        ok = ctl.heartbeat(req.node, req.session, store=req.store)
        return api.HeartbeatReply(ok=ok, version=ctl.state.version if ctl.state else 0)

    async def apply(self, change: api.MetadataOp) -> None:
        await self._active().commit(lambda s: apply_op(s, change))

    async def producer_ids(self, count: int) -> int:
        return await self._active().allocate_producer_ids(count)

    async def reassign(self, moves: list[Move]) -> list[MoveResult]:
        ctl = self._active()
        if not self._accepting_moves():
            # A draining controller could have old leaders release partitions for a move
            # it never gets to commit. The caller retries at the next controller.
            raise RpcError("the controller is draining; retry")
        return await ctl.reassign(moves)

    async def drain(self, node: int) -> list[MoveResult]:
        return await self._active().drain_broker(node)

    async def leave(self, node: int) -> None:
        await self._active().leave(node)


class RemoteController:
    """The controller in another process: found through the lease, called over HTTP."""

    def __init__(self, store: ObjectStore, rpc: Rpc, *, session: str) -> None:
        self.store = store
        self.rpc = rpc
        self.session = session
        self.holder: str | None = None  # session holding an unexpired lease, as last read

    async def lease(self) -> Lease | None:
        """The lease as stored now (None if absent or unreadable); also updates :attr:`holder`."""
        try:
            got = await self.store.get(LEASE_KEY)
        except (NotFound, StoreUnavailable):
            return None
        lease = Lease.from_bytes(got.data)
        self.holder = lease.holder if lease.expires_ms > now_ms() else None
        return lease

    async def _call(self, path: str, body: BaseModel, reply: type[Reply], *,
                    timeout_s: float | None = None, lease: Lease | None = None) -> Reply:
        lease = lease or await self.lease()
        # A released or expired lease names a controller that may be gone: calling it would
        # fail (or, worse, time out), so look again until somebody holds it.
        if lease is None or lease.holder == self.session or lease.expires_ms <= now_ms():
            raise NotController("no controller is available right now")
        data = await self.rpc.call(lease.http, path, body.model_dump(mode="json"), timeout_s=timeout_s)
        try:
            return reply.model_validate(data)
        except ValidationError as exc:
            raise RpcError(f"{lease.http}{path}: unexpected reply: {exc}") from None

    async def register(self, req: api.RegisterRequest, *, lease: Lease | None = None) -> int:
        return (await self._call(api.REGISTER_PATH, req, api.RegisterReply, lease=lease)).node

    async def heartbeat(self, req: api.HeartbeatRequest, *, lease: Lease | None = None,
                        timeout_s: float | None = None) -> api.HeartbeatReply:
        return await self._call(api.HEARTBEAT_PATH, req, api.HeartbeatReply, lease=lease, timeout_s=timeout_s)

    async def apply(self, change: api.MetadataOp) -> None:
        await self._call(api.OP_PATH, api.OpRequest(change=change), api.Ok, timeout_s=15)

    async def producer_ids(self, count: int) -> int:
        return (await self._call(api.PRODUCER_IDS_PATH, api.ProducerIdsRequest(count=count),
                                 api.ProducerIdsReply)).start

    async def reassign(self, moves: list[Move]) -> list[MoveResult]:
        body = api.InternalReassignRequest(moves=moves)
        return (await self._call(api.REASSIGN_PATH, body, api.MoveResults, timeout_s=60)).results

    async def drain(self, node: int) -> list[MoveResult]:
        body = api.NodeRequest(node=node)
        return (await self._call(api.DRAIN_PATH, body, api.MoveResults, timeout_s=120)).results

    async def leave(self, node: int) -> None:
        await self._call(api.LEAVE_PATH, api.NodeRequest(node=node), api.Ok, timeout_s=30)


class RoutedController:
    """Local while this broker is the controller, remote otherwise; decided again on every call.

    A local call that finds the lease lost meanwhile goes on to whoever holds it now.
    """

    def __init__(self, local: LocalController, remote: RemoteController) -> None:
        self.local = local
        self.remote = remote

    async def _route(self, call: Callable[[ControllerClient], Awaitable[T]]) -> T:
        if self.local.active:
            try:
                return await call(self.local)
            except NotController:
                pass
        return await call(self.remote)

    async def register(self, req: api.RegisterRequest) -> int:
        return await self._route(lambda c: c.register(req))

    async def heartbeat(self, req: api.HeartbeatRequest) -> api.HeartbeatReply:
        return await self._route(lambda c: c.heartbeat(req))

    async def apply(self, change: api.MetadataOp) -> None:
        await self._route(lambda c: c.apply(change))

    async def producer_ids(self, count: int) -> int:
        return await self._route(lambda c: c.producer_ids(count))

    async def reassign(self, moves: list[Move]) -> list[MoveResult]:
        return await self._route(lambda c: c.reassign(moves))

    async def drain(self, node: int) -> list[MoveResult]:
        return await self._route(lambda c: c.drain(node))

    async def leave(self, node: int) -> None:
        await self._route(lambda c: c.leave(node))
