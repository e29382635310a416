"""How the controller reaches brokers: in-process for its own broker, HTTP for the others.

The controller's half of a move and of every commit (release a partition,
push new metadata) goes through :class:`BrokerPeers`, the implementation of
:class:`~.controller.Peers`; what "release" and "apply metadata" mean on a
broker is the wiring's business, passed in as callbacks. A push carries the
commit's delta, not the metadata: its size follows the change, not the
cluster (a broker that cannot apply it catches up from the bucket).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from pydantic import ValidationError

from floe_api import internal as api

from ..errors import RpcError
from .controller import Committed
from .metadata import ClusterState
from .rpc import Rpc


class BrokerPeers:
    def __init__(
        self,
        rpc: Rpc,
        *,
        node_id: Callable[[], int],
        state: Callable[[], ClusterState],
        apply_here: Callable[[ClusterState], Awaitable[None]],
        release_here: Callable[[str, int, int], Awaitable[None]],
    ) -> None:
        self.rpc = rpc
        self._node_id = node_id
        self._state = state
        self._apply_here = apply_here
        self._release_here = release_here

    async def push(self, node: int, committed: Committed) -> None:
        state = committed.state
        if node == self._node_id():
            await self._apply_here(state)
            return
        if node not in state.brokers:
            return
        body = api.MetadataPush(version=state.version, delta=committed.delta.decode())
        await self._post(state.brokers[node].http, api.METADATA_PATH, body)

    async def release(self, node: int, topic: str, index: int, epoch: int) -> None:
        if node == self._node_id():
            await self._release_here(topic, index, epoch)
            return
        info = self._state().brokers.get(node)
        if info is None:
            raise RpcError(f"broker {node} is not live")
        await self._post(info.http, api.RELEASE_PATH, api.ReleaseRequest(topic=topic, partition=index, epoch=epoch))

    async def answers(self, node: int, *, timeout_s: float) -> bool:
        """Whether ``node``'s process answers on its admin port (ours always does)."""
        if node == self._node_id():
            return True
        info = self._state().brokers.get(node)
        return info is not None and await self.rpc.answers(info.http, timeout_s=timeout_s)

    async def broadcast(self, committed: Committed) -> None:
        """Every live broker applies the commit before this returns (failures are the liveness check's job)."""
        nodes = list(committed.state.brokers)
        await asyncio.gather(*(self.push(n, committed) for n in nodes), return_exceptions=True)

    async def _post(self, http: str, path: str, body: api.MetadataPush | api.ReleaseRequest) -> None:
        data = await self.rpc.call(http, path, body.model_dump(), timeout_s=10)
        try:
            api.Ok.model_validate(data)
        except ValidationError as exc:
            raise RpcError(f"{http}{path}: unexpected reply: {exc}") from None
