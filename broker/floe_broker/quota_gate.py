"""Client quotas at the dispatcher: count produce and fetch bytes, answer throttle_time_ms, mute.

Kafka's enforcement (``security.quotas`` holds the rules): a produce request
counts its size before it is handled, a fetch its response's size once
encoded. A request that takes its (user, client id) over the quota is
answered at once with ``throttle_time_ms``, and the connection's
:class:`~.security.throttle.Mute` is extended by as much, so the connection
reads nothing more until the throttle has passed. With no quota in the
cluster metadata nothing is counted at all.
"""

from __future__ import annotations

import dataclasses
import datetime
import time
from typing import Any

from . import metrics
from .handlers.context import BrokerContext
from .protocol import codec
from .security.principal import PRINCIPAL
from .security.quotas import FETCH_RATE, PRODUCE_RATE, QuotaTracker
from .security.throttle import MUTE


class QuotaGate:
    def __init__(self, ctx: BrokerContext) -> None:
        self.ctx = ctx
        self._rates: QuotaTracker | None = None  # made on first use (a table-only Dispatcher has no config)

    def produce(self, request: codec.Request, size: int, api: str) -> int:
        """Count a produce request of ``size`` bytes; the throttle (ms) its response must carry."""
        return self._record(request, PRODUCE_RATE, size, api)

    def fetch_response(self, request: codec.Request, body: Any, api: str) -> codec.Frame:
        """The encoded fetch response, its size counted against the fetch quota (and throttled if over)."""
        frame = codec.encode_response(request.api_key, request.api_version, request.correlation_id, body)
        ms = self._record(request, FETCH_RATE, sum(len(part) for part in frame), api)
        if ms:
            frame = codec.encode_response(request.api_key, request.api_version, request.correlation_id,
                                          with_throttle(body, ms))
        return frame

    def _record(self, request: codec.Request, kind: str, size: int, api: str) -> int:
        quotas = self.ctx.state().quotas
        if not quotas:
            return 0
        if self._rates is None:
            c = self.ctx.config
            self._rates = QuotaTracker(window_s=c.quota_window_s, windows=c.quota_windows)
        ms = self._rates.record(quotas, PRINCIPAL.get().name, request.client_id or "", kind, size, time.monotonic())
        if ms:
            mute = MUTE.get()
            if mute is not None:
                mute.extend(ms)
            metrics.QUOTA_THROTTLED.labels(api).inc()
        return ms


def with_throttle(body: Any, ms: int) -> Any:
    """``body`` telling the client it was throttled for ``ms``."""
    current = getattr(body, "throttle_time", None)
    if current is None:
        return body
    value = datetime.timedelta(milliseconds=ms) if isinstance(current, datetime.timedelta) else ms
    return dataclasses.replace(body, throttle_time=value)
