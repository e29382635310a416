"""Broker <-> controller calls over the admin HTTP port (``/internal/v1/...``).

Small JSON requests with short timeouts. Any failure raises :class:`RpcError`
(callers decide whether to retry), except a controller-only call that reached
a broker which is not the controller: that raises :class:`NotController`, so
the caller looks the lease up again instead of retrying the same address.

Every call carries the cluster secret, when one is configured, in the
:data:`CLUSTER_SECRET_HEADER` header; the other side answers 401 to a missing
or wrong one, which raises :class:`ClusterSecretRefused` (no retry can fix it).
See docs/architecture.md#the-admin-api.
"""

from __future__ import annotations

from typing import Any

import aiohttp

from ..errors import ClusterSecretRefused, NotController, RpcError

# The ``error`` of the 503 a broker answers to a controller-only call when it is not the controller.
NOT_THE_CONTROLLER = "not the controller"
# The header an /internal/v1 call carries the cluster secret in (the admin token uses Authorization).
CLUSTER_SECRET_HEADER = "X-Floe-Cluster-Secret"


class Rpc:
    def __init__(self, timeout_s: float = 5.0, *, cluster_secret: str | None = None) -> None:
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._session: aiohttp.ClientSession | None = None
        self._headers = {CLUSTER_SECRET_HEADER: cluster_secret} if cluster_secret else {}

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=self._timeout, headers=self._headers)
        return self._session

    async def call(self, http: str, path: str, body: Any, *, timeout_s: float | None = None) -> Any:
        timeout = aiohttp.ClientTimeout(total=timeout_s) if timeout_s else self._timeout
        try:
            async with self._client().post(f"http://{http}{path}", json=body, timeout=timeout) as resp:
                data = await resp.json(content_type=None)
                if resp.status == 401:
                    raise ClusterSecretRefused(f"{http}{path}: 401: the cluster secret was refused")
                if resp.status == 503 and isinstance(data, dict) and data.get("error") == NOT_THE_CONTROLLER:
                    raise NotController(f"{http}{path}: {NOT_THE_CONTROLLER}")
                if resp.status >= 400:
                    raise RpcError(f"{http}{path}: {resp.status} {data}")
                return data
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            raise RpcError(f"{http}{path}: {exc!r}") from exc

    async def answers(self, http: str, *, timeout_s: float = 1.0) -> bool:
        """Whether a broker's admin port answers ``/healthz`` now (its event loop runs).

        A refused connection answers at once; a paused or unreachable process within ``timeout_s``.
        """
        try:
            async with self._client().get(f"http://{http}/healthz",
                                          timeout=aiohttp.ClientTimeout(total=timeout_s)) as resp:
                return resp.status == 200
        except (aiohttp.ClientError, TimeoutError):
            return False

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
