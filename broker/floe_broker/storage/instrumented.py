"""Request/byte/latency accounting around any :class:`ObjectStore`.

Why a wrapper: object-store requests are what a Floe cluster pays for (PUT
count is the cost model of the WAL's group commit, docs/architecture.md#write-path),
so every request is counted in one place, independent of the backend, both
into the Prometheus metrics declared in :mod:`floe_broker.metrics` and into
plain counters (:meth:`InstrumentedStore.stats`) that tests and benchmarks can
read without scraping.

``kind`` says what a key holds, from its place in the layout
(:mod:`floe_broker.storage.layout`): ``wal``, ``data``, ``checkpoint``
(``meta/partitions/...`` and the per-broker batches ``meta/checkpoints/...``), ``cluster`` (``meta/cluster``), ``lease``
(``meta/controller``), ``meta`` (any other ``meta/`` key) or ``other``. The
set is small and fixed, so the label stays bounded, and fine enough to say
which of the design's request streams a bill comes from (WAL flushes follow
brokers and throughput; checkpoints and consolidation follow partitions;
cluster metadata follows changes). Every PUT's size is observed too
(``floe_objectstore_put_bytes``), since the price of a request is spread
over the bytes it carries.
Only real failures count as errors (``StoreUnavailable``,
``StoreMisconfigured``, unexpected exceptions): ``NotFound`` and
``PreconditionFailed`` are answers, counted separately in :meth:`stats` as
``not_found`` / ``conflicts``.
"""

from __future__ import annotations

import asyncio
import copy
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from .. import metrics
from ..errors import NotFound, PreconditionFailed
from . import layout
from .health import StoreHealth
from .objectstore import GetResult, Listing, ObjectInfo, ObjectStore

__all__ = ["InstrumentedStore", "key_kind", "KINDS"]

T = TypeVar("T")

KINDS = ("wal", "data", "checkpoint", "cluster", "lease", "meta")

# Under meta/, the second component of a key says what it is (names from the layout).
_META_KINDS = {
    layout.CHECKPOINT_PREFIX.split("/")[1]: "checkpoint",
    layout.BATCH_PREFIX.split("/")[1]: "checkpoint",
    layout.CLUSTER_KEY.split("/")[1]: "cluster",
    layout.METADATA_LOG_PREFIX.split("/")[1]: "cluster",  # metadata deltas: the cluster metadata too
    layout.LEASE_KEY.split("/")[1]: "lease",
}


def key_kind(key: str) -> str:
    """``wal/3/abc/00000001`` → ``wal``, ``meta/partitions/t/0`` → ``checkpoint``; else ``other``.

    Works on list prefixes too (``meta/partitions/`` → ``checkpoint``).
    """
    head, _, rest = key.partition("/")
    if head == "meta":
        return _META_KINDS.get(rest.split("/", 1)[0], "meta")
    return head if head in ("wal", "data") else "other"


