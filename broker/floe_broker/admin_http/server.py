"""Admin HTTP: /healthz, /readyz, /metrics and the /v1 cluster API.

Liveness (``/healthz``) only says the event loop answers; readiness
(``/readyz``) says the broker is registered and serving, and turns false the
moment it starts draining so Kubernetes stops sending it new clients.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from . import schema


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
        view = schema.cluster_view(broker.state(), controller=broker.controller_node())
        return web.json_response(view.model_dump())

    async def drain(_: web.Request) -> web.Response:
        broker.spawn_drain()
        return web.json_response({"status": "draining", "node": broker.node_id}, status=202)

    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/v1/cluster", cluster)
    app.router.add_post("/v1/drain", drain)
    return app


async def start(broker: Any, host: str, port: int) -> web.AppRunner:
    runner = web.AppRunner(build_app(broker), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port, reuse_address=True)
    await site.start()
    return runner
