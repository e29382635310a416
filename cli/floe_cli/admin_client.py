"""A typed client of one broker's public admin API (``floe_api.public``), for the command line.

Plain ``urllib``: a CLI makes a handful of blocking calls, and every failure
becomes one ``AdminError`` whose message is the line the user sees.
``FLOE_ADMIN_TOKEN``, when set, is sent as a bearer token; a 401 says
how to set it (or that the one set was refused).
"""

from __future__ import annotations

import os
import urllib.error
import urllib.request
from typing import TypeVar

from pydantic import BaseModel, ValidationError

from floe_api.links import LINKS_PATH, LinkDefinition, LinkStatus, LinksView, PromoteRequest
from floe_api.public import (
    CLUSTER_PATH,
    DRAIN_PATH,
    REASSIGN_PATH,
    ClusterView,
    DrainReply,
    ErrorReply,
    Move,
    ReassignReply,
    ReassignRequest,
)

TOKEN_ENV = "FLOE_ADMIN_TOKEN"
LOCAL_TOKEN_HINT = "for floe local up: export FLOE_ADMIN_TOKEN=$(cat .floe/secrets/admin-token)"
Reply = TypeVar("Reply", bound=BaseModel)


class AdminError(Exception):
    """A failed admin call, worded for the console; ``status`` is the HTTP status when there was one."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class AdminClient:
    def __init__(self, http: str, *, token: str | None = None, timeout: float = 10.0) -> None:
        self.http = http
        self.token = token if token is not None else os.environ.get(TOKEN_ENV) or None
        self.timeout = timeout

    def cluster(self) -> ClusterView:
        return self._call(ClusterView, "GET", CLUSTER_PATH)

    def reassign(self, moves: list[Move], *, timeout: float = 120.0) -> ReassignReply:
        return self._call(ReassignReply, "POST", REASSIGN_PATH, ReassignRequest(moves=moves), timeout=timeout)

    def drain(self) -> DrainReply:
        return self._call(DrainReply, "POST", DRAIN_PATH)

    def links(self) -> LinksView:
        return self._call(LinksView, "GET", LINKS_PATH)

    def link(self, name: str) -> LinkStatus:
        return self._call(LinkStatus, "GET", f"{LINKS_PATH}/{name}")

    def create_link(self, definition: LinkDefinition) -> LinksView:
        return self._call(LinksView, "POST", LINKS_PATH, definition)

    def promote_link(self, name: str, topics: list[str] | None, *, force: bool = False) -> LinksView:
        return self._call(LinksView, "POST", f"{LINKS_PATH}/{name}/promote",
                          PromoteRequest(topics=topics, force=force))

    def delete_link(self, name: str) -> None:
        self._send("DELETE", f"{LINKS_PATH}/{name}", None, timeout=None)

    def _call(self, reply: type[Reply], method: str, path: str, body: BaseModel | None = None, *,
              timeout: float | None = None) -> Reply:
        payload = self._send(method, path, body, timeout=timeout)
        try:
            return reply.model_validate_json(payload)
        except ValidationError as exc:
            raise AdminError(f"{method} http://{self.http}{path}: unexpected reply: {exc.errors()[0]['msg']}") from None

    def _send(self, method: str, path: str, body: BaseModel | None, *, timeout: float | None) -> bytes:
        url = f"http://{self.http}{path}"
        headers = {"Accept": "application/json"}
        data = b"" if method == "POST" else None
        if body is not None:
            data = body.model_dump_json().encode()
            headers["Content-Type"] = "application/json"
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        request = urllib.request.Request(url, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=timeout or self.timeout) as resp:
                payload: bytes = resp.read()
                return payload
        except urllib.error.HTTPError as exc:
            if exc.code == 401:
                raise AdminError(f"{method} {url}: HTTP 401: {self._unauthorized_advice()}") from None
            raise AdminError(f"{method} {url}: HTTP {exc.code}: {_error_text(exc.read())}", exc.code) from None
        except urllib.error.URLError as exc:
            raise AdminError(f"cannot reach the admin API at {url}: {exc.reason}") from None
        except (OSError, TimeoutError) as exc:
            raise AdminError(f"{method} {url}: {exc}") from None

    def _unauthorized_advice(self) -> str:
        if self.token:
            return (f"the broker refused the admin token in {TOKEN_ENV}; set it to this cluster's token "
                    f"({LOCAL_TOKEN_HINT})")
        return f"this cluster's admin API needs a token: set {TOKEN_ENV} ({LOCAL_TOKEN_HINT})"


def _error_text(body: bytes) -> str:
    try:
        return ErrorReply.model_validate_json(body).error
    except ValidationError:
        return body.decode(errors="replace").strip() or "(no body)"

