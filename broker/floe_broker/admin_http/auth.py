"""Who may call what on the admin HTTP port: the cluster secret and the admin token.

Three kinds of path, decided by the path alone so a new endpoint is closed
unless it is listed as open:

* probes and scrapes (``/healthz``, ``/readyz``, ``/metrics``) stay open, for
  kubelet and Prometheus;
* ``/internal/v1/...`` (broker <-> controller) needs the cluster secret in
  ``X-Floe-Cluster-Secret`` when one is configured: without it any pod could
  push fake metadata to every broker;
* everything else (``/v1/...``: the topology, reassignments, drains) needs
  ``Authorization: Bearer <admin token>`` when one is configured.

A refused call gets 401 before its handler runs, so it changes nothing, and
one log line with the caller's address (never what it sent). Comparisons are
constant-time. See docs/architecture.md#the-admin-api.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable

import structlog
from aiohttp import web
from aiohttp.typedefs import Middleware

from floe_api import public as schema

from ..cluster.rpc import CLUSTER_SECRET_HEADER
from ..config import Secrets

log = structlog.get_logger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

OPEN_PATHS = frozenset({"/healthz", schema.READY_PATH, "/metrics"})
INTERNAL_PREFIX = "/internal/"
ADMIN_TOKEN_HINT = "set FLOE_ADMIN_TOKEN to the cluster's admin token"


def _matches(given: str | None, expected: str) -> bool:
    return given is not None and hmac.compare_digest(given.encode(), expected.encode())


def _bearer(request: web.Request) -> str | None:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" else None


def _refuse(request: web.Request, message: str, *, bearer: bool) -> web.Response:
    log.warning("admin call refused", path=request.path, method=request.method, peer=request.remote,
                reason=message)
    headers = {"WWW-Authenticate": 'Bearer realm="floe"'} if bearer else {}
    return web.json_response(schema.ErrorReply(error=message).model_dump(mode="json"), status=401, headers=headers)


def warn_if_open(secrets: Secrets) -> None:
    """One warning at start for each side that is left unauthenticated."""
    if secrets.cluster_secret is None:
        log.warning("internal calls are unauthenticated: any host that reaches the admin port can push metadata; "
                    "set --cluster-secret-file or FLOE_CLUSTER_SECRET")
    if secrets.admin_token is None:
        log.warning("the admin API is unauthenticated: anyone who reaches the admin port can drain or reassign; "
                    "set --admin-token-file or FLOE_ADMIN_TOKEN")


def middleware(secrets: Secrets) -> Middleware:
    """The aiohttp middleware enforcing the rules above for these secrets."""

    @web.middleware
    async def authenticate(request: web.Request, handler: Handler) -> web.StreamResponse:
        path = request.path
        if path in OPEN_PATHS:
            return await handler(request)
        if path.startswith(INTERNAL_PREFIX):
            if secrets.cluster_secret is not None and not _matches(
                    request.headers.get(CLUSTER_SECRET_HEADER), secrets.cluster_secret):
                return _refuse(request, "missing or wrong cluster secret", bearer=False)
            return await handler(request)
        if secrets.admin_token is not None and not _matches(_bearer(request), secrets.admin_token):
            return _refuse(request, f"missing or wrong admin token: {ADMIN_TOKEN_HINT}", bearer=True)
        return await handler(request)

    return authenticate
