"""Bounded block cache for ranged GETs, with read-ahead for catch-up consumers.

Objects are immutable once written (WAL and data objects are create-only),
so a block ``(key, n)`` -- bytes ``[n*bs, (n+1)*bs)`` -- never goes stale.
Blocks are ``block_size`` bytes, except in consolidated objects
(``data/s/...``), which hold many partitions' ranges and are read in
``consolidated_block_size`` blocks (4 MiB): a catch-up read costs at most one
GET per 4 MiB, and the partitions sharing an object share its blocks.
Concurrent misses on one block share a single GET, and so do concurrent
misses on one object tail. A read whose last block is full prefetches the
next one in the background, so a sequential consumer rarely waits on S3;
``until`` (the end of the reader's range in a shared object) stops that
read-ahead from fetching other partitions' bytes nobody asked for. Reads run
on their own tasks; nothing here holds up the WAL writer.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict

from .. import metrics
from ..storage import layout
from ..storage.objectstore import ObjectStore, retrying

CONSOLIDATED_BLOCK_SIZE = 4 * 1024 * 1024


class BlockCache:
    def __init__(self, store: ObjectStore, *, block_size: int, capacity_bytes: int,
                 consolidated_block_size: int = CONSOLIDATED_BLOCK_SIZE) -> None:
        self.store = store
        self.block_size = block_size
        self.consolidated_block_size = consolidated_block_size
        self.capacity = max(capacity_bytes, block_size, consolidated_block_size)
        self._suffix_loading: dict[tuple[str, int], asyncio.Future[bytes]] = {}
        self._blocks: OrderedDict[tuple[str, int], bytes] = OrderedDict()
        self._loading: dict[tuple[str, int], asyncio.Future[bytes]] = {}
        self._size = 0
        self._suffixes: OrderedDict[tuple[str, int], bytes] = OrderedDict()
        self._tasks: set[asyncio.Task[bytes]] = set()

    def block_size_of(self, key: str) -> int:
        return self.consolidated_block_size if layout.is_consolidated(key) else self.block_size

    async def read(self, key: str, pos: int, size: int, until: int = 0) -> bytes:
        """Bytes ``[pos, pos+size)`` of ``key``; read-ahead stays below ``until`` when set."""
        bs = self.block_size_of(key)
        first, last = pos // bs, (pos + size - 1) // bs
        blocks = await asyncio.gather(*(self._block(key, n, bs) for n in range(first, last + 1)))
        if len(blocks[-1]) == bs and (until <= 0 or (last + 1) * bs < until):
            self._prefetch(key, last + 1, bs)
        joined = blocks[0] if len(blocks) == 1 else b"".join(blocks)
        start = pos - first * bs
        return joined[start : start + size]

    def prefetch(self, key: str, pos: int, size: int) -> None:
        """Start loading bytes ``[pos, pos+size)`` of ``key`` in the background: a read soon to come.

        A partition's unconsolidated tail is one small range in each of many WAL
        objects; fetching them one after the other made a catch-up fetch cost a
        GET round trip per flush (tens of seconds on a loaded object store).
        """
        bs = self.block_size_of(key)
        for n in range(pos // bs, (pos + max(size, 1) - 1) // bs + 1):
            self._prefetch(key, n, bs)

    async def read_suffix(self, key: str, length: int) -> bytes:
        """Object tails (footers and indexes); cached separately, tiny."""
        k = (key, length)
        cached = self._suffixes.get(k)
        if cached is not None:
            return cached
        loading = self._suffix_loading.get(k)
        if loading is not None:
            return await asyncio.shield(loading)
        fut: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self._suffix_loading[k] = fut
        try:
            data = await retrying(lambda: self.store.get_suffix(key, length), attempts=8)
        except BaseException as exc:
            fut.set_exception(exc)
            fut.exception()
            raise
        finally:
            del self._suffix_loading[k]
        fut.set_result(data)
        self._suffixes[k] = data
        while len(self._suffixes) > 4096:
            self._suffixes.popitem(last=False)
        return data

    async def _block(self, key: str, n: int, bs: int) -> bytes:
        k = (key, n)
        data = self._blocks.get(k)
        if data is not None:
            self._blocks.move_to_end(k)
            metrics.CACHE_HITS.inc()
            return data
        fut = self._loading.get(k)
        if fut is None:
            metrics.CACHE_MISSES.inc()
            fut = asyncio.get_running_loop().create_future()
            self._loading[k] = fut
            try:
                data = await retrying(
                    lambda: self.store.get_range(key, n * bs, bs), attempts=8
                )
            except BaseException as exc:
                fut.set_exception(exc)
                fut.exception()
                del self._loading[k]
                raise
            del self._loading[k]
            fut.set_result(data)
            self._insert(k, data)
            return data
        metrics.CACHE_HITS.inc()
        return await asyncio.shield(fut)

    def _insert(self, k: tuple[str, int], data: bytes) -> None:
        self._blocks[k] = data
        self._size += len(data)
        while self._size > self.capacity and self._blocks:
            _, old = self._blocks.popitem(last=False)
            self._size -= len(old)

    def _prefetch(self, key: str, n: int, bs: int) -> None:
        k = (key, n)
        if k in self._blocks or k in self._loading:
            return
        task = asyncio.get_running_loop().create_task(self._block(key, n, bs))
        self._tasks.add(task)
        task.add_done_callback(self._prefetch_done)

    def _prefetch_done(self, task: asyncio.Task[bytes]) -> None:
        self._tasks.discard(task)
        if not task.cancelled():
            task.exception()  # a failed read-ahead is harmless; the real read retries

    def forget(self, key: str) -> None:
        """Drop a deleted object's blocks."""
        for k in [k for k in self._blocks if k[0] == key]:
            self._size -= len(self._blocks.pop(k))
