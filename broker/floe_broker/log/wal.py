"""Group commit: one WAL object per flush holding every partition's pending batches.

Produce handlers call :meth:`WalWriter.add` for each partition chunk (no
await in between, so one request's chunks land in one flush) and then await
:meth:`WalWriter.durable` on the returned flush. A flush is cut
``flush_interval_ms`` after its first byte (not on a fixed tick: a produce
waits at most the interval, never the interval plus the rest of a tick), or
at once when ``flush_bytes`` are pending, and PUT create-only at
``wal/<node>/<session>/<seq>``. So an idle broker makes no PUTs, a slow
stream makes at most one PUT per interval whatever the number of partitions,
and a fast one one PUT per ``flush_bytes``; the flush profiles in
``floe_broker.config`` choose the two bounds per store.

Several PUTs may be in flight (pipelining hides object-store latency), but
acknowledgement is strictly in sequence order: a flush completes only when
its own PUT and every earlier PUT of the session succeeded (I2, docs/architecture.md#i2-ack--durable). Retryable
errors are retried forever with backoff (the producer times out; it never
gets a false ack). A 412 means the key exists: either our own earlier
attempt whose answer was lost (content is ours) or a fencing tombstone, in
which case the session is over (I3) and ``on_fenced`` is called.

Backpressure: when pending plus in-flight bytes exceed ``max_pending_bytes``,
:meth:`reserve` makes producers wait; given a timeout it waits at most that
long and then raises :class:`~floe_broker.errors.WriteBufferFull`, so a
producer hears why instead of timing out in silence.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import structlog

from .. import metrics
from ..errors import Fenced, PreconditionFailed, WriteBufferFull
from ..storage import layout
from ..storage.objectstore import ObjectStore, retrying
from . import formats
from .partition import Chunk, Partition

log = structlog.get_logger(__name__)


@dataclass(eq=False)
class Flush:
    seq: int
    chunks: dict[Partition, list[Chunk]] = field(default_factory=dict)
    size: int = 0
    done: asyncio.Future[None] = field(default_factory=lambda: asyncio.get_running_loop().create_future())
    started: float = field(default_factory=time.monotonic)


class WalWriter:
    def __init__(
        self,
        store: ObjectStore,
        *,
        node_id: int,
        session: str,
        flush_interval_ms: int,
        flush_bytes: int,
        max_pending_bytes: int,
        max_inflight: int,
        on_fenced: Callable[[], None],
        first_seq: int = 1,
    ) -> None:
        self.store = store
        self.node_id = node_id
        self.session = session
        self.flush_interval = flush_interval_ms / 1000
        self.flush_bytes = flush_bytes
        self.max_pending_bytes = max_pending_bytes
        self.on_fenced = on_fenced
        self._next_seq = first_seq
        self.completed_seq = first_seq - 1  # every seq <= this is durable
        self._current: Flush | None = None
        self._inflight: dict[int, Flush] = {}
        self._succeeded: set[int] = set()
        self._sem = asyncio.Semaphore(max_inflight)
        self._kick = asyncio.Event()
        self._space = asyncio.Condition()
        self._buffered = 0  # pending + in flight
        self._task: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.fenced = False
        self.put_error: str | None = None  # why the latest WAL PUT failed, until one succeeds again
        self.puts = 0
        self.put_bytes = 0

    # ---- producer side ------------------------------------------------------

    async def reserve(self, nbytes: int, patience: float | None = None) -> None:
        """Wait until the buffer has room (backpressure to producers).

        With ``patience`` (seconds), raise WriteBufferFull once it has passed without room.
        """
        if self._room_for(nbytes):
            return
        try:
            async with asyncio.timeout(patience), self._space:
                await self._space.wait_for(lambda: self._room_for(nbytes))
        except TimeoutError:
            why = f"; the object store answers: {self.put_error}" if self.put_error else ""
            raise WriteBufferFull(
                f"write buffer full: {self._buffered} bytes are waiting for the object store "
                f"(--max-pending-bytes {self.max_pending_bytes}){why}; nothing of this request was written, retry"
            ) from None

    def _room_for(self, nbytes: int) -> bool:
        return self._buffered + nbytes <= self.max_pending_bytes or self._buffered == 0

    def add(self, partition: Partition, chunk: Chunk) -> Flush:
        if self.fenced:
            raise Fenced("session fenced")
        flush = self._current
        if flush is None:
            flush = self._current = Flush(self._next_seq)
            self._next_seq += 1
            self._kick.set()
        flush.chunks.setdefault(partition, []).append(chunk)
        flush.size += chunk.size
        self._buffered += chunk.size
        metrics.WAL_PENDING_BYTES.set(self._buffered)
        if flush.size >= self.flush_bytes:
            self._cut("size")
        return flush

    @staticmethod
    async def durable(flush: Flush) -> None:
        await asyncio.shield(flush.done)

    async def barrier(self) -> None:
        """Wait until everything added so far is durable (used before a checkpoint/move)."""
        if self._current is not None:
            flush = self._current
            self._cut("barrier")
            await self.durable(flush)
        if self._inflight:
            await self.durable(self._inflight[max(self._inflight)])

    # ---- flushing ------------------------------------------------------------

    def start(self) -> None:
        self._task = asyncio.create_task(self._timer(), name="wal-timer")

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
        for t in list(self._tasks):
            t.cancel()

    async def _timer(self) -> None:
        while True:
            await self._kick.wait()
            self._kick.clear()
            flush = self._current
            if flush is None:
                continue
            delay = self.flush_interval - (time.monotonic() - flush.started)
            if delay > 0:
                await asyncio.sleep(delay)
            if self._current is flush:
                self._cut("interval")

    def _cut(self, reason: str) -> None:
        """Close the current flush and start its PUT; ``reason`` is interval, size or barrier."""
        flush = self._current
        if flush is None:
            return
        self._current = None
        metrics.WAL_FLUSHES.labels(reason).inc()
        self._inflight[flush.seq] = flush
        task = asyncio.create_task(self._write(flush), name=f"wal-put-{flush.seq}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _encode(self, flush: Flush) -> bytes:
        parts: list[bytes | bytearray] = []
        index = []
        pos = 0
        for partition, chunks in flush.chunks.items():
            start = pos
            for c in chunks:
                assert c.data is not None
                c.pos = pos
                parts.append(c.data)
                pos += c.size
            index.append(
                [
                    partition.topic_id,
                    partition.index,
                    partition.epoch,
                    chunks[0].base,
                    chunks[-1].last,
                    max(c.max_ts for c in chunks),
                    start,
                    pos - start,
                ]
            )
        return formats.encode_object(parts, index, formats.WAL_MAGIC)

    async def _write(self, flush: Flush) -> None:
        key = layout.wal_key(self.node_id, self.session, flush.seq)
        body = self._encode(flush)
        async with self._sem:
            t0 = time.perf_counter()
            try:
                await retrying(lambda: self._put_once(key, body), on_retry=lambda n, exc: self._put_failed(key, n, exc))
            except Fenced:
                self._fence()
                return
            except Exception as exc:  # pragma: no cover - unexpected store failure
                log.error("wal put failed permanently", key=key, error=repr(exc))
                self._fence()
                return
            metrics.WAL_PUT_LATENCY.observe(time.perf_counter() - t0)
        self.put_error = None
        metrics.WAL_PUTS.inc()
        metrics.WAL_BYTES.inc(len(body))
        self.puts += 1
        self.put_bytes += len(body)
        for chunks in flush.chunks.values():
            for c in chunks:
                c.key = key
        self._succeeded.add(flush.seq)
        self._complete_in_order()

    def _put_failed(self, key: str, attempt: int, exc: BaseException) -> None:
        self.put_error = str(exc)
        log.warning("wal put failed, retrying", key=key, attempt=attempt, error=str(exc))

    async def _put_once(self, key: str, body: bytes) -> None:
        try:
            await self.store.put(key, body, if_none_match=True)
        except PreconditionFailed:
            # Ours from a lost answer, or a tombstone: look before deciding.
            got = await self.store.get(key)
            if got.data == layout.TOMBSTONE or got.data != body:
                raise Fenced(key) from None

    def _complete_in_order(self) -> None:
        while self.completed_seq + 1 in self._succeeded:
            seq = self.completed_seq + 1
            self._succeeded.discard(seq)
            flush = self._inflight.pop(seq)
            self.completed_seq = seq
            self._buffered -= flush.size
            for partition, chunks in flush.chunks.items():
                partition.advance_high_watermark(chunks[-1].last + 1)
            if not flush.done.done():
                flush.done.set_result(None)
        metrics.WAL_PENDING_BYTES.set(self._buffered)
        asyncio.get_running_loop().create_task(self._notify_space())

    async def _notify_space(self) -> None:
        async with self._space:
            self._space.notify_all()

    def _fence(self) -> None:
        if self.fenced:
            return
        self.fenced = True
        log.error("session fenced: a tombstone holds our next WAL key; stopping", session=self.session)
        exc = Fenced("broker session fenced")
        for flush in [*self._inflight.values(), *([self._current] if self._current else [])]:
            if not flush.done.done():
                flush.done.set_exception(exc)
                flush.done.exception()  # mark retrieved
        self.on_fenced()

