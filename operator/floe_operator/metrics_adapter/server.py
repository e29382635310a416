"""The metrics adapter's HTTPS server: what the aggregation layer proxies to it.

Run as ``floe operator metrics-adapter --prometheus-url URL``. Per request it
lists the pods the HPA's label selector matches (from the API server, as the
adapter's ServiceAccount), asks Prometheus one query, and answers the API
object (:mod:`.answers`). Prometheus errors become ``503`` with Prometheus'
reason, an unknown metric ``404``, so ``kubectl describe hpa`` says why.

TLS: ``--tls-cert-file``/``--tls-private-key-file`` when given (a Secret the
chart mounts), else a self-signed certificate generated at start (the
APIService then says ``insecureSkipTLSVerify``, as prometheus-adapter's chart
does by default). Callers must present a client certificate signed by the
cluster's request-header CA (``kube-system/extension-apiserver-authentication``,
the front-proxy certificate the aggregator uses) whose name is an allowed one;
anything else is refused during the handshake or with ``403``.

A second, plain-HTTP port serves ``/healthz`` for the kubelet's probes.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import logging
import pathlib
import ssl
import tempfile
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import aiohttp
from aiohttp import web

from floe_operator import kube as kube_
from floe_operator.metrics_adapter import answers

logger = logging.getLogger("floe.metrics_adapter")

AUTH_CONFIGMAP = ("kube-system", "extension-apiserver-authentication")


class PrometheusError(Exception):
    """Prometheus did not answer a vector; the message says why."""


class Prometheus:
    """Instant queries against one Prometheus (its HTTP API, asynchronously)."""

    def __init__(self, url: str, *, timeout_seconds: float = 10.0) -> None:
        self.url = url.rstrip("/")
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout_seconds))

    async def query(self, promql: str) -> list[dict[str, Any]]:
        try:
            async with self._session.get(f"{self.url}/api/v1/query", params={"query": promql}) as resp:
                body = await resp.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            raise PrometheusError(f"Prometheus at {self.url} did not answer: {exc or type(exc).__name__}") from exc
        if not isinstance(body, dict) or body.get("status") != "success":
            error = body.get("error") if isinstance(body, dict) else body
            raise PrometheusError(f"Prometheus at {self.url} refused the query: {error}")
        result = (body.get("data") or {}).get("result")
        if not isinstance(result, list):
            raise PrometheusError(f"Prometheus at {self.url} answered {type(result).__name__}, not a vector")
        return result

    async def close(self) -> None:
        await self._session.close()


def _now() -> str:
    return datetime.datetime.now(tz=datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _json(body: dict[str, Any], status: int = 200) -> web.Response:
    return web.json_response(body, status=status)


def _failure(code: int, reason: str, message: str) -> web.Response:
    return _json(answers.status(code, reason, message), code)


class Adapter:
    """The request handlers; ``kube`` lists pods, ``prometheus`` measures them."""

    def __init__(
        self,
        kube: kube_.KubeClient,
        prometheus: Prometheus,
        *,
        window: str = "1m",
        allowed_names: Sequence[str] = (),
    ) -> None:
        self.kube = kube
        self.prometheus = prometheus
        self.window = window
        self.window_seconds = answers.window_seconds(window)
        self.allowed_names = set(allowed_names)

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._authenticated])
        custom = f"/apis/{answers.CUSTOM_GROUP}/{answers.CUSTOM_VERSION}"
        resource = f"/apis/{answers.RESOURCE_GROUP}/{answers.RESOURCE_VERSION}"
        app.router.add_get("/healthz", _healthz)
        app.router.add_get("/readyz", _healthz)
        app.router.add_get("/livez", _healthz)
        app.router.add_get("/apis", _discovery(answers.group_list()))
        app.router.add_get(custom, _discovery(answers.custom_resources()))
        app.router.add_get(resource, _discovery(answers.resource_resources()))
        app.router.add_get(custom + "/namespaces/{namespace}/pods/{name}/{metric}", self.custom_metric)
        app.router.add_get(resource + "/namespaces/{namespace}/pods", self.pod_metrics)
        app.router.add_get(resource + "/namespaces/{namespace}/pods/{name}", self.pod_metrics)
        return app

    @web.middleware
    async def _authenticated(self, request: web.Request, handler: Any) -> web.StreamResponse:
        """Only the aggregator (a request-header client certificate with an allowed name) gets past."""
        if request.path in ("/healthz", "/readyz", "/livez") or not self.allowed_names:
            return await handler(request)  # type: ignore[no-any-return]
        peer = request.transport.get_extra_info("peercert") if request.transport else None
        names = {value for rdn in (peer or {}).get("subject", ()) for key, value in rdn if key == "commonName"}
        if not names & self.allowed_names:
            return _failure(403, "Forbidden", "only the API server's aggregation layer may call the metrics adapter")
        return await handler(request)  # type: ignore[no-any-return]

    async def _selection(self, request: web.Request) -> answers.Selection:
        namespace = request.match_info["namespace"]
        name = request.match_info.get("name", "*")
        query = {"labelSelector": request.query["labelSelector"]} if "labelSelector" in request.query else {}
        if name != "*":
            query["fieldSelector"] = f"metadata.name={name}"
        listing = await self.kube.request("GET", f"/api/v1/namespaces/{namespace}/pods", query=query)
        return answers.Selection.from_pods(namespace, listing.get("items") or [])

    async def custom_metric(self, request: web.Request) -> web.Response:
        metric = request.match_info["metric"]
        if metric not in answers.RATES:
            return _failure(404, "NotFound", f"the custom metric {metric} is not served by the Floe metrics adapter")
        try:
            selection = await self._selection(request)
            values: dict[str, float] = {}
            if selection.containers:
                promql = answers.custom_query(metric, selection.namespace, list(selection.containers),
                                              window=self.window)  # fmt: skip
                values = answers.by_pod(await self.prometheus.query(promql))
        except kube_.KubeError as exc:
            return _failure(503, "ServiceUnavailable", f"cannot list pods: {exc}")
        except PrometheusError as exc:
            return _failure(503, "ServiceUnavailable", str(exc))
        body = answers.metric_value_list(metric, selection.namespace, values, timestamp=_now(),
                                         window=self.window_seconds)  # fmt: skip
        return _json(body)

    async def pod_metrics(self, request: web.Request) -> web.Response:
        try:
            selection = await self._selection(request)
            cpu: dict[str, float] = {}
            memory: dict[str, float] = {}
            if selection.containers:
                pods = list(selection.containers)
                cpu_answer, memory_answer = await asyncio.gather(
                    self.prometheus.query(answers.cpu_query(selection.namespace, pods, window=self.window)),
                    self.prometheus.query(answers.memory_query(selection.namespace, pods)),
                )
                cpu, memory = answers.by_pod(cpu_answer), answers.by_pod(memory_answer)
        except kube_.KubeError as exc:
            return _failure(503, "ServiceUnavailable", f"cannot list pods: {exc}")
        except PrometheusError as exc:
            return _failure(503, "ServiceUnavailable", str(exc))
        body = answers.pod_metrics_list(selection.namespace, selection.containers, cpu, memory, timestamp=_now(),
                                        window=self.window_seconds)  # fmt: skip
        name = request.match_info.get("name")
        if name is None:
            return _json(body)
        if not body["items"]:
            return _failure(404, "NotFound", f"no metrics for pod {selection.namespace}/{name} yet")
        return _json({"kind": "PodMetrics", "apiVersion": body["apiVersion"], **body["items"][0]})


async def _healthz(_: web.Request) -> web.Response:
    return web.Response(text="ok")


def _discovery(body: dict[str, Any]) -> Callable[[web.Request], Awaitable[web.Response]]:
    """A handler answering one fixed discovery document."""

    async def handler(_: web.Request) -> web.Response:
        return _json(body)

    return handler


# --- TLS ----------------------------------------------------------------------


def self_signed(directory: pathlib.Path, names: Sequence[str]) -> tuple[pathlib.Path, pathlib.Path]:
    """A serving certificate for ``names`` (the Service's DNS names), valid for a year."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])])
    now = datetime.datetime.now(tz=datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=365))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), critical=False)
        .sign(key, hashes.SHA256())
    )
    crt, pem = directory / "tls.crt", directory / "tls.key"
    crt.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    pem.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption()))  # fmt: skip
    pem.chmod(0o600)
    return crt, pem


