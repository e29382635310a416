"""The one small async interface every Floe object store implements.

Floe keeps all of its state in an S3-compatible bucket and relies on exactly
the semantics S3, MinIO and Ceph RGW offer (docs/architecture.md#bucket-layout):

* ``put(key, data)`` — unconditional overwrite (rarely used: GC markers).
* ``put(key, data, if_none_match=True)`` — create-only. Raises
  :class:`PreconditionFailed` when the key exists. WAL objects, data objects
  and fencing tombstones are written this way.
* ``put(key, data, if_match=etag)`` — compare-and-swap. Raises
  :class:`PreconditionFailed` when the stored ETag differs (or the object is
  gone). Cluster metadata, the controller lease and partition checkpoints are
  written this way.
* ``get(key)`` / ``get_range(key, start, length)`` / ``get_suffix(key, n)``
  — full, ranged and tail reads. Raise :class:`NotFound` when absent.
* ``head(key)`` — size and ETag, or :class:`NotFound`.
* ``list(prefix)`` — all keys under a prefix, sorted.
* ``list_etags(prefix)`` — the same, with each key's ETag as the listing
  gives it (S3's ListObjectsV2 carries them): lets a reader skip objects it
  has read since, for no more requests than ``list``.
* ``delete(key)`` — idempotent.

Any other failure raises :class:`StoreUnavailable` (5xx, timeouts,
connection errors). Callers decide whether to retry; :func:`retrying` gives
the standard backoff. A write that raised ``StoreUnavailable`` is *unknown*:
it may or may not have happened, so callers re-read before deciding
(radosgw answers some contended conditional PUTs with 500 instead of 412).

Keys are relative to the store's root (``<prefix>/<cluster>/``, applied by
``factory.open_store``), always use ``/`` and never start with one.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol, TypeVar, runtime_checkable

from ..errors import StoreUnavailable

T = TypeVar("T")

# (key, etag) pairs a listing returns, sorted by key
Listing = list[tuple[str, str]]


@dataclass(frozen=True, slots=True)
class ObjectInfo:
    size: int
    etag: str


@dataclass(frozen=True, slots=True)
class GetResult:
    data: bytes
    etag: str


@runtime_checkable
class ObjectStore(Protocol):
    """Async object store. Implementations: memory, ``file://``, ``s3://``."""

    async def check(self) -> None:
        """Verify the store is reachable and writable; raise StoreMisconfigured with the reason."""

    async def get(self, key: str) -> GetResult: ...

    async def get_range(self, key: str, start: int, length: int) -> bytes:
        """Bytes ``[start, start+length)``; shorter if the object ends first."""

    async def get_suffix(self, key: str, length: int) -> bytes:
        """The last ``length`` bytes (the whole object if it is shorter)."""

    async def head(self, key: str) -> ObjectInfo: ...

    async def put(
        self,
        key: str,
        data: bytes | bytearray | memoryview,
        *,
        if_none_match: bool = False,
        if_match: str | None = None,
    ) -> str:
        """Write ``data``; return the new ETag. See the module docstring for conditions."""

    async def list(self, prefix: str) -> list[str]: ...

    async def list_etags(self, prefix: str) -> Listing:
        """``(key, etag)`` of every key under ``prefix``, sorted by key, for as many requests
        as :meth:`list` (S3's listing carries ETags). The etag is what :meth:`get` would
        return, or "" where a store's listing does not say: then the caller must read."""

    async def delete(self, key: str) -> None: ...

    async def close(self) -> None: ...


async def retrying(
    op: Callable[[], Awaitable[T]],
    *,
    attempts: int | None = None,
    base_delay: float = 0.05,
    max_delay: float = 2.0,
    on_retry: Callable[[int, BaseException], None] | None = None,
) -> T:
    """Run ``op`` until it stops raising :class:`StoreUnavailable`.

    Exponential backoff with full jitter. ``attempts=None`` retries forever:
    the WAL writer uses that, because a producer should time out rather than
    receive a false acknowledgement. NotFound / PreconditionFailed are answers,
    not failures, and propagate at once.
    """
    attempt = 0
    while True:
        try:
            return await op()
        except StoreUnavailable as exc:
            attempt += 1
            if attempts is not None and attempt >= attempts:
                raise
            if on_retry is not None:
                on_retry(attempt, exc)
            delay = min(max_delay, base_delay * (2 ** min(attempt, 16)))
            await asyncio.sleep(random.uniform(0, delay))
