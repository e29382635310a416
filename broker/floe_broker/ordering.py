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

A produce refused for backpressure (the WAL buffer stayed full) must not be
overtaken by a produce the client had already pipelined behind it: that one
would append while the earlier records are not, and the client retries the
earlier ones after it. So a refusal travels down the chain with the time it
was made, and every request that had already arrived by then is refused too
(:meth:`Turn.refused_behind`); requests sent after it go ahead normally.
"""

from __future__ import annotations

import asyncio
import time
from contextvars import ContextVar

# What a turn hands to the next one: the time of the latest backpressure refusal
# on the connection so far (time.monotonic()), or None if there was none.
Handoff = float | None


class Turn:
    __slots__ = ("_prev", "_refused_at", "arrived", "mine")

    def __init__(self, prev: asyncio.Future[Handoff] | None) -> None:
        self._prev = prev
        self._refused_at: Handoff = None
        self.arrived = time.monotonic()
        self.mine: asyncio.Future[Handoff] = asyncio.get_running_loop().create_future()

    async def wait(self) -> None:
        """Wait until every earlier request on this connection has had its turn."""
        if self._prev is not None and not self._prev.done():
            await asyncio.shield(self._prev)

    def refused_behind(self) -> bool:
        """An earlier request was refused for backpressure after this one arrived (call after :meth:`wait`)."""
        before = self._before()
        return before is not None and before >= self.arrived

    def _before(self) -> Handoff:
        prev = self._prev
        return prev.result() if prev is not None and prev.done() and not prev.cancelled() else None

    def refuse(self) -> None:
        """This request was refused for backpressure: requests already behind it are refused too."""
        self._refused_at = time.monotonic()

    def release(self) -> None:
        """Let the next request go, once the earlier ones have (idempotent)."""
        if self.mine.done():
            return
        if self._prev is None or self._prev.done():
            self.mine.set_result(self._handoff())
        else:
            self._prev.add_done_callback(self._chain)

    def _handoff(self) -> Handoff:
        stamps = [t for t in (self._before(), self._refused_at) if t is not None]
        return max(stamps) if stamps else None

    def _chain(self, _prev: asyncio.Future[Handoff]) -> None:
        if not self.mine.done():
            self.mine.set_result(self._handoff())


CURRENT_TURN: ContextVar[Turn | None] = ContextVar("floe_turn", default=None)
