"""The brokers' admin HTTP API as the operator uses it: read the cluster, move leaders.

Any broker answers: ``GET /v1/cluster`` returns the cluster metadata every
broker holds, and ``POST /v1/reassignments`` is forwarded to the controller.
The operator talks to the bootstrap Service's admin port, so it never needs
to know which broker is the controller.

The request and response bodies are the broker's own pydantic models
(``floe_api.public``), the one Floe package besides its own that the operator may
import (an import-linter contract checks it), so both sides agree on the wire
format by construction.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pydantic

from floe_api import public as schema


class BrokerAdminError(Exception):
    """The admin API could not be reached or refused; ``str()`` is for a person."""


@dataclass(frozen=True)
class MoveOutcome:
    topic: str
    partition: int
    to: int
    error: str | None = None


@dataclass(frozen=True)
class ReassignResult:
    seconds: float
    results: list[MoveOutcome] = field(default_factory=list)

    @property
    def failed(self) -> list[MoveOutcome]:
        return [r for r in self.results if r.error]


class BrokerAdmin:
    """One admin endpoint (``http://host:port``); ``session`` is for tests (None = own session)."""

    def __init__(self, url: str, *, timeout_seconds: float = 10.0, session: aiohttp.ClientSession | None = None):
        self.url = url.rstrip("/")
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

    async def _call(self, method: str, path: str, *, body: Any = None, limit_seconds: float | None = None) -> Any:
        url = self.url + path
        per_call = aiohttp.ClientTimeout(total=limit_seconds) if limit_seconds is not None else self.timeout
        try:
            async with self._client().request(method, url, json=body, timeout=per_call) as response:
                text = await response.text()
                if response.status >= 400:
                    raise BrokerAdminError(f"{method} {url} answered {response.status}: {text[:300]}")
                return await response.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            raise BrokerAdminError(f"{method} {url} failed: {str(exc) or type(exc).__name__}") from exc

    async def cluster(self) -> schema.ClusterView:
        """Brokers (with draining flags) and every partition's leader."""
        raw = await self._call("GET", "/v1/cluster")
        try:
            return schema.ClusterView.model_validate(raw)
        except pydantic.ValidationError as exc:
            raise BrokerAdminError(f"GET {self.url}/v1/cluster: unexpected body: {exc}") from exc

    async def reassign(self, moves: list[tuple[str, int, int]], *, timeout_seconds: float = 120.0) -> ReassignResult:
        """Move each (topic, partition) leader to a node; waits until the controller has done them."""
        request = schema.ReassignRequest(moves=[schema.Move(topic=t, partition=p, to=n) for t, p, n in moves])
        raw = await self._call("POST", "/v1/reassignments", body=request.model_dump(), limit_seconds=timeout_seconds)
        try:
            results = [
                MoveOutcome(topic=str(r["topic"]), partition=int(r["partition"]), to=int(r["to"]), error=r.get("error"))
                for r in raw.get("results", [])
            ]
            return ReassignResult(seconds=float(raw.get("seconds", 0.0)), results=results)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise BrokerAdminError(f"POST {self.url}/v1/reassignments: unexpected body: {raw!r:.300}") from exc
