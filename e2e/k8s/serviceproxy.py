"""A kube-proxy stand-in for HTTP: ``http://127.0.0.1:P/<namespace>/<service>/<port>/<path>`` reaches a Service.

Nothing routes cluster IPs on this host (``controlplane.py``), so a process
outside the pods that wants a Service (the operator calling the brokers'
admin API through the bootstrap Service) asks this proxy instead. Each
request goes to one of the Service's ready pods (its selector's, as the
endpoints controller would pick them: EndpointSlices refuse loopback
addresses, so here they stay empty), in turn, on ``<port>``; the operator
gets it as ``FLOE_OPERATOR_BROKER_ADMIN_URL=http://127.0.0.1:P/{namespace}/{service}/{port}``.

Run with ``python e2e/k8s/serviceproxy.py --kubeconfig K --port P``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import pathlib

import aiohttp
import kubernetes
from aiohttp import web

from floe_operator import kube as kube_

HOP_HEADERS = {"host", "connection", "keep-alive", "transfer-encoding", "content-length"}


class ServiceProxy:
    def __init__(self, kube: kube_.KubeClient) -> None:
        self.kube = kube
        self.turn = itertools.count()
        self.session: aiohttp.ClientSession | None = None

    async def endpoints(self, namespace: str, service: str) -> list[str]:
        svc = await self.kube.request("GET", f"/api/v1/namespaces/{namespace}/services/{service}")
        selector = ",".join(f"{k}={v}" for k, v in sorted(((svc.get("spec") or {}).get("selector") or {}).items()))
        if not selector:
            return []
        pods = await self.kube.request("GET", f"/api/v1/namespaces/{namespace}/pods",
                                       query={"labelSelector": selector})  # fmt: skip
        return [
            p["status"]["podIP"]
            for p in pods.get("items") or []
            if not p["metadata"].get("deletionTimestamp")
            and any(c["type"] == "Ready" and c["status"] == "True" for c in p["status"].get("conditions") or [])
        ]

    async def forward(self, request: web.Request) -> web.StreamResponse:
        namespace, service, port = (request.match_info[k] for k in ("namespace", "service", "port"))
        try:
            ips = await self.endpoints(namespace, service)
        except kube_.KubeError as exc:
            return web.Response(status=503, text=f"service {namespace}/{service}: {exc}")
        if not ips:
            return web.Response(status=503, text=f"service {namespace}/{service} has no ready endpoints")
        ip = ips[next(self.turn) % len(ips)]
        url = f"http://{ip}:{port}/{request.match_info['rest']}"
        if self.session is None:
            self.session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120))
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_HEADERS}
        try:
            async with self.session.request(request.method, url, params=request.query, headers=headers,
                                            data=await request.read()) as upstream:  # fmt: skip
                body = await upstream.read()
                return web.Response(status=upstream.status, body=body,
                                    content_type=upstream.content_type)  # fmt: skip
        except (aiohttp.ClientError, OSError) as exc:
            return web.Response(status=502, text=f"{url}: {exc}")


async def _main(kubeconfig: pathlib.Path, port: int) -> None:
    configuration = kubernetes.client.Configuration()
    kubernetes.config.load_kube_config(config_file=str(kubeconfig), client_configuration=configuration)
    proxy = ServiceProxy(kube_.KubeClient(configuration))
    app = web.Application()
    app.router.add_route("*", "/{namespace}/{service}/{port}/{rest:.*}", proxy.forward)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()
        if proxy.session is not None:
            await proxy.session.close()
        await proxy.kube.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kubeconfig", required=True)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_main(pathlib.Path(args.kubeconfig), args.port))
