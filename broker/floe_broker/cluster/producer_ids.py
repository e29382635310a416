"""Producer ids for idempotent producers, handed out from blocks the controller reserves.

Reserving a block is a metadata commit, so ids stay unique across brokers and
restarts; taking them a thousand at a time keeps InitProducerId off the
controller's path almost always. Ids a cluster link's mirror appended from its
source (``floor``, from the metadata) are skipped even inside a block taken
before the mirror saw them, so a Floe producer never shares an id with a
mirrored one (docs/architecture.md#cluster-links).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from .client import ControllerClient

PRODUCER_ID_BLOCK = 1000


class ProducerIds:
    def __init__(self, controller: ControllerClient, block: int = PRODUCER_ID_BLOCK, *,
                 floor: Callable[[], int] = lambda: -1) -> None:
        self._controller = controller
        self._block = block
        self._floor = floor
        self._next = 0
        self._end = 0
        self._lock = asyncio.Lock()

    async def next(self) -> int:
        async with self._lock:
            self._next = max(self._next, self._floor() + 1)  # above every id a link mirrored
            if self._next >= self._end:
                start = await self._controller.producer_ids(self._block)
                self._next, self._end = start, start + self._block
            pid = self._next
            self._next += 1
            return pid
