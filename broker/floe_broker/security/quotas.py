"""Client quotas: which byte rate applies to a request, and how long to throttle it.

Kafka's model. A quota is set on an *entity*: a user, a client id, a user and
client id together, or the default of either (a ``None`` name). For a request
from (user, client id) the most specific entity that has the quota wins, in
Kafka's order (user+client, user+default client, user, default user+client,
default user+default client, default user, client, default client).

The rate is Kafka's too: bytes per second over ``windows`` sample windows of
``window_s`` seconds, the span counted as at least ``windows - 1`` whole
windows so a client's first second is not mistaken for a burst. A request
that takes the rate over the quota is answered at once with
``throttle_time_ms = (rate - quota) / quota * span``; the broker then stops
reading from that connection for as long (:mod:`.throttle`), so a tenant over
its quota slows down to it while other connections are served as before.

Pure: no I/O, the clock is an argument.
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

USER, CLIENT_ID = "user", "client-id"
ENTITY_TYPES = (USER, CLIENT_ID)
PRODUCE_RATE, FETCH_RATE = "producer_byte_rate", "consumer_byte_rate"
QUOTA_KEYS = (PRODUCE_RATE, FETCH_RATE)

Entity = Iterable[tuple[str, str | None]]  # (entity type, name or None for the default)


def entity_key(entity: Entity) -> str:
    """The canonical key of an entity in cluster metadata (order of its parts does not matter)."""
    return json.dumps(sorted([t, n] for t, n in entity))


def parse_entity_key(key: str) -> list[tuple[str, str | None]]:
    return [(t, n) for t, n in json.loads(key)]


def resolution_order(user: str, client_id: str) -> list[tuple[str, tuple[str, str]]]:
    """(entity key, who shares the rate) for (user, client id), most specific first (Kafka's precedence).

    The second part is Kafka's metric tags: a user quota is shared by all of
    that user's client ids, a default applies to each user or client id on
    its own.
    """
    both, user_only, client_only = (user, client_id), (user, ""), ("", client_id)
    return [
        (entity_key([(USER, user), (CLIENT_ID, client_id)]), both),
        (entity_key([(USER, user), (CLIENT_ID, None)]), both),
        (entity_key([(USER, user)]), user_only),
        (entity_key([(USER, None), (CLIENT_ID, client_id)]), both),
        (entity_key([(USER, None), (CLIENT_ID, None)]), both),
        (entity_key([(USER, None)]), user_only),
        (entity_key([(CLIENT_ID, client_id)]), client_only),
        (entity_key([(CLIENT_ID, None)]), client_only),
    ]


def quota_for(quotas: Mapping[str, Mapping[str, float]], user: str, client_id: str,
              kind: str) -> tuple[float, tuple[str, str]] | None:
    """The quota ``kind`` (bytes/s) for (user, client id) and who shares it, or None when unlimited."""
    for key, sharing in resolution_order(user, client_id):
        value = quotas.get(key, {}).get(kind)
        if value is not None:
            return value, sharing
    return None


@dataclass
class Rate:
    """Bytes per second over a sliding set of sample windows (Kafka's ``Rate`` with ``SampledStat``)."""

    window_s: float
    windows: int
    samples: deque[list[float]] = field(default_factory=deque)  # [window start, bytes]

    def record(self, size: float, now: float) -> None:
        if not self.samples or now - self.samples[-1][0] >= self.window_s:
            self.samples.append([now, 0.0])
        self.samples[-1][1] += size
        while len(self.samples) > self.windows:
            self.samples.popleft()

    def span(self, now: float) -> float:
        """Seconds the rate is measured over: at least ``windows - 1`` whole windows."""
        elapsed = now - self.samples[0][0] if self.samples else 0.0
        return max(elapsed, (self.windows - 1) * self.window_s, self.window_s)

    def value(self, now: float) -> float:
        self._expire(now)
        return sum(b for _, b in self.samples) / self.span(now)

    def _expire(self, now: float) -> None:
        horizon = self.windows * self.window_s
        while self.samples and now - self.samples[0][0] >= horizon:
            self.samples.popleft()


def throttle_ms(rate: float, quota: float, span_s: float) -> int:
    """How long to hold a client back so its rate falls to the quota (0 when within it)."""
    if quota <= 0:
        return int(span_s * 1000)
    if rate <= quota:
        return 0
    return int((rate - quota) / quota * span_s * 1000)


class QuotaTracker:
    """The byte rates of every (user, client id, kind) seen, and the throttle each request earns."""

    MAX_TRACKED = 100_000  # bound memory against a client cycling through client ids

    def __init__(self, *, window_s: float = 1.0, windows: int = 11) -> None:
        self.window_s = window_s
        self.windows = windows
        self._rates: dict[tuple[str, str, str], Rate] = {}

    def record(self, quotas: Mapping[str, Mapping[str, float]], user: str, client_id: str, kind: str,
               size: float, now: float) -> int:
        """Count ``size`` bytes against (user, client id); the throttle in ms this request earns."""
        found = quota_for(quotas, user, client_id, kind)
        if found is None:
            return 0
        quota, (tag_user, tag_client) = found
        key = (tag_user, tag_client, kind)
        rate = self._rates.get(key)
        if rate is None:
            if len(self._rates) >= self.MAX_TRACKED:
                self._rates.clear()
            rate = self._rates[key] = Rate(self.window_s, self.windows)
        rate.record(size, now)
        return throttle_ms(rate.value(now), quota, rate.span(now))
