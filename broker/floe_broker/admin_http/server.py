"""Admin HTTP: /healthz, /readyz, /metrics, the /v1 cluster API and the /internal/v1 calls.

Liveness (``/healthz``) only says the event loop answers; readiness
(``/readyz``) says the broker is registered and serving, and turns false the
moment it starts draining so Kubernetes stops sending it new clients.

Every body is a ``floe_api`` model: a body that does not parse is answered
400 with an :class:`~floe_api.public.ErrorReply`, before anything runs. The
``/internal/v1`` calls that only the controller can answer get a 503 "not
the controller" anywhere else, which the caller's client turns into
``NotController`` and looks the lease up again.

Who may call which path (the cluster secret for ``/internal/v1``, the admin
token for ``/v1``, probes open) is ``auth.py``'s middleware, in front of
every handler.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Protocol, TypeVar

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel

from floe_api import internal as api
from floe_api import public as schema

from ..cluster.client import LocalController
from ..cluster.metadata import ClusterState
from ..cluster.rpc import NOT_THE_CONTROLLER, Rpc
from ..config import Secrets
from ..errors import NotController, RpcError
from ..link.service import LinkService
from . import auth, links
from .views import cluster_view

Body = TypeVar("Body", bound=BaseModel)
Handler = Callable[[web.Request], Awaitable[web.Response]]


class AdminBroker(Protocol):
    """What the admin server needs from the broker."""

    @property
    def ready(self) -> bool: ...

    def store_state(self) -> str:
        """The object store's state (``storage.health``): ok, degraded or unavailable."""

    @property
    def draining(self) -> bool: ...

    @property
    def secrets(self) -> Secrets:
        """The cluster secret and admin token the admin port checks (None: that side is open)."""

    @property
    def node_id(self) -> int: ...

    @property
    def local_controller(self) -> LocalController:
        """The in-process controller, for the calls only the controller answers."""

    def state(self) -> ClusterState: ...

    def controller_node(self) -> int: ...

    def spawn_drain(self) -> None: ...

    async def reassign(self, moves: list[tuple[str, int, int]]) -> list[schema.MoveResult]:
        """At the controller, wherever it is."""

    async def metadata_pushed(self, push: api.MetadataPush) -> None:
        """A commit's delta from the controller."""

    async def release_partition(self, topic: str, index: int, epoch: int) -> None: ...

    async def txn_markers(self, body: api.TxnMarkersRequest) -> None:
        """Append a transaction's markers here (this broker leads the partitions) and end its groups."""

    async def txn_verify(self, body: api.TxnVerifyRequest) -> api.TxnVerifyReply:
        """The coordinator's answer to a partition leader's hanging-transaction check."""

    links: LinkService  # cluster links (admin_http.links)
    rpc: Rpc


def reply(body: BaseModel, status: int = 200) -> web.Response:
    return web.json_response(body.model_dump(mode="json"), status=status)


def error(message: str, status: int) -> web.Response:
    return reply(schema.ErrorReply(error=message), status)


async def parse(request: web.Request, model: type[Body]) -> Body:
    try:
        return model.model_validate(await request.json())
    except ValueError as exc:  # not JSON, or not this model (pydantic's ValidationError is a ValueError)
        raise web.HTTPBadRequest(text=schema.ErrorReply(error=f"bad request: {exc}").model_dump_json(),
                                 content_type="application/json") from None


