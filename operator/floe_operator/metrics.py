"""Prometheus metrics about the operator's own rebalance loop, all named ``floe_operator_*``.

The brokers' metrics say how each broker is doing; only the operator knows
whether the rebalance loop it runs per StreamCluster keeps the cluster even,
and whether its plans succeed. Those two facts are what the chart's alerts
"cluster unbalanced for long" and "rebalance failing" need, so they are
exported here, labelled by the StreamCluster (``streamcluster_namespace``,
``streamcluster``).

Every labelled series a rebalancer can produce is created when the loop
starts (plans at 0, each state at 0), so an alert on "a Failed plan in the
last 15 minutes" has a series to evaluate from the first scrape on, not only
after the first failure.

Served by ``start_server`` on ``FLOE_OPERATOR_METRICS_ADDRESS``
(``HOST:PORT``; empty, the default, serves nothing), which the chart sets.
"""

from __future__ import annotations

import contextlib
import os

from prometheus_client import Counter, Gauge, start_http_server

from floe_operator import spec as spec_

ADDRESS_ENV = "FLOE_OPERATOR_METRICS_ADDRESS"

STATES: tuple[str, ...] = spec_.RebalanceState.__args__  # type: ignore[attr-defined]
PLAN_RESULTS = ("Succeeded", "Failed")
# Not ``namespace``: Prometheus gives every series of the operator's target the operator pod's own
# namespace label, which would rename a ``namespace`` label of ours to ``exported_namespace``.
LABELS = ["streamcluster_namespace", "streamcluster"]

REBALANCE_STATE = Gauge(
    "floe_operator_rebalance_state",
    "1 for the rebalance loop's current state of a StreamCluster (status.rebalance.state)",
    [*LABELS, "state"],
)
REBALANCE_SKEW = Gauge(
    "floe_operator_rebalance_skew_percent",
    "Largest distance of a broker's load from the mean, in percent, as the rebalance loop measured it",
    LABELS,
)
REBALANCE_MAX_SKEW = Gauge(
    "floe_operator_rebalance_max_skew_percent",
    "spec.rebalance.maxSkewPercent: the skew above which the loop moves partition leaders",
    LABELS,
)
REBALANCE_PLANS = Counter(
    "floe_operator_rebalance_plans_total",
    "Rebalance plans that ended, by result (Failed: the admin API refused or some moves failed)",
    [*LABELS, "result"],
)
REBALANCE_MOVES = Counter(
    "floe_operator_rebalance_moves_total",
    "Partition-leader moves the rebalance loop asked for",
    LABELS,
)


def started(namespace: str, name: str) -> None:
    """Create every series of one StreamCluster's loop, so alerts see zeros rather than nothing."""
    for result in PLAN_RESULTS:
        REBALANCE_PLANS.labels(namespace, name, result)
    REBALANCE_MOVES.labels(namespace, name)
    for state in STATES:
        REBALANCE_STATE.labels(namespace, name, state).set(0)


def observed(namespace: str, name: str, *, state: str, skew_percent: float | None, max_skew_percent: float) -> None:
    """One round's verdict: the state, and the skew when load was measured."""
    for known in STATES:
        REBALANCE_STATE.labels(namespace, name, known).set(1 if known == state else 0)
    REBALANCE_MAX_SKEW.labels(namespace, name).set(max_skew_percent)
    if skew_percent is not None:
        REBALANCE_SKEW.labels(namespace, name).set(skew_percent)


def plan_started(namespace: str, name: str, moves: int) -> None:
    REBALANCE_MOVES.labels(namespace, name).inc(moves)


def plan_ended(namespace: str, name: str, result: str) -> None:
    REBALANCE_PLANS.labels(namespace, name, result).inc()


def stopped(namespace: str, name: str) -> None:
    """The loop ended (rebalance disabled, cluster deleted): its series go with it."""
    for labelled, values in ((REBALANCE_STATE, STATES), (REBALANCE_PLANS, PLAN_RESULTS)):
        for value in values:
            with contextlib.suppress(KeyError):
                labelled.remove(namespace, name, value)
    for single in (REBALANCE_SKEW, REBALANCE_MAX_SKEW, REBALANCE_MOVES):
        with contextlib.suppress(KeyError):
            single.remove(namespace, name)


def parse_address(address: str) -> tuple[str, int]:
    """``0.0.0.0:8081`` -> ("0.0.0.0", 8081); a clear error for anything else."""
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{ADDRESS_ENV}={address!r}: expected HOST:PORT, e.g. 0.0.0.0:8081")
    return host or "0.0.0.0", int(port)


def start_server(address: str | None = None) -> tuple[str, int] | None:
    """Serve ``/metrics`` on ``address`` (default: the environment); None when it is empty."""
    address = os.environ.get(ADDRESS_ENV, "") if address is None else address
    if not address.strip():
        return None
    host, port = parse_address(address.strip())
    start_http_server(port, addr=host)
    return host, port
