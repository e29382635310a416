"""A connection's mute: the quota throttle the connection honours before reading the next request.

Kafka answers a throttled request at once, with ``throttle_time_ms``, and then
stops reading from the client's connection for that long, so a client that
ignores the hint is held back anyway. The connection owns one
:class:`Mute` and publishes it in :data:`MUTE` for the requests it starts;
the dispatcher extends it when a request goes over its quota, and the
connection awaits :meth:`Mute.wait` before reading on.
"""

from __future__ import annotations

import asyncio
import time
from contextvars import ContextVar


class Mute:
    def __init__(self) -> None:
        self.until = 0.0  # time.monotonic() before which no further request is read

    def extend(self, ms: int) -> None:
        if ms > 0:
            self.until = max(self.until, time.monotonic() + ms / 1000)

    async def wait(self) -> None:
        delay = self.until - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)


# The mute of the connection the current request came in on (None outside a connection).
MUTE: ContextVar[Mute | None] = ContextVar("floe_mute", default=None)
