"""Per-connection order of side effects for pipelined requests.

Kafka guarantees that requests on one connection take effect in the order
they were sent: two pipelined produce requests for a partition must append
in order. We still process requests concurrently (a produce waiting for its
WAL flush must not stop the next one from joining the *same* flush), so each
request gets a :class:`Turn`: it may perform its side effect once the
previous request on the connection has released its turn. Produce releases
right after appending (before waiting for durability); every other request
releases when it finishes. The turn travels in a context variable so
handlers need no extra parameter.
"""

from __future__ import annotations

import asyncio
from contextvars import ContextVar


class Turn:
    __slots__ = ("_prev", "mine")

    def __init__(self, prev: asyncio.Future[None] | None) -> None:
        self._prev = prev
        self.mine: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    async def wait(self) -> None:
        """Wait until every earlier request on this connection has had its turn."""
        if self._prev is not None and not self._prev.done():
            await asyncio.shield(self._prev)

    def release(self) -> None:
        """Let the next request go, once the earlier ones have (idempotent)."""
        if self.mine.done():
            return
        if self._prev is None or self._prev.done():
            self.mine.set_result(None)
        else:
            self._prev.add_done_callback(self._chain)

    def _chain(self, _prev: asyncio.Future[None]) -> None:
        if not self.mine.done():
            self.mine.set_result(None)


CURRENT_TURN: ContextVar[Turn | None] = ContextVar("floe_turn", default=None)
