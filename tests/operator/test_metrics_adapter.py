"""The metrics adapter answers the HPA's two metrics APIs from Prometheus' answers.

The server runs for real (aiohttp on a loopback port) against a Prometheus
stand-in that records the PromQL it is asked and answers Prometheus' JSON,
and a pod lister standing in for the API server.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from floe_operator import kube as kube_
from floe_operator.metrics_adapter import answers, server

NS = "streaming"


def pod(name: str, container: str = "broker", *, deleting: bool = False) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": NS}
    if deleting:
        meta["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    return {"metadata": meta, "spec": {"containers": [{"name": container}, {"name": "sidecar"}]}}


class Pods:
    """The API server's pod list, as the adapter's KubeClient sees it."""

    def __init__(self, pods: list[dict[str, Any]], *, fail: bool = False) -> None:
        self.pods = pods
        self.fail = fail
        self.queries: list[Mapping[str, str]] = []

    async def request(self, method: str, path: str, *, query: Mapping[str, str] | None = None) -> dict[str, Any]:
        assert (method, path) == ("GET", f"/api/v1/namespaces/{NS}/pods")
        self.queries.append(dict(query or {}))
        if self.fail:
            raise kube_.KubeError(403, "Forbidden", "pods is forbidden")
        wanted = (query or {}).get("fieldSelector", "").removeprefix("metadata.name=")
        return {"items": [p for p in self.pods if not wanted or p["metadata"]["name"] == wanted]}


@pytest.fixture
async def prometheus() -> AsyncIterator[tuple[str, list[str], dict[str, list[dict[str, Any]]]]]:
    """A Prometheus HTTP API stand-in: answers ``results[metric]`` for a query naming that metric."""
    asked: list[str] = []
    results: dict[str, list[dict[str, Any]]] = {}

    async def query(request: web.Request) -> web.Response:
        promql = request.query["query"]
        asked.append(promql)
        if "bad" in results:
            return web.json_response({"status": "error", "errorType": "bad_data", "error": "parse error"}, status=400)
        result = next((r for metric, r in results.items() if metric in promql), [])
        return web.json_response({"status": "success", "data": {"resultType": "vector", "result": result}})

    app = web.Application()
    app.router.add_get("/api/v1/query", query)
    async with TestServer(app) as srv:
        yield str(srv.make_url("")).rstrip("/"), asked, results


async def call(adapter: server.Adapter, path: str) -> tuple[int, dict[str, Any]]:
    async with TestServer(adapter.app()) as srv, aiohttp.ClientSession() as session:
        async with session.get(srv.make_url(path)) as resp:
            return resp.status, await resp.json()


def sample(pod_name: str, value: str) -> dict[str, Any]:
    return {"metric": {"pod": pod_name}, "value": [1700000000.0, value]}


async def test_custom_metric_is_the_rate_per_pod_the_selector_matches(prometheus: Any) -> None:
    url, asked, results = prometheus
    results["floe_bytes_in_total"] = [sample("demo-broker-a", "204800.5"), sample("demo-broker-b", "NaN")]
    pods = Pods([pod("demo-broker-a"), pod("demo-broker-b"), pod("demo-broker-c", deleting=True)])
    adapter = server.Adapter(pods, server.Prometheus(url), window="30s")  # type: ignore[arg-type]
    status, body = await call(
        adapter, f"/apis/custom.metrics.k8s.io/v1beta2/namespaces/{NS}/pods/*/floe_broker_bytes_in_per_second"
        "?labelSelector=app.kubernetes.io/instance%3Ddemo",
    )  # fmt: skip
    await adapter.prometheus.close()
    assert status == 200
    assert pods.queries == [{"labelSelector": "app.kubernetes.io/instance=demo"}]
    assert asked == ['sum by (pod) (rate(floe_bytes_in_total{namespace="streaming",'
                     'pod=~"demo-broker-a|demo-broker-b"}[30s]))']  # fmt: skip
    assert body["kind"] == "MetricValueList"
    assert [(i["describedObject"]["name"], i["value"], i["windowSeconds"]) for i in body["items"]] == [
        ("demo-broker-a", "204800500m", 30),
        ("demo-broker-b", "0m", 30),
    ]


async def test_pod_metrics_report_cpu_and_memory_under_the_first_container(prometheus: Any) -> None:
    url, _, results = prometheus
    results["process_cpu_seconds_total"] = [sample("demo-broker-a", "0.25")]
    results["process_resident_memory_bytes"] = [sample("demo-broker-a", "104857600")]
    adapter = server.Adapter(Pods([pod("demo-broker-a"), pod("demo-broker-new")]), server.Prometheus(url))  # type: ignore[arg-type]
    status, body = await call(adapter, f"/apis/metrics.k8s.io/v1beta1/namespaces/{NS}/pods")
    status_one, one = await call(adapter, f"/apis/metrics.k8s.io/v1beta1/namespaces/{NS}/pods/demo-broker-a")
    status_new, new = await call(adapter, f"/apis/metrics.k8s.io/v1beta1/namespaces/{NS}/pods/demo-broker-new")
    await adapter.prometheus.close()
    assert status == status_one == 200
    # A pod Prometheus has not scraped yet is missing, not idle.
    assert [i["metadata"]["name"] for i in body["items"]] == ["demo-broker-a"]
    assert one["kind"] == "PodMetrics"
    assert one["containers"] == [{"name": "broker", "usage": {"cpu": "250m", "memory": "104857600"}}]
    assert status_new == 404 and new["kind"] == "Status"


async def test_failures_say_why(prometheus: Any) -> None:
    url, _, results = prometheus
    adapter = server.Adapter(Pods([pod("demo-broker-a")]), server.Prometheus(url))  # type: ignore[arg-type]
    base = f"/apis/custom.metrics.k8s.io/v1beta2/namespaces/{NS}/pods/*"
    status, body = await call(adapter, f"{base}/floe_broker_cpu")
    assert status == 404 and "floe_broker_cpu is not served" in body["message"]
    results["bad"] = []
    status, body = await call(adapter, f"{base}/floe_broker_bytes_in_per_second")
    assert status == 503 and "refused the query: parse error" in body["message"]
    denied = server.Adapter(Pods([], fail=True), server.Prometheus(url))  # type: ignore[arg-type]
    status, body = await call(denied, f"{base}/floe_broker_bytes_in_per_second")
    assert status == 503 and "cannot list pods" in body["message"]
    gone = server.Adapter(Pods([pod("demo-broker-a")]), server.Prometheus("http://127.0.0.1:9"))  # type: ignore[arg-type]
    status, body = await call(gone, f"{base}/floe_broker_bytes_in_per_second")
    assert status == 503 and "did not answer" in body["message"]
    for a in (adapter, denied, gone):
        await a.prometheus.close()


async def test_discovery_lists_both_groups_and_every_served_metric(prometheus: Any) -> None:
    adapter = server.Adapter(Pods([]), server.Prometheus(prometheus[0]))  # type: ignore[arg-type]
    _, groups = await call(adapter, "/apis")
    _, custom = await call(adapter, "/apis/custom.metrics.k8s.io/v1beta2")
    _, resource = await call(adapter, "/apis/metrics.k8s.io/v1beta1")
    await adapter.prometheus.close()
    assert [g["name"] for g in groups["groups"]] == ["custom.metrics.k8s.io", "metrics.k8s.io"]
    assert "pods/floe_broker_bytes_in_per_second" in [r["name"] for r in custom["resources"]]
    assert [r["name"] for r in resource["resources"]] == ["pods"]


async def test_only_the_aggregator_gets_past_when_names_are_required(prometheus: Any) -> None:
    adapter = server.Adapter(Pods([]), server.Prometheus(prometheus[0]), allowed_names=["front-proxy-client"])  # type: ignore[arg-type]
    status, body = await call(adapter, "/apis/custom.metrics.k8s.io/v1beta2")
    health, _ = 0, None
    async with TestServer(adapter.app()) as srv, aiohttp.ClientSession() as session:
        async with session.get(srv.make_url("/healthz")) as resp:
            health = resp.status
    await adapter.prometheus.close()
    assert status == 403 and body["reason"] == "Forbidden"
    assert health == 200


def test_rate_window_must_be_a_promql_duration() -> None:
    assert answers.window_seconds("2m") == 120
    with pytest.raises(ValueError, match="not a PromQL duration"):
        answers.window_seconds("1m}[5m]) or vector(1")
