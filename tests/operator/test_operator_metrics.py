"""The operator's own metrics (``floe_operator.metrics``): what the chart's rebalance alerts read.

Checked as Prometheus would see them: the text a scrape of the operator's
``/metrics`` returns, parsed with prometheus_client's parser.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import urllib.request
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from floe_api import public as schema
from floe_operator import metrics
from floe_operator.balancing import admin as admin_
from floe_operator.planner import Move
from floe_operator.reconcile import rebalance


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def served() -> str:
    """The operator's metrics server, as the chart starts it (``FLOE_OPERATOR_METRICS_ADDRESS``)."""
    port = free_port()
    assert metrics.start_server(f"127.0.0.1:{port}") == ("127.0.0.1", port)
    return f"http://127.0.0.1:{port}/metrics"


def scrape(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    with urllib.request.urlopen(url, timeout=10) as resp:
        text = resp.read().decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def sample(url: str, name: str, **labels: str) -> float | None:
    return scrape(url).get((name, tuple(sorted(labels.items()))))


def test_a_started_loop_exports_zeros_for_every_alerted_series(served: str) -> None:
    metrics.started("team-a", "zeros")
    cluster = {"streamcluster_namespace": "team-a", "streamcluster": "zeros"}
    assert sample(served, "floe_operator_rebalance_plans_total", **cluster, result="Failed") == 0
    assert sample(served, "floe_operator_rebalance_plans_total", **cluster, result="Succeeded") == 0
    for state in ("Balanced", "Skewed", "MetricsUnavailable", "BrokersUnavailable"):
        assert sample(served, "floe_operator_rebalance_state", **cluster, state=state) == 0


def test_a_round_sets_its_state_and_skew_and_a_stopped_loop_leaves_no_series(served: str) -> None:
    cluster = {"streamcluster_namespace": "team-a", "streamcluster": "skewed"}
    metrics.started("team-a", "skewed")
    metrics.observed("team-a", "skewed", state="Skewed", skew_percent=42.5, max_skew_percent=20)
    assert sample(served, "floe_operator_rebalance_state", **cluster, state="Skewed") == 1
    assert sample(served, "floe_operator_rebalance_state", **cluster, state="Balanced") == 0
    assert sample(served, "floe_operator_rebalance_skew_percent", **cluster) == 42.5
    assert sample(served, "floe_operator_rebalance_max_skew_percent", **cluster) == 20
    metrics.stopped("team-a", "skewed")
    assert not [key for key in scrape(served) if ("streamcluster", "skewed") in key[1]]


class RefusingAdmin:
    """A brokers' admin API that fails one move of every plan."""

    async def reassign(self, moves: Any, *, timeout_seconds: float = 120.0) -> schema.ReassignReply:
        topic, partition, to = moves[0]
        return schema.ReassignReply(results=[schema.MoveResult(topic=topic, partition=partition, to=to,
                                                               error="NOT_CONTROLLER")])  # fmt: skip


class UnreachableAdmin:
    async def reassign(self, moves: Any, *, timeout_seconds: float = 120.0) -> schema.ReassignReply:
        raise admin_.BrokerAdminError("connection refused")


@pytest.mark.parametrize("admin", [RefusingAdmin(), UnreachableAdmin()], ids=["moves-refused", "unreachable"])
async def test_a_failed_plan_is_counted_as_failed(served: str, admin: Any) -> None:
    name = f"failing-{type(admin).__name__.lower()}"
    cluster = {"streamcluster_namespace": "team-b", "streamcluster": name}
    metrics.started("team-b", name)
    loop = rebalance.Rebalancer(namespace="team-b", name=name, kube=None, config=None,  # type: ignore[arg-type]
                                logger=logging.getLogger("test"))  # fmt: skip
    loop._start(admin, [Move("t", 0, source=1, target=2, load=1.0)], reason="Skew", at="2026-01-01T00:00:00Z")
    assert loop.task is not None
    await asyncio.wait_for(loop.task, 30)
    assert loop.last_plan is not None and loop.last_plan.result == "Failed"
    assert sample(served, "floe_operator_rebalance_plans_total", **cluster, result="Failed") == 1
    assert sample(served, "floe_operator_rebalance_plans_total", **cluster, result="Succeeded") == 0
    assert sample(served, "floe_operator_rebalance_moves_total", **cluster) == 1


@pytest.mark.parametrize("address", ["8081", "host:", "0.0.0.0:http", "0.0.0.0:70000"])
def test_a_bad_address_is_refused_with_the_setting_named(address: str) -> None:
    with pytest.raises(ValueError, match="FLOE_OPERATOR_METRICS_ADDRESS.*HOST:PORT"):
        metrics.start_server(address)


def test_no_address_serves_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(metrics.ADDRESS_ENV, raising=False)
    assert metrics.start_server() is None
