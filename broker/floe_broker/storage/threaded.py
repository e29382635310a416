"""The async face of stores whose work is blocking (files, boto3).

Subclasses implement the blocking operations (``_get``, ``_get_range``,
``_get_suffix``, ``_head``, ``_put``, ``_list``, ``_delete``) and ``_run``,
which runs one of them in a thread pool and maps the backend's errors to
:mod:`objectstore` errors. This mixin turns them into the async
:class:`~floe_broker.storage.objectstore.ObjectStore` methods, so the event
loop never blocks and the two stores do not repeat the adapters.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

from .objectstore import GetResult, Listing, ObjectInfo

T = TypeVar("T")


class ThreadedStore:
    async def _run(self, label: str, fn: Callable[[], T]) -> T:  # pragma: no cover - abstract
        raise NotImplementedError

    # Blocking operations, implemented by each store.
    def _get(self, key: str) -> GetResult:  # pragma: no cover - abstract
        raise NotImplementedError

    def _get_range(self, key: str, start: int, length: int) -> bytes:  # pragma: no cover - abstract
        raise NotImplementedError

    def _get_suffix(self, key: str, length: int) -> bytes:  # pragma: no cover - abstract
        raise NotImplementedError

    def _head(self, key: str) -> ObjectInfo:  # pragma: no cover - abstract
        raise NotImplementedError

    def _put(self, key: str, data: Any, if_none_match: bool, if_match: str | None) -> str:  # pragma: no cover
        raise NotImplementedError

    def _list(self, prefix: str) -> list[str]:  # pragma: no cover - abstract
        raise NotImplementedError

    def _list_etags(self, prefix: str) -> list[tuple[str, str]]:  # pragma: no cover - abstract
        raise NotImplementedError

    def _delete(self, key: str) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    async def get(self, key: str) -> GetResult:
        return await self._run(key, functools.partial(self._get, key))

    async def get_range(self, key: str, start: int, length: int) -> bytes:
        return await self._run(key, functools.partial(self._get_range, key, start, length))

    async def get_suffix(self, key: str, length: int) -> bytes:
        return await self._run(key, functools.partial(self._get_suffix, key, length))

    async def head(self, key: str) -> ObjectInfo:
        return await self._run(key, functools.partial(self._head, key))

    async def put(
        self,
        key: str,
        data: bytes | bytearray | memoryview,
        *,
        if_none_match: bool = False,
        if_match: str | None = None,
    ) -> str:
        if if_none_match and if_match is not None:
            raise ValueError("pass either if_none_match or if_match, not both")
        return await self._run(key, functools.partial(self._put, key, data, if_none_match, if_match))

    async def list(self, prefix: str) -> list[str]:
        return await self._run(f"list {prefix!r}", functools.partial(self._list, prefix))

    async def list_etags(self, prefix: str) -> Listing:
        return await self._run(f"list {prefix!r}", functools.partial(self._list_etags, prefix))

    async def delete(self, key: str) -> None:
        await self._run(key, functools.partial(self._delete, key))
