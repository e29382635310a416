"""How the object store is doing right now, from the outcomes of the requests made to it.

A brownout (some requests failing or slow) and an outage (every request
failing) look the same to a single caller, which just retries with backoff;
operators and probes need to tell them apart. Every request outcome is noted
here (by :class:`~.instrumented.InstrumentedStore`), and :meth:`StoreHealth.state`
says:

* ``unavailable``: nothing has succeeded for :data:`UNAVAILABLE_AFTER_S` while
  requests kept failing, or no write has (a full disk under ``file://`` still
  answers reads): writes wait, producers get no acknowledgement;
* ``degraded``: some request failed in the last :data:`DEGRADED_FOR_S`, but
  requests also succeed (retries absorb it; latency grows);
* ``ok`` otherwise.

The state is exported as ``floe_objectstore_state{state}`` (1 for the current
one) and reported by ``/readyz``.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from typing import Any

from .. import metrics

UNAVAILABLE_AFTER_S = 1.0
DEGRADED_FOR_S = 10.0
STATES = ("ok", "degraded", "unavailable")


class StoreHealth:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._last_failure = 0.0
        self._failing_since: float | None = None  # first failure after the last success
        self._writes_failing_since: float | None = None  # first failed write after the last written one
        for s in STATES:  # evaluated at scrape time: "unavailable" is a matter of elapsed time
            metrics.STORE_STATE.labels(s).set_function(functools.partial(self._is, s))

    def _is(self, state: str) -> float:
        return 1.0 if self.state() == state else 0.0

    def succeeded(self, write: bool = False) -> None:
        self._failing_since = None
        if write:
            self._writes_failing_since = None

    def failed(self, write: bool = False) -> None:
        now = self._clock()
        self._last_failure = now
        if self._failing_since is None:
            self._failing_since = now
        if write and self._writes_failing_since is None:
            self._writes_failing_since = now

    def state(self) -> str:
        now = self._clock()
        if any(since is not None and now - since >= UNAVAILABLE_AFTER_S
               for since in (self._failing_since, self._writes_failing_since)):
            return "unavailable"
        if self._last_failure and now - self._last_failure < DEGRADED_FOR_S:
            return "degraded"
        return "ok"


def state_of(store: Any) -> str:
    """The state of ``store`` when it keeps a :class:`StoreHealth` (the instrumented store does), else ``ok``."""
    health = getattr(store, "health", None)
    return health.state() if isinstance(health, StoreHealth) else "ok"