async def request_header_auth(kube: kube_.KubeClient) -> tuple[str, list[str]]:
    """The aggregator's client CA (PEM) and allowed names, as the API server publishes them."""
    namespace, name = AUTH_CONFIGMAP
    config = await kube.get("v1", "ConfigMap", namespace, name)
    data = (config or {}).get("data") or {}
    ca = str(data.get("requestheader-client-ca-file", ""))
    if not ca:
        raise RuntimeError(
            f"{namespace}/{name} has no requestheader-client-ca-file: the API server runs without the "
            "aggregation layer (--requestheader-client-ca-file), so nothing could call the adapter"
        )
    return ca, list(json.loads(data.get("requestheader-allowed-names") or "[]"))


def server_context(cert: pathlib.Path, key: pathlib.Path, client_ca: str) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(str(cert), str(key))
    context.load_verify_locations(cadata=client_ca)
    context.verify_mode = ssl.CERT_REQUIRED
    return context


# --- the command --------------------------------------------------------------


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="floe operator metrics-adapter", description=__doc__.splitlines()[0])
    p.add_argument("--prometheus-url", required=True, help="the Prometheus that scrapes the broker pods")
    p.add_argument("--rate-window", default="1m", help="PromQL rate() window (default 1m)")
    p.add_argument("--address", default="0.0.0.0")
    p.add_argument("--secure-port", type=int, default=6443)
    p.add_argument("--health-port", type=int, default=8080, help="plain-HTTP /healthz for probes (0: none)")
    p.add_argument("--tls-cert-file", default="")
    p.add_argument("--tls-private-key-file", default="")
    p.add_argument("--tls-name", action="append", default=None,
                   help="DNS name for the generated certificate (repeatable; default: localhost)")  # fmt: skip
    return p


