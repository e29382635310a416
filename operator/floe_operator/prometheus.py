"""Load as Prometheus sees it: bytes/s per partition and per broker, as typed snapshots.

``prometheus-api-client`` is synchronous (requests), so every query runs in a
worker thread (``asyncio.to_thread``) and never blocks kopf's event loop.

The brokers export ``floe_partition_bytes_in_total`` / ``..._out_total``
(labels ``topic``, ``partition``) and ``floe_bytes_in_total``; Prometheus adds
``instance`` (the scrape target, ``<pod IP>:<admin port>``). Partition load is
summed over instances, because a partition that just changed leader has a
short tail on its old broker too.

Failures of any kind (connection refused, timeouts, a PromQL error, a body
that is not what Prometheus answers) become :class:`PrometheusUnavailable`
with one sentence saying what went wrong and where; the loop shows it in the
``Rebalancing`` condition instead of crashing.
"""

from __future__ import annotations

import asyncio
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

PARTITION_IN = "floe_partition_bytes_in_total"
PARTITION_OUT = "floe_partition_bytes_out_total"
BROKER_IN = "floe_bytes_in_total"


class PrometheusUnavailable(Exception):
    """Prometheus could not answer; ``str()`` is a message for a person."""


@dataclass(frozen=True)
class LoadSnapshot:
    """Rates over one window. Keys: ``(topic, partition)`` and the scrape ``instance``."""

    partitions: Mapping[tuple[str, int], float] = field(default_factory=dict)
    broker_bytes_in: Mapping[str, float] = field(default_factory=dict)


def partition_query(metric: str, *, window: str, selector: str = "") -> str:
    return f"sum by (topic, partition) (rate({metric}{{{selector}}}[{window}]))"


def broker_query(*, window: str, selector: str = "") -> str:
    return f"sum by (instance) (rate({BROKER_IN}{{{selector}}}[{window}]))"


def _value(sample: Mapping[str, Any]) -> float:
    value = float(sample["value"][1])
    return value if math.isfinite(value) and value > 0 else 0.0


def parse_partitions(*answers: list[dict[str, Any]]) -> dict[tuple[str, int], float]:
    """Add up instant-vector answers keyed by (topic, partition); malformed labels are skipped."""
    loads: dict[tuple[str, int], float] = {}
    for answer in answers:
        for sample in answer:
            labels = sample.get("metric") or {}
            try:
                key = (str(labels["topic"]), int(labels["partition"]))
            except (KeyError, ValueError):
                continue
            loads[key] = loads.get(key, 0.0) + _value(sample)
    return loads


class PrometheusReader:
    """Queries one Prometheus; ``client`` is for tests (None = a real PrometheusConnect)."""

    def __init__(self, url: str, *, timeout_seconds: float = 10.0, client: Any = None) -> None:
        self.url = url
        self.timeout_seconds = timeout_seconds
        if client is None:
            from prometheus_api_client import PrometheusConnect
            from urllib3.util.retry import Retry

            # The client's default retries back off for seconds; the loop runs
            # again in one interval anyway, so retry once, briefly.
            retry = Retry(total=1, backoff_factor=0.2, status_forcelist=[429, 502, 503, 504])
            client = PrometheusConnect(url=url, disable_ssl=False, timeout=timeout_seconds, retry=retry)
        self._client = client

    def _query(self, query: str) -> list[dict[str, Any]]:
        try:
            answer = self._client.custom_query(query=query)
        except Exception as exc:  # requests, urllib3 and the client's own errors
            raise PrometheusUnavailable(f"Prometheus at {self.url} did not answer: {_reason(exc)}") from exc
        if not isinstance(answer, list):
            raise PrometheusUnavailable(f"Prometheus at {self.url} answered {type(answer).__name__}, not a vector")
        return answer

    def _load(self, window: str, selector: str) -> LoadSnapshot:
        ins = self._query(partition_query(PARTITION_IN, window=window, selector=selector))
        outs = self._query(partition_query(PARTITION_OUT, window=window, selector=selector))
        brokers = self._query(broker_query(window=window, selector=selector))
        per_broker = {str((s.get("metric") or {}).get("instance", "")): _value(s) for s in brokers}
        return LoadSnapshot(partitions=parse_partitions(ins, outs), broker_bytes_in=per_broker)

    async def load(self, *, window: str, selector: str = "") -> LoadSnapshot:
        """Per-partition bytes/s (in + out) and per-broker bytes in/s over ``window``."""
        return await asyncio.to_thread(self._load, window, selector)


def _reason(exc: BaseException) -> str:
    """A short reason that is the same for the same failure every round, so the
    status (and the condition) are not rewritten for nothing."""
    text = str(exc).strip() or type(exc).__name__
    errno = re.search(r"\[Errno -?\d+\] ([^'\")\]]+)", text)
    if errno:
        return f"cannot connect ({errno.group(1).strip()})"
    if "timed out" in text.lower():
        return "timed out"
    text = re.sub(r" object at 0x[0-9a-f]+", "", text)
    return text if len(text) <= 300 else text[:297] + "..."
