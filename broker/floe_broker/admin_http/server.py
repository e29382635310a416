"""Admin HTTP: /healthz, /readyz, /metrics and the /v1 cluster API.

Liveness (``/healthz``) only says the event loop answers; readiness
(``/readyz``) says the broker is registered and serving, and turns false the
moment it starts draining so Kubernetes stops sending it new clients.
"""

from __future__ import annotations

import time
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from floe_api import public as schema

from ..cluster.metadata import ClusterState, apply_op
from ..errors import RpcError
from .views import cluster_view


def build_app(broker: Any) -> web.Application:
    app = web.Application()

    async def healthz(_: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def readyz(_: web.Request) -> web.Response:
        if broker.ready:
            return web.json_response({"status": "ready", "node": broker.node_id})
        state = "draining" if broker.draining else "starting"
        return web.json_response({"status": state}, status=503)

    async def metrics(_: web.Request) -> web.Response:
        body = generate_latest()
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def cluster(_: web.Request) -> web.Response:
        view = cluster_view(broker.state(), controller=broker.controller_node())
        return web.json_response(view.model_dump())

    async def drain(_: web.Request) -> web.Response:
        broker.spawn_drain()
        return web.json_response({"status": "draining", "node": broker.node_id}, status=202)

    async def reassignments(request: web.Request) -> web.Response:
        try:
            body = schema.ReassignRequest.model_validate(await request.json())
        except Exception as exc:
            return web.json_response({"error": f"bad request: {exc}"}, status=400)
        t0 = time.perf_counter()
        try:
            results = await broker.reassign([(m.topic, m.partition, m.to) for m in body.moves])
        except Exception as exc:
            return web.json_response({"error": str(exc)}, status=503)
        return web.json_response({
            "seconds": round(time.perf_counter() - t0, 4),
            "results": [r.__dict__ for r in results],
        })

    # ---- internal: broker <-> controller ------------------------------------------------

    def controller_or_503() -> Any:
        if not broker.controller.active:
            raise web.HTTPServiceUnavailable(text='{"error": "not the controller"}', content_type="application/json")
        return broker.controller

    async def register(request: web.Request) -> web.Response:
        ctl = controller_or_503()
        b = await request.json()
        node = await ctl.register(b["session"], b["host"], int(b["port"]), b["http"])
        return web.json_response({"node": node})

    async def heartbeat(request: web.Request) -> web.Response:
        ctl = controller_or_503()
        b = await request.json()
        ok = ctl.heartbeat(int(b["node"]), b["session"])
        return web.json_response({"ok": ok, "version": ctl.state.version if ctl.state else 0})

    async def metadata_push(request: web.Request) -> web.Response:
        b = await request.json()
        await broker.apply_metadata(ClusterState.from_bytes(b["state"].encode()))
        return web.json_response({"ok": True})

    async def release(request: web.Request) -> web.Response:
        b = await request.json()
        await broker.release_partition(b["topic"], int(b["partition"]), int(b["epoch"]))
        return web.json_response({"ok": True})

    async def op(request: web.Request) -> web.Response:
        ctl = controller_or_503()
        b = await request.json()
        await ctl.commit(lambda s: apply_op(s, b["op"], b["args"]))
        return web.json_response({"ok": True})

    async def reassign_internal(request: web.Request) -> web.Response:
        controller_or_503()
        b = await request.json()
        try:
            results = await broker.reassign([tuple(m) for m in b["moves"]])
        except RpcError as exc:  # e.g. this controller is draining: the caller retries at the next
            return web.json_response({"error": str(exc)}, status=503)
        return web.json_response({"results": [r.__dict__ for r in results]})

    async def drain_node(request: web.Request) -> web.Response:
        ctl = controller_or_503()
        b = await request.json()
        results = await ctl.drain_broker(int(b["node"]))
        return web.json_response({"results": [r.__dict__ for r in results]})

    async def producer_ids(request: web.Request) -> web.Response:
        ctl = controller_or_503()
        b = await request.json()
        start = await ctl.allocate_producer_ids(int(b["count"]))
        return web.json_response({"start": start})

    async def leave(request: web.Request) -> web.Response:
        ctl = controller_or_503()
        b = await request.json()
        await ctl.leave(int(b["node"]))
        return web.json_response({"ok": True})

    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/v1/cluster", cluster)
    app.router.add_post("/v1/drain", drain)
    app.router.add_post("/v1/reassignments", reassignments)
    app.router.add_post("/internal/v1/register", register)
    app.router.add_post("/internal/v1/heartbeat", heartbeat)
    app.router.add_post("/internal/v1/metadata", metadata_push)
    app.router.add_post("/internal/v1/release", release)
    app.router.add_post("/internal/v1/op", op)
    app.router.add_post("/internal/v1/reassign", reassign_internal)
    app.router.add_post("/internal/v1/drain", drain_node)
    app.router.add_post("/internal/v1/leave", leave)
    app.router.add_post("/internal/v1/producer-ids", producer_ids)
    return app


async def start(broker: Any, host: str, port: int) -> web.AppRunner:
    runner = web.AppRunner(build_app(broker), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port, reuse_address=True)
    await site.start()
    return runner
