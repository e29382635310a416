"""Load without a Prometheus: scrape the brokers' ``/metrics`` and difference the counters.

The local autoscaler uses this where no prometheus binary is installed. The
caller samples (:meth:`MetricsScraper.sample`) more often than it decides, so
a rate window holds several points; :meth:`MetricsScraper.load` then answers
the same snapshot the PromQL reader does.
"""

from __future__ import annotations

import asyncio
import time
import urllib.request
from collections import deque
from collections.abc import Iterable

from floe_operator.balancing.load import (
    BROKER_IN,
    PARTITION_IN,
    PARTITION_OUT,
    LoadSnapshot,
    PartitionRates,
    partition_load,
)

# (metric, topic, partition); the broker total has empty labels.
SeriesKey = tuple[str, str, str]
Points = deque[tuple[float, float]]


def counter_rate(points: Iterable[tuple[float, float]], *, now: float, window: float) -> float:
    """Per-second increase over the points in the last ``window`` seconds; 0 once stale."""
    pts = [(t, v) for t, v in points if t >= now - window]
    if len(pts) < 2 or now - pts[-1][0] > window:
        return 0.0
    increase = 0.0
    for (_, a), (_, b) in zip(pts, pts[1:], strict=False):
        increase += b - a if b >= a else b  # a counter reset restarts from 0
    dt = pts[-1][0] - pts[0][0]
    return increase / dt if dt > 0 else 0.0


def _fetch(http: str, timeout: float) -> str | None:
    try:
        with urllib.request.urlopen(f"http://{http}/metrics", timeout=timeout) as resp:
            return str(resp.read().decode())
    except OSError:
        return None  # a broker that is gone or busy starting: its series go stale


class MetricsScraper:
    """Counter histories per (broker, series), rates over ``rate_window`` and ``balance_window`` seconds."""

    def __init__(self, rate_window: float, balance_window: float | None = None, *, timeout: float = 2.0) -> None:
        self.rate_window = rate_window
        self.balance_window = balance_window or rate_window
        self.timeout = timeout
        self._targets: list[str] = []
        self._hist: dict[tuple[str, SeriesKey], Points] = {}

    def targets(self, https: list[str]) -> None:
        self._targets = list(https)

    def close(self) -> None:
        """Nothing to release (it holds no connection); here so it stands in for a Prometheus process."""

    def _sample(self) -> None:
        from prometheus_client.parser import text_string_to_metric_families

        now = time.monotonic()
        for http in self._targets:
            text = _fetch(http, self.timeout)
            if text is None:
                continue
            for fam in text_string_to_metric_families(text):
                for s in fam.samples:
                    if s.name == BROKER_IN:
                        key: SeriesKey = (BROKER_IN, "", "")
                    elif s.name in (PARTITION_IN, PARTITION_OUT):
                        key = (s.name, s.labels["topic"], s.labels["partition"])
                    else:
                        continue
                    self._hist.setdefault((http, key), deque()).append((now, s.value))
        cutoff = now - max(self.rate_window, self.balance_window)
        for q in self._hist.values():
            while len(q) > 2 and q[1][0] <= cutoff:
                q.popleft()

    async def sample(self) -> None:
        """Read every target's counters once (in a worker thread: the reads block)."""
        await asyncio.to_thread(self._sample)

    async def load(self) -> LoadSnapshot:
        now = time.monotonic()
        if not any(len(q) >= 2 for q in self._hist.values()):
            return LoadSnapshot()  # nothing measured yet
        per_broker: dict[str, float] = {}
        ins: PartitionRates = {}
        outs: PartitionRates = {}
        for (http, key), q in self._hist.items():
            if key[0] == BROKER_IN:
                per_broker[http] = per_broker.get(http, 0.0) + counter_rate(q, now=now, window=self.rate_window)
            else:
                pk = (key[1], int(key[2]))
                rates = ins if key[0] == PARTITION_IN else outs
                rates[pk] = rates.get(pk, 0.0) + counter_rate(q, now=now, window=self.balance_window)
        return LoadSnapshot(
            partitions=partition_load(ins, outs), broker_bytes_in=per_broker, bytes_in=sum(per_broker.values())
        )