class InstrumentedStore:
    """An :class:`ObjectStore` that forwards to ``inner`` and counts everything.

    ``inner`` stays reachable (tests inspect the backend directly).
    """

    def __init__(self, inner: ObjectStore) -> None:
        self.inner = inner
        self.health = StoreHealth()
        self._children: dict[tuple[str, str], tuple[Any, Any, Any]] = {}
        self._latency: dict[str, Any] = {}
        self.reset_stats()

    def __repr__(self) -> str:
        return f"InstrumentedStore({self.inner!r})"

    # --- accounting ---------------------------------------------------------

    def reset_stats(self) -> None:
        """Zero the plain counters (Prometheus counters are monotonic and stay)."""
        self._requests: defaultdict[str, defaultdict[str, int]] = defaultdict(lambda: defaultdict(int))
        self._errors: defaultdict[str, defaultdict[str, int]] = defaultdict(lambda: defaultdict(int))
        self._conflicts: defaultdict[str, int] = defaultdict(int)
        self._not_found: defaultdict[str, int] = defaultdict(int)
        self._read: defaultdict[str, int] = defaultdict(int)
        self._written: defaultdict[str, int] = defaultdict(int)

    def stats(self) -> dict[str, Any]:
        """A snapshot of the plain counters.

        ``{"requests": {op: {kind: n}}, "errors": {op: {kind: n}},
        "bytes_read": {kind: n}, "bytes_written": {kind: n},
        "conflicts": {kind: n}, "not_found": {kind: n}}`` where ``op`` is one of
        get, get_range, get_suffix, head, put, list, delete.
        """
        return copy.deepcopy(
            {
                "requests": {op: dict(v) for op, v in self._requests.items()},
                "errors": {op: dict(v) for op, v in self._errors.items()},
                "bytes_read": dict(self._read),
                "bytes_written": dict(self._written),
                "conflicts": dict(self._conflicts),
                "not_found": dict(self._not_found),
            }
        )

    def _metric_children(self, op: str, kind: str) -> tuple[Any, Any, Any]:
        got = self._children.get((op, kind))
        if got is None:
            got = (
                metrics.STORE_REQUESTS.labels(op, kind),
                metrics.STORE_ERRORS.labels(op, kind),
                metrics.STORE_LATENCY.labels(op),
            )
            self._children[(op, kind)] = got
        return got

    async def _call(
        self,
        op: str,
        key: str,
        call: Callable[[], Awaitable[T]],
        size_in: Callable[[T], int] | None = None,
        size_out: int = 0,
    ) -> T:
        kind = key_kind(key)
        requests, errors, latency = self._metric_children(op, kind)
        requests.inc()
        self._requests[op][kind] += 1
        t0 = time.perf_counter()
        try:
            result = await call()
        except (NotFound, PreconditionFailed) as exc:
            self.health.succeeded(write=op == "put")  # an answer: the store is up
            if isinstance(exc, NotFound):
                self._not_found[kind] += 1
            else:
                self._conflicts[kind] += 1
            raise
        except asyncio.CancelledError:
            raise  # the caller gave up; not a store failure
        except BaseException:
            self.health.failed(write=op == "put")
            errors.inc()
            self._errors[op][kind] += 1
            raise
        finally:
            latency.observe(time.perf_counter() - t0)
        self.health.succeeded(write=op == "put")
        if size_in is not None:
            n = size_in(result)
            if n:
                metrics.STORE_BYTES_READ.labels(kind).inc(n)
                self._read[kind] += n
        if op == "put":
            metrics.STORE_PUT_SIZE.labels(kind).observe(size_out)
        if size_out:
            metrics.STORE_BYTES_WRITTEN.labels(kind).inc(size_out)
            self._written[kind] += size_out
        return result

    # --- ObjectStore API ----------------------------------------------------

    async def check(self) -> None:
        await self.inner.check()

    async def get(self, key: str) -> GetResult:
        return await self._call("get", key, lambda: self.inner.get(key), lambda r: len(r.data))

    async def get_range(self, key: str, start: int, length: int) -> bytes:
        return await self._call("get_range", key, lambda: self.inner.get_range(key, start, length), len)

    async def get_suffix(self, key: str, length: int) -> bytes:
        return await self._call("get_suffix", key, lambda: self.inner.get_suffix(key, length), len)

    async def head(self, key: str) -> ObjectInfo:
        return await self._call("head", key, lambda: self.inner.head(key))

    async def put(
        self,
        key: str,
        data: bytes | bytearray | memoryview,
        *,
        if_none_match: bool = False,
        if_match: str | None = None,
    ) -> str:
        return await self._call(
            "put",
            key,
            lambda: self.inner.put(key, data, if_none_match=if_none_match, if_match=if_match),
            size_out=memoryview(data).nbytes,
        )

    async def list(self, prefix: str) -> list[str]:
        return await self._call("list", prefix, lambda: self.inner.list(prefix))

    async def list_etags(self, prefix: str) -> Listing:
        return await self._call("list", prefix, lambda: self.inner.list_etags(prefix))

    async def delete(self, key: str) -> None:
        await self._call("delete", key, lambda: self.inner.delete(key))

    async def close(self) -> None:
        await self.inner.close()