async def serve(args: argparse.Namespace) -> None:
    answers.window_seconds(args.rate_window)  # refuse a bad window before binding anything
    kube = kube_.KubeClient.from_environment()
    prometheus = Prometheus(args.prometheus_url)
    runners: list[web.AppRunner] = []
    try:
        client_ca, allowed = await request_header_auth(kube)
        if args.tls_cert_file:
            cert, key = pathlib.Path(args.tls_cert_file), pathlib.Path(args.tls_private_key_file)
        else:
            cert, key = self_signed(pathlib.Path(tempfile.mkdtemp(prefix="floe-metrics-adapter-")),
                                    args.tls_name or ["localhost"])  # fmt: skip
        adapter = Adapter(kube, prometheus, window=args.rate_window, allowed_names=allowed or ["front-proxy-client"])
        runner = web.AppRunner(adapter.app(), access_log=None)
        await runner.setup()
        runners.append(runner)
        context = server_context(cert, key, client_ca)
        await web.TCPSite(runner, args.address, args.secure_port, ssl_context=context).start()
        if args.health_port:
            health = web.Application()
            health.router.add_get("/healthz", _healthz)
            health_runner = web.AppRunner(health, access_log=None)
            await health_runner.setup()
            runners.append(health_runner)
            await web.TCPSite(health_runner, args.address, args.health_port).start()
        logger.info("serving %s and %s on %s:%d from %s", answers.CUSTOM_GROUP, answers.RESOURCE_GROUP,
                    args.address, args.secure_port, args.prometheus_url)  # fmt: skip
        await asyncio.Event().wait()
    finally:
        for r in runners:
            await r.cleanup()
        await prometheus.close()
        await kube.close()


def main(argv: Sequence[str]) -> int:
    args = parser().parse_args(list(argv))
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        asyncio.run(serve(args))
    except KeyboardInterrupt:
        return 0
    except (RuntimeError, ValueError, OSError) as exc:
        logger.error("%s", exc)
        return 1
    return 0
