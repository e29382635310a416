"""The brokers' ``/v1/links`` admin API as the StreamLink reconciler uses it.

Any broker answers (changes are forwarded to the controller), so the
operator talks to the bootstrap Service's admin port, with the cluster's
admin token. The bodies are the brokers' own models (``floe_api.links``).
``put`` is declarative: it creates the link or changes its definition, and
an unchanged definition changes nothing on the brokers.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, TypeVar

import aiohttp
import pydantic

from floe_api.links import LINKS_PATH, LinkDefinition, LinkStatus, LinksView, PromoteRequest

Body = TypeVar("Body", bound=pydantic.BaseModel)


class LinkAdminError(Exception):
    """The admin API could not be reached or refused; ``status`` is the HTTP status (0: no answer)."""

    def __init__(self, message: str, status: int = 0) -> None:
        super().__init__(message)
        self.status = status


class LinkAdmin:
    """One cluster's admin endpoint (``http://host:port``) and its token."""

    def __init__(self, url: str, *, token: str | None = None, timeout_seconds: float = 15.0) -> None:
        self.url = url.rstrip("/")
        self._headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._timeout = aiohttp.ClientTimeout(total=timeout_seconds)
        self._session: aiohttp.ClientSession | None = None

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _call(self, method: str, path: str, answer: type[Body] | None, body: Any = None) -> Body | None:
        url = self.url + path
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        try:
            async with self._session.request(method, url, json=body, headers=self._headers) as response:
                text = await response.text()
                if response.status >= 400:
                    raise LinkAdminError(f"{method} {path} answered {response.status}: {_error_text(text)}",
                                         response.status)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise LinkAdminError(f"the brokers' admin API at {self.url} did not answer: "
                                 f"{str(exc) or type(exc).__name__}") from exc
        if answer is None:
            return None
        try:
            return answer.model_validate_json(text)
        except pydantic.ValidationError as exc:
            raise LinkAdminError(f"{method} {path}: unexpected answer: {exc.errors()[0]['msg']}") from exc

    async def put(self, definition: LinkDefinition) -> LinkStatus:
        view = await self._call("PUT", f"{LINKS_PATH}/{definition.name}", LinksView, definition.model_dump(mode="json"))
        assert view is not None
        return view.links[0]

    async def status(self, name: str) -> LinkStatus | None:
        """The link's status; None if the brokers have no such link."""
        try:
            return await self._call("GET", f"{LINKS_PATH}/{name}", LinkStatus)
        except LinkAdminError as exc:
            if exc.status == 404:
                return None
            raise

    async def promote(self, name: str, topics: list[str] | None, *, force: bool) -> None:
        """Ask for promotion; a LinkAdminError with status 409 while the link lags (unless ``force``)."""
        await self._call("POST", f"{LINKS_PATH}/{name}/promote", None,
                         PromoteRequest(topics=topics, force=force).model_dump(mode="json"))

    async def delete(self, name: str) -> bool:
        """Forget the link (its topics stay, writable); False if it did not exist."""
        try:
            await self._call("DELETE", f"{LINKS_PATH}/{name}", None)
        except LinkAdminError as exc:
            if exc.status == 404:
                return False
            raise
        return True


# Called as factory(url, token=...); tests give their own.
LinkAdminFactory = Callable[..., LinkAdmin]


def _error_text(text: str) -> str:
    try:
        found = json.loads(text)
        if isinstance(found, dict) and isinstance(found.get("error"), str):
            return str(found["error"])
    except ValueError:
        pass
    return text[:300] or "(no body)"
