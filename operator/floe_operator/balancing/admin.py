"""The brokers' admin HTTP API as both scaling loops use it: read the cluster, move leaders.

Any broker answers: ``GET /v1/cluster`` returns the cluster metadata every
broker holds, and ``POST /v1/reassignments`` is forwarded to the controller.
The Kubernetes loop talks to the bootstrap Service's admin port and the local
loop to any broker process, so neither needs to know which broker is the
controller.

The request and response bodies are the broker's own pydantic models
(``floe_api.public``), the one Floe package besides its own that the operator may
import (an import-linter contract checks it), so both sides agree on the wire
format by construction.

With ``token`` set, every call carries ``Authorization: Bearer <token>``: the
brokers' admin token, which ``/v1/cluster`` and ``/v1/reassignments`` need
once the cluster has one.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeVar

import aiohttp
import pydantic

from floe_api import public as schema

Body = TypeVar("Body", bound=pydantic.BaseModel)


class BrokerAdminError(Exception):
    """The admin API could not be reached or refused; ``str()`` is for a person."""


class BrokerAdmin:
    """One admin endpoint (``http://host:port``); ``session`` is for tests (None = own session)."""

    def __init__(self, url: str, *, timeout_seconds: float = 10.0, session: aiohttp.ClientSession | None = None,
                 token: str | None = None):
        self.url = url.rstrip("/")
        self._headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.timeout = aiohttp.ClientTimeout(total=timeout_seconds)
        self._session = session
        self._owns_session = session is None

    async def __aenter__(self) -> BrokerAdmin:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._owns_session and self._session is not None:
            await self._session.close()
            self._session = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self.timeout)
        return self._session

    async def _call(
        self, method: str, path: str, answer: type[Body], *, body: Any = None, limit_seconds: float | None = None
    ) -> Body:
        url = self.url + path
        per_call = aiohttp.ClientTimeout(total=limit_seconds) if limit_seconds is not None else self.timeout
        try:
            async with self._client().request(method, url, json=body, timeout=per_call,
                                                  headers=self._headers) as response:
                text = await response.text()
                if response.status >= 400:
                    raise BrokerAdminError(f"{method} {url} answered {response.status}: {text[:300]}")
                raw = await response.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            raise BrokerAdminError(f"{method} {url} failed: {str(exc) or type(exc).__name__}") from exc
        try:
            return answer.model_validate(raw)
        except pydantic.ValidationError as exc:
            raise BrokerAdminError(f"{method} {url}: unexpected body: {exc}") from exc

    async def readiness(self) -> schema.Readiness:
        """``GET /readyz`` of a serving broker (it answers 503 until then): which node it is."""
        return await self._call("GET", schema.READY_PATH, schema.Readiness)

    async def cluster(self) -> schema.ClusterView:
        """Brokers (with draining flags) and every partition's leader."""
        return await self._call("GET", schema.CLUSTER_PATH, schema.ClusterView)

    async def reassign(
        self, moves: Sequence[tuple[str, int, int]], *, timeout_seconds: float = 120.0
    ) -> schema.ReassignReply:
        """Move each (topic, partition) leader to a node; waits until the controller has done them."""
        request = schema.ReassignRequest(moves=[schema.Move(topic=t, partition=p, to=n) for t, p, n in moves])
        return await self._call(
            "POST", schema.REASSIGN_PATH, schema.ReassignReply, body=request.model_dump(), limit_seconds=timeout_seconds
        )
