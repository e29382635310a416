"""Coordinator shards: the state kept per partition of an internal topic, loaded where it is led.

Group coordination (``__consumer_offsets``) and transaction coordination
(``__transaction_state``) work the same way: a key (group id, transactional
id) is placed on a partition as Kafka places it, the broker leading that
partition coordinates it, and its state is rebuilt by replaying the
partition (the shard's *journal*) when leadership arrives. This module holds
what the two share: the placement, the journal a shard writes to, and the set
of shards a broker holds as partitions come and go. It knows nothing of the
log, the cluster, groups or transactions.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, ItemsView, Iterator, ValuesView
from typing import Generic, Protocol, TypeVar

import structlog

from .errors import JournalClosed

log = structlog.get_logger()


def partition_for(key: str, partitions: int) -> int:
    """Kafka's placement: abs(String.hashCode(key)) % partitions, with Java's UTF-16 hash."""
    h = 0
    data = key.encode("utf-16-be", "surrogatepass")
    for i in range(0, len(data), 2):
        h = (31 * h + ((data[i] << 8) | data[i + 1])) & 0xFFFFFFFF
    if h >= 0x80000000:
        h -= 0x100000000
    return (abs(h) if h != -0x80000000 else 0) % partitions


class Journal(Protocol):
    """The partition a shard appends its state changes to and replays on load."""

    identity: object  # the open partition: a new one means a new shard

    @property
    def open(self) -> bool: ...

    async def reserve(self, nbytes: int) -> None:
        """Wait for room in the write buffer (backpressure) before appending."""

    def append(self, entries: list[tuple[bytes, bytes | None]]) -> tuple[int, Awaitable[None]]:
        """Append key/value records now (offsets assigned, no await); returns the first
        offset and an awaitable that completes once they are durable. Raises JournalClosed."""

    def replay(self) -> AsyncIterator[tuple[bytes, bytes | None]]:
        """Every record from the log start to the high watermark."""

    def trim_before(self, offset: int) -> None:
        """Move the log start forward: records below ``offset`` are no longer replayed."""


class Shard(Protocol):
    journal: Journal
    closed: bool

    async def load(self) -> None:
        """Replay the journal (raises JournalClosed if it closes meanwhile)."""

    def close(self) -> None: ...


S = TypeVar("S", bound=Shard)


class ShardSet(Generic[S]):
    """The shards this broker holds, one per internal-topic partition it leads.

    A shard is valid only for the journal (open partition) it was loaded from:
    when leadership moves away and back, the partition reopens with a new
    identity and the shard is rebuilt from it. Concurrent requests for a
    partition being loaded wait for one load.
    """

    def __init__(self, journal_for: Callable[[int], Awaitable[Journal | None]],
                 make: Callable[[int, Journal], S], *, what: str,
                 on_loaded: Callable[[S], None] | None = None) -> None:
        self.journal_for = journal_for  # partition -> its journal if led here, else None
        self.make = make
        self.what = what  # for log lines: "offsets partition", "transaction state partition"
        self.on_loaded = on_loaded
        self.shards: dict[int, S] = {}
        self._loading: dict[int, asyncio.Task[S]] = {}

    def values(self) -> ValuesView[S]:
        return self.shards.values()

    def items(self) -> ItemsView[int, S]:
        return self.shards.items()

    async def shard_at(self, p: int) -> S | None:
        """Partition ``p``'s shard, loading it if needed; None if ``p`` is not led here."""
        journal = await self.journal_for(p)
        if journal is None or not journal.open:
            self.drop(p)
            return None
        shard = self.shards.get(p)
        if shard is not None and shard.journal.identity is journal.identity and not shard.closed:
            return shard
        self.drop(p)
        task = self._loading.get(p)
        if task is None or task.done():
            task = self._loading[p] = asyncio.create_task(self._load(p, journal))
        try:
            shard = await asyncio.shield(task)
        except JournalClosed:
            return None
        return shard if journal.open and self.shards.get(p) is shard else None

    async def load_led(self, partitions: int) -> None:
        """Start loading every partition of ``range(partitions)`` led here and not loaded yet,
        without waiting for a client: what a takeover must finish, or list, starts at once."""
        for p in range(partitions):
            if p in self.shards or p in self._loading:
                continue
            journal = await self.journal_for(p)
            if journal is not None and journal.open:
                task = self._loading[p] = asyncio.create_task(self._load(p, journal))
                task.add_done_callback(self._load_failed)

    def live(self) -> Iterator[tuple[int, S]]:
        """The shards whose partition is still open here; the others are dropped on the way."""
        for p, shard in list(self.shards.items()):
            if shard.journal.open:
                yield p, shard
            else:
                self.drop(p)

    def drop(self, p: int) -> None:
        shard = self.shards.pop(p, None)
        if shard is not None:
            shard.close()
            log.info(f"no longer coordinating {self.what}", partition=p)

    def close(self) -> None:
        for shard in self.shards.values():
            shard.close()
        self.shards.clear()

    async def _load(self, p: int, journal: Journal) -> S:
        shard = self.make(p, journal)
        try:
            await shard.load()
        finally:
            self._loading.pop(p, None)
        if journal.open:
            self.shards[p] = shard
            if self.on_loaded is not None:
                self.on_loaded(shard)
        else:
            shard.close()
        return shard

    def _load_failed(self, task: asyncio.Task[S]) -> None:
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None and not isinstance(exc, JournalClosed):
            log.warning(f"loading a {self.what} failed", error=repr(exc))