def build_app(broker: AdminBroker) -> web.Application:
    app = web.Application(middlewares=[auth.middleware(broker.secrets)])

    async def healthz(_: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def readyz(_: web.Request) -> web.Response:
        store = broker.store_state()
        if broker.ready and store == "unavailable":
            body = schema.Readiness(status="store-unavailable", node=broker.node_id, store=store)
            return web.json_response(body.model_dump(), status=503)
        if broker.ready:
            return web.json_response(schema.Readiness(status="ready", node=broker.node_id, store=store).model_dump())
        state = "draining" if broker.draining else "starting"
        return web.json_response(schema.Readiness(status=state).model_dump(exclude_none=True), status=503)

    async def metrics(_: web.Request) -> web.Response:
        body = generate_latest()
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def cluster(_: web.Request) -> web.Response:
        return reply(cluster_view(broker.state(), controller=broker.controller_node()))

    async def drain(_: web.Request) -> web.Response:
        broker.spawn_drain()
        return reply(schema.DrainReply(status="draining", node=broker.node_id), status=202)

    async def reassignments(request: web.Request) -> web.Response:
        body = await parse(request, schema.ReassignRequest)
        t0 = time.perf_counter()
        try:
            results = await broker.reassign([(m.topic, m.partition, m.to) for m in body.moves])
        except Exception as exc:
            return error(str(exc), 503)
        return reply(schema.ReassignReply(seconds=round(time.perf_counter() - t0, 4), results=results))

    # ---- internal: controller -> broker -------------------------------------------------

    async def metadata_push(request: web.Request) -> web.Response:
        await broker.metadata_pushed(await parse(request, api.MetadataPush))
        return reply(api.Ok())

    async def release(request: web.Request) -> web.Response:
        body = await parse(request, api.ReleaseRequest)
        await broker.release_partition(body.topic, body.partition, body.epoch)
        return reply(api.Ok())

    async def txn_markers(request: web.Request) -> web.Response:
        try:
            await broker.txn_markers(await parse(request, api.TxnMarkersRequest))
        except web.HTTPException:
            raise
        except Exception as exc:  # not led here (moved) or not durable: the coordinator retries
            return error(f"transaction markers not written: {exc!r}", 503)
        return reply(api.Ok())

    async def txn_verify(request: web.Request) -> web.Response:
        return reply(await broker.txn_verify(await parse(request, api.TxnVerifyRequest)))

    # ---- internal: broker -> controller (503 anywhere but at the controller) ------------

    def controller_only(handler: Callable[[web.Request, LocalController], Awaitable[web.Response]]) -> Handler:
        async def guarded(request: web.Request) -> web.Response:
            ctl = broker.local_controller
            if not ctl.active:
                return error(NOT_THE_CONTROLLER, 503)
            try:
                return await handler(request, ctl)
            except NotController:  # the lease moved while we were answering
                return error(NOT_THE_CONTROLLER, 503)

        return guarded

    @controller_only
    async def register(request: web.Request, ctl: LocalController) -> web.Response:
        node = await ctl.register(await parse(request, api.RegisterRequest))
        return reply(api.RegisterReply(node=node))

    @controller_only
    async def heartbeat(request: web.Request, ctl: LocalController) -> web.Response:
        return reply(await ctl.heartbeat(await parse(request, api.HeartbeatRequest)))

    @controller_only
    async def op(request: web.Request, ctl: LocalController) -> web.Response:
        await ctl.apply((await parse(request, api.OpRequest)).change)
        return reply(api.Ok())

    @controller_only
    async def reassign_internal(request: web.Request, ctl: LocalController) -> web.Response:
        body = await parse(request, api.InternalReassignRequest)
        try:
            results = await ctl.reassign(body.moves)
        except RpcError as exc:  # e.g. this controller is draining: the caller retries at the next
            return error(str(exc), 503)
        return reply(api.MoveResults(results=results))

    @controller_only
    async def drain_node(request: web.Request, ctl: LocalController) -> web.Response:
        results = await ctl.drain((await parse(request, api.NodeRequest)).node)
        return reply(api.MoveResults(results=results))

    @controller_only
    async def producer_ids(request: web.Request, ctl: LocalController) -> web.Response:
        start = await ctl.producer_ids((await parse(request, api.ProducerIdsRequest)).count)
        return reply(api.ProducerIdsReply(start=start))

    @controller_only
    async def leave(request: web.Request, ctl: LocalController) -> web.Response:
        await ctl.leave((await parse(request, api.NodeRequest)).node)
        return reply(api.Ok())

    app.router.add_get("/healthz", healthz)
    app.router.add_get(schema.READY_PATH, readyz)
    app.router.add_get("/metrics", metrics)
    app.router.add_get(schema.CLUSTER_PATH, cluster)
    app.router.add_post(schema.DRAIN_PATH, drain)
    app.router.add_post(schema.REASSIGN_PATH, reassignments)
    app.router.add_post(api.REGISTER_PATH, register)
    app.router.add_post(api.HEARTBEAT_PATH, heartbeat)
    app.router.add_post(api.METADATA_PATH, metadata_push)
    app.router.add_post(api.RELEASE_PATH, release)
    app.router.add_post(api.OP_PATH, op)
    app.router.add_post(api.REASSIGN_PATH, reassign_internal)
    app.router.add_post(api.DRAIN_PATH, drain_node)
    app.router.add_post(api.LEAVE_PATH, leave)
    app.router.add_post(api.PRODUCER_IDS_PATH, producer_ids)
    app.router.add_post(api.TXN_MARKERS_PATH, txn_markers)
    app.router.add_post(api.TXN_VERIFY_PATH, txn_verify)
    links.add_routes(app, broker)
    return app


async def start(broker: AdminBroker, host: str, port: int) -> web.AppRunner:
    auth.warn_if_open(broker.secrets)
    runner = web.AppRunner(build_app(broker), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port, reuse_address=True)
    await site.start()
    return runner
