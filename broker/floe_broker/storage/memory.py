"""In-process object store: the reference semantics, for fast unit tests.

Not shared between processes; use ``file://`` for that.
"""

from __future__ import annotations

import hashlib
import itertools

from ..errors import NotFound, PreconditionFailed
from .objectstore import GetResult, Listing, ObjectInfo


class MemoryStore:
    def __init__(self) -> None:
        self._objects: dict[str, tuple[bytes, str]] = {}
        self._counter = itertools.count()

    async def check(self) -> None:
        return None

    def _etag(self, data: bytes) -> str:
        return hashlib.md5(data + str(next(self._counter)).encode()).hexdigest()

    async def get(self, key: str) -> GetResult:
        try:
            data, etag = self._objects[key]
        except KeyError:
            raise NotFound(key) from None
        return GetResult(data, etag)

    async def get_range(self, key: str, start: int, length: int) -> bytes:
        return (await self.get(key)).data[start : start + length]

    async def get_suffix(self, key: str, length: int) -> bytes:
        data = (await self.get(key)).data
        if length <= 0:
            return b""
        return data[-length:] if length < len(data) else data

    async def head(self, key: str) -> ObjectInfo:
        got = await self.get(key)
        return ObjectInfo(len(got.data), got.etag)

    async def put(
        self,
        key: str,
        data: bytes | bytearray | memoryview,
        *,
        if_none_match: bool = False,
        if_match: str | None = None,
    ) -> str:
        current = self._objects.get(key)
        if if_none_match and current is not None:
            raise PreconditionFailed(key)
        if if_match is not None and (current is None or current[1] != if_match):
            raise PreconditionFailed(key)
        blob = bytes(data)
        etag = self._etag(blob)
        self._objects[key] = (blob, etag)
        return etag

    async def list(self, prefix: str) -> list[str]:
        return sorted(k for k in self._objects if k.startswith(prefix))

    async def list_etags(self, prefix: str) -> Listing:
        return sorted((k, etag) for k, (_, etag) in self._objects.items() if k.startswith(prefix))

    async def delete(self, key: str) -> None:
        self._objects.pop(key, None)

    async def close(self) -> None:
        return None
