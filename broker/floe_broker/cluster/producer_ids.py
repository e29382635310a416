"""Producer ids for idempotent producers, handed out from blocks the controller reserves.

Reserving a block is a metadata commit, so ids stay unique across brokers and
restarts; taking them a thousand at a time keeps InitProducerId off the
controller's path almost always.
"""

from __future__ import annotations

import asyncio

from .client import ControllerClient

PRODUCER_ID_BLOCK = 1000


class ProducerIds:
    def __init__(self, controller: ControllerClient, block: int = PRODUCER_ID_BLOCK) -> None:
        self._controller = controller
        self._block = block
        self._next = 0
        self._end = 0
        self._lock = asyncio.Lock()

    async def next(self) -> int:
        async with self._lock:
            if self._next >= self._end:
                start = await self._controller.producer_ids(self._block)
                self._next, self._end = start, start + self._block
            pid = self._next
            self._next += 1
            return pid
