"""Load as Prometheus sees it, as a :class:`~floe_operator.balancing.load.LoadSnapshot`.

``prometheus-api-client`` is synchronous (requests), so every query runs in a
worker thread (``asyncio.to_thread``) and never blocks the caller's event loop
(kopf's, or the local autoscaler's).

The brokers export ``floe_partition_bytes_in_total`` / ``..._out_total``
(labels ``topic``, ``partition``) and ``floe_bytes_in_total``; Prometheus adds
``instance`` (the scrape target, ``<pod IP>:<admin port>``). Partition rates
are summed over instances, because a partition that just changed leader has a
short tail on its old broker too.

Failures of any kind (connection refused, timeouts, a PromQL error, a body
that is not what Prometheus answers) become
:class:`~floe_operator.balancing.load.LoadUnavailable` with one sentence
saying what went wrong and where; the loops show it instead of crashing.
"""

from __future__ import annotations

import asyncio
import math
import re
from collections.abc import Mapping
from typing import Any

from floe_operator.balancing.load import (
    BROKER_IN,
    PARTITION_IN,
    PARTITION_OUT,
    LoadSnapshot,
    LoadUnavailable,
    PartitionRates,
    partition_load,
)


def partition_query(metric: str, *, window: str, selector: str = "") -> str:
    return f"sum by (topic, partition) (rate({metric}{{{selector}}}[{window}]))"


def broker_query(*, window: str, selector: str = "") -> str:
    return f"sum by (instance) (rate({BROKER_IN}{{{selector}}}[{window}]))"


def _value(sample: Mapping[str, Any]) -> float:
    value = float(sample["value"][1])
    return value if math.isfinite(value) and value > 0 else 0.0


def parse_partitions(answer: list[dict[str, Any]]) -> PartitionRates:
    """An instant-vector answer keyed by (topic, partition); malformed labels are skipped."""
    rates: PartitionRates = {}
    for sample in answer:
        labels = sample.get("metric") or {}
        try:
            key = (str(labels["topic"]), int(labels["partition"]))
        except (KeyError, ValueError):
            continue
        rates[key] = rates.get(key, 0.0) + _value(sample)
    return rates


class PrometheusReader:
    """Queries one Prometheus over fixed windows (PromQL durations).

    ``rate_window`` is behind the bytes-in rates (what an HPA reacts to),
    ``balance_window`` (default: the same) behind the partitions' load (what
    the balancer weighs: a longer window keeps a partition that paused for a
    move from looking light). ``client`` is for tests (None = a real
    PrometheusConnect).
    """

    def __init__(
        self,
        url: str,
        *,
        rate_window: str = "1m",
        balance_window: str | None = None,
        selector: str = "",
        timeout_seconds: float = 10.0,
        client: Any = None,
    ) -> None:
        self.url = url
        self.rate_window = rate_window
        self.balance_window = balance_window or rate_window
        self.selector = selector
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
            raise LoadUnavailable(f"Prometheus at {self.url} did not answer: {_reason(exc)}") from exc
        if not isinstance(answer, list):
            raise LoadUnavailable(f"Prometheus at {self.url} answered {type(answer).__name__}, not a vector")
        return answer

    def _load(self) -> LoadSnapshot:
        window, selector = self.balance_window, self.selector
        ins = parse_partitions(self._query(partition_query(PARTITION_IN, window=window, selector=selector)))
        outs = parse_partitions(self._query(partition_query(PARTITION_OUT, window=window, selector=selector)))
        brokers = self._query(broker_query(window=self.rate_window, selector=selector))
        per_broker = {str((s.get("metric") or {}).get("instance", "")): _value(s) for s in brokers}
        return LoadSnapshot(
            partitions=partition_load(ins, outs),
            broker_bytes_in=per_broker,
            bytes_in=sum(per_broker.values()) if brokers else None,
        )

    async def load(self) -> LoadSnapshot:
        return await asyncio.to_thread(self._load)


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
