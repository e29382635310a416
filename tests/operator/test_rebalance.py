"""The rebalance loop end to end: kopf against kmock, a real Prometheus, fake brokers.

* Each fake broker serves ``/metrics`` (Prometheus text format) on its own
  loopback address (127.0.0.N, as pods have their own IPs), with counters
  that grow at the rates the test sets, for the partitions it leads.
* A real ``prometheus`` process scrapes them every second (file_sd targets,
  so brokers can join mid-test) and answers the operator's PromQL.
* A fake admin API serves ``GET /v1/cluster`` and records
  ``POST /v1/reassignments``, applying the moves as the controller would.
* Broker pods exist in kmock with ``status.podIP`` = the broker's address.

Tests assert what a user sees: the moves issued, the pods' deletion costs,
``status.rebalance`` and the ``Rebalancing`` condition. They wait by polling
for those, never by sleeping.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import shutil
import socket
import subprocess
import threading
import time
import urllib.request
from collections.abc import AsyncIterator, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import sc_samples
import yaml
from aiohttp import web

from conftest import NAMESPACE, Api, eventually, running_operator
from floe_operator import config as config_
from floe_operator.manifests import naming
from floe_operator.reconcile.rebalance import DELETION_COST

PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"
needs_prometheus = pytest.mark.skipif(
    not os.access(PROMETHEUS, os.X_OK), reason="Prometheus is not installed (apt-get install prometheus)"
)
SELECTOR_LABELS = {
    "app.kubernetes.io/name": "floe",
    "app.kubernetes.io/instance": "demo",
    "app.kubernetes.io/component": "broker",
}
Key = tuple[str, int]


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


# ---------------------------------------------------------------------------
# Fake brokers: /metrics per broker, one admin API for the cluster
# ---------------------------------------------------------------------------


class FakeCluster:
    """What the brokers know: who leads what, draining flags, and each partition's traffic."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.hosts: dict[int, str] = {}
        self.metrics_ports: dict[int, int] = {}
        self.draining: set[int] = set()
        self.leaders: dict[Key, int] = {}
        self.epochs: dict[Key, int] = {}
        self.rate_in: dict[Key, float] = {}
        self.rate_out: dict[Key, float] = {}
        self.counters: dict[tuple[int, str, Key], float] = {}
        self.scraped_at: dict[int, float] = {}
        self.servers: list[ThreadingHTTPServer] = []
        # Admin side.
        self.cluster_reads = 0
        self.authorizations: list[str | None] = []  # the Authorization header of every admin call
        self.reassignments: list[list[dict[str, Any]]] = []
        self.gate = asyncio.Event()
        self.gate.set()

    # -- metrics --------------------------------------------------------------

    def add_broker(self, node_id: int) -> None:
        host = f"127.0.0.{10 + node_id}"
        cluster = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                body = cluster.metrics_text(node_id).encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *_: Any) -> None:
                pass

        server = ThreadingHTTPServer((host, 0), Handler)
        threading.Thread(target=server.serve_forever, daemon=True, name=f"metrics-{node_id}").start()
        with self.lock:
            self.servers.append(server)
            self.hosts[node_id] = host
            self.metrics_ports[node_id] = int(server.server_address[1])
            self.scraped_at[node_id] = time.monotonic()

    def metrics_text(self, node: int) -> str:
        """Counters grown by rate x elapsed since the last scrape, for what ``node`` leads now."""
        with self.lock:
            now = time.monotonic()
            elapsed = now - self.scraped_at[node]
            self.scraped_at[node] = now
            led = sorted(k for k, leader in self.leaders.items() if leader == node)
            lines = ["# TYPE floe_partition_bytes_in_total counter", "# TYPE floe_partition_bytes_out_total counter"]
            total_in = self.counters.get((node, "broker", ("", 0)), 0.0)
            for key in led:
                for kind, rates in (("in", self.rate_in), ("out", self.rate_out)):
                    ckey = (node, kind, key)
                    self.counters[ckey] = self.counters.get(ckey, 0.0) + rates.get(key, 0.0) * elapsed
                    lines.append(
                        f'floe_partition_bytes_{kind}_total{{topic="{key[0]}",partition="{key[1]}"}} '
                        f"{self.counters[ckey]:.3f}"
                    )
                total_in += self.rate_in.get(key, 0.0) * elapsed
            self.counters[(node, "broker", ("", 0))] = total_in
            lines += ["# TYPE floe_bytes_in_total counter", f"floe_bytes_in_total {total_in:.3f}"]
            return "\n".join(lines) + "\n"

    def targets(self) -> list[dict[str, Any]]:
        with self.lock:
            return [{"targets": [f"{self.hosts[n]}:{self.metrics_ports[n]}"]} for n in sorted(self.hosts)]

    def close(self) -> None:
        for server in self.servers:
            server.shutdown()
            server.server_close()

    # -- admin API --------------------------------------------------------------

    def view(self) -> dict[str, Any]:
        with self.lock:
            counts: dict[int, int] = {}
            for leader in self.leaders.values():
                counts[leader] = counts.get(leader, 0) + 1
            return {
                "controller": min(self.hosts),
                "version": sum(self.epochs.values()),
                "brokers": [
                    {
                        "node_id": n,
                        "host": self.hosts[n],
                        "port": 9092,
                        "http": f"{self.hosts[n]}:{self.metrics_ports[n]}",
                        "draining": n in self.draining,
                        "partitions": counts.get(n, 0),
                    }
                    for n in sorted(self.hosts)
                ],
                "partitions": [
                    {"topic": t, "partition": p, "leader": leader, "epoch": self.epochs[(t, p)]}
                    for (t, p), leader in sorted(self.leaders.items())
                ],
            }

    async def get_cluster(self, request: web.Request) -> web.Response:
        self.cluster_reads += 1
        self.authorizations.append(request.headers.get("Authorization"))
        return web.json_response(self.view())

    async def post_reassignments(self, request: web.Request) -> web.Response:
        moves = (await request.json())["moves"]
        self.reassignments.append(moves)
        await self.gate.wait()  # a test holds the plan "running" by clearing the gate
        results = []
        with self.lock:
            for m in moves:
                key = (m["topic"], m["partition"])
                source = self.leaders[key]
                self.leaders[key] = m["to"]
                self.epochs[key] += 1
                results.append({**m, "error": None, "from_node": source, "epoch": self.epochs[key]})
        return web.json_response({"seconds": 0.004, "results": results})

    def led_by(self, node: int) -> list[Key]:
        with self.lock:
            return sorted(k for k, leader in self.leaders.items() if leader == node)

    def set_partitions(self, leaders: dict[Key, int], *, rate_in: float, rate_out: float) -> None:
        with self.lock:
            for key, node in leaders.items():
                self.leaders[key] = node
                self.epochs.setdefault(key, 1)
                self.rate_in[key] = rate_in
                self.rate_out[key] = rate_out


class Prometheus:
    def __init__(self, url: str, targets_file: Path) -> None:
        self.url = url
        self.targets_file = targets_file

    def set_targets(self, targets: list[dict[str, Any]]) -> None:
        tmp = self.targets_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(targets))
        tmp.replace(self.targets_file)  # atomic: Prometheus never reads half a file

    def query(self, promql: str) -> list[dict[str, Any]]:
        url = f"{self.url}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
        with urllib.request.urlopen(url, timeout=5) as resp:
            return json.load(resp)["data"]["result"]  # type: ignore[no-any-return]


@pytest.fixture
def prometheus(tmp_path: Path) -> Iterator[Prometheus]:
    """A real Prometheus scraping every second whatever targets the test lists."""
    port = free_port()
    targets = tmp_path / "targets.json"
    targets.write_text("[]")
    config = tmp_path / "prometheus.yml"
    config.write_text(
        yaml.safe_dump(
            {
                "global": {"scrape_interval": "1s", "scrape_timeout": "900ms", "evaluation_interval": "1s"},
                "scrape_configs": [
                    {"job_name": "floe", "file_sd_configs": [{"files": [str(targets)], "refresh_interval": "1s"}]}
                ],
            }
        )
    )
    log = (tmp_path / "prometheus.log").open("wb")
    proc = subprocess.Popen(
        [
            PROMETHEUS,
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--log.level=warn",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:  # poll readiness (the process is ours; nothing else to wait on)
            assert proc.poll() is None, (tmp_path / "prometheus.log").read_text()
            try:
                with urllib.request.urlopen(f"{url}/-/ready", timeout=1) as resp:
                    if resp.status == 200:
                        break
            except OSError:
                pass
            assert time.monotonic() < deadline, "Prometheus did not become ready in 30 s"
            time.sleep(0.1)
        yield Prometheus(url, targets)
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


@pytest.fixture
async def fake() -> AsyncIterator[tuple[FakeCluster, int]]:
    """The fake brokers and their admin API (on 127.0.0.1:<port>)."""
    cluster = FakeCluster()
    app = web.Application()
    app.router.add_get("/v1/cluster", cluster.get_cluster)
    app.router.add_post("/v1/reassignments", cluster.post_reassignments)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    try:
        yield cluster, port
    finally:
        cluster.gate.set()
        await runner.cleanup()
        cluster.close()


def operator_config() -> config_.OperatorConfig:
    # The admin API is the fake's; spec.listener.adminPort carries its port.
    return config_.OperatorConfig(
        broker_image="floe:test", retry_delay_seconds=0.5, broker_admin_url="http://127.0.0.1:{port}"
    )


def rebalance_spec(admin_port: int, prometheus_url: str, **rebalance: Any) -> dict[str, Any]:
    return {
        **sc_samples.MINIMAL,
        "listener": {"adminPort": admin_port},
        "rebalance": {
            "enabled": True,
            "prometheusUrl": prometheus_url,
            "intervalSeconds": 1,
            "window": "5s",
            "maxSkewPercent": 20,
            "skewIntervals": 3,
            **rebalance,
        },
    }


async def add_pod(api: Api, node: int, host: str) -> None:
    """The broker's pod, as the Deployment controller and kubelet would report it."""
    await api.request(
        "POST",
        f"/api/v1/namespaces/{NAMESPACE}/pods",
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": f"demo-broker-{node}", "namespace": NAMESPACE, "labels": dict(SELECTOR_LABELS)},
            "status": {"podIP": host, "phase": "Running"},
        },
    )


async def add_broker(api: Api, cluster: FakeCluster, node: int, prometheus: Prometheus | None) -> None:
    cluster.add_broker(node)
    await add_pod(api, node, cluster.hosts[node])
    if prometheus is not None:
        prometheus.set_targets(cluster.targets())


def rebalance_status(api: Api) -> dict[str, Any]:
    return api.cluster().get("status", {}).get("rebalance") or {}


def condition(api: Api, type_: str = "Rebalancing") -> dict[str, Any]:
    found = [c for c in api.cluster().get("status", {}).get("conditions", []) if c["type"] == type_]
    assert found, f"no {type_} condition yet"
    return found[0]


def deletion_cost(api: Api, node: int) -> str | None:
    pod = api.get("v1/pods", f"demo-broker-{node}")
    assert pod is not None
    return ((pod.get("metadata") or {}).get("annotations") or {}).get(DELETION_COST)


def loads_seen(api: Api) -> dict[int, float]:
    return {b["nodeId"]: b["load"] for b in rebalance_status(api).get("brokers", [])}


# ---------------------------------------------------------------------------
# The tests
# ---------------------------------------------------------------------------


def test_selector_labels_are_what_the_fake_pods_carry() -> None:
    """The fake pods must carry the labels the operator selects broker pods by."""
    from floe_operator import spec as spec_

    cluster = spec_.StreamCluster.from_body(sc_samples.cluster(sc_samples.MINIMAL))
    assert naming.selector_labels(cluster) == SELECTOR_LABELS


@needs_prometheus
async def test_scale_out_then_drain_move_leaders_and_keep_deletion_costs(
    api: Api, tmp_path: Path, prometheus: Prometheus, fake: tuple[FakeCluster, int]
) -> None:
    cluster, admin_port = fake
    # Two brokers, three partitions each; broker 1's are a little busier (within 20 %).
    cluster.set_partitions({("orders", p): 1 for p in range(3)}, rate_in=800.0, rate_out=400.0)
    cluster.set_partitions({("orders", p): 2 for p in range(3, 6)}, rate_in=600.0, rate_out=400.0)
    for node in (1, 2):
        await add_broker(api, cluster, node, prometheus)
    # Prometheus really answers the loop's query before the operator starts.
    query = "sum by (topic, partition) (rate(floe_partition_bytes_in_total[5s]))"
    await eventually(lambda: len(prometheus.query(query)) == 6, within=30)

    async with running_operator(api, tmp_path, config=operator_config()):
        # Skew-driven moves are off: the brokers differ by 14 % against a 20 % bound, and on a busy
        # machine a few late scrapes can push a 5 s rate past it for three rounds. What this test
        # checks (scale-out and drain plans, deletion costs) does not depend on skew.
        await api.create_cluster(rebalance_spec(admin_port, prometheus.url, continuous=False))

        # Measured, balanced, no moves; the busier broker is the costlier to delete. A partition's
        # load is its bytes in times (1 + the topic's out/in): 2400 / 4200 here.
        ratio = 1 + (3 * 400.0 + 3 * 400.0) / (3 * 800.0 + 3 * 600.0)

        def measured() -> bool:
            status = rebalance_status(api)
            loads = loads_seen(api)
            in_rates = {b["nodeId"]: b.get("bytesInPerSecond") for b in status.get("brokers", [])}
            assert status.get("state") == "Balanced"
            assert loads[1] == pytest.approx(3 * 800.0 * ratio, rel=0.2)
            assert loads[2] == pytest.approx(3 * 600.0 * ratio, rel=0.2)
            assert in_rates[1] == pytest.approx(3 * 800.0, rel=0.2)
            return True

        await eventually(measured, within=30)
        # The loop reads the cluster with the admin token from the cluster Secret the operator made
        # (a round that starts before the reconciler made it has none yet).
        secret = api.get("v1/secrets", "demo-cluster-secrets")
        assert secret is not None
        token = base64.b64decode(secret["data"]["admin-token"]).decode()
        assert cluster.authorizations[-1] == f"Bearer {token}"
        assert set(cluster.authorizations) <= {f"Bearer {token}", None}
        await eventually(lambda: (deletion_cost(api, 1), deletion_cost(api, 2)) == ("1", "0"), within=30)
        await eventually(lambda: (condition(api)["status"], condition(api)["reason"]) == ("False", "Balanced"))
        assert cluster.reassignments == []

        # Scale-out: broker 3 becomes ready and gets its share at once (not after skewIntervals).
        await add_broker(api, cluster, 3, prometheus)
        await eventually(lambda: cluster.reassignments, within=30)
        (moves,) = cluster.reassignments
        assert len(moves) == 2 and {m["to"] for m in moves} == {3}
        assert [len(cluster.led_by(n)) for n in (1, 2, 3)] == [2, 2, 2]
        await eventually(lambda: (rebalance_status(api).get("lastPlan") or {}).get("result") == "Succeeded", within=30)
        plan = rebalance_status(api)["lastPlan"]
        assert plan["reason"] == "ScaleOut"
        assert plan["moveCount"] == 2
        assert {(m["topic"], m["partition"], m["to"]) for m in plan["moves"]} == {
            (m["topic"], m["partition"], 3) for m in moves
        }
        assert all(m["from"] in (1, 2) and m["load"] > 0 for m in plan["moves"])
        assert plan["durationSeconds"] >= 0 and plan["startedAt"] and plan["finishedAt"]
        assert rebalance_status(api)["plans"] == 1

        # The new broker's load shows up; every pod gets a distinct cost, the lowest on the least loaded.
        await eventually(lambda: loads_seen(api)[3] > 1000, within=30)
        await eventually(lambda: {deletion_cost(api, n) for n in (1, 2, 3)} == {"0", "1", "2"}, within=30)
        loads = loads_seen(api)
        cheapest = min((1, 2, 3), key=lambda n: int(deletion_cost(api, n) or 99))
        assert loads[cheapest] <= min(loads.values()) * 1.25

        # Scale-in: broker 1 drains (SIGTERM); whatever it still leads moves at once, never onto itself.
        leaving = cluster.led_by(1)
        assert leaving
        with cluster.lock:
            cluster.draining.add(1)
        await eventually(lambda: len(cluster.reassignments) == 2, within=30)
        drain_moves = cluster.reassignments[1]
        assert {(m["topic"], m["partition"]) for m in drain_moves} == set(leaving)
        assert all(m["to"] in (2, 3) for m in drain_moves)
        assert cluster.led_by(1) == []
        await eventually(lambda: (rebalance_status(api).get("lastPlan") or {}).get("reason") == "Drain", within=30)
        await eventually(lambda: deletion_cost(api, 1) == "0", within=30)  # a draining broker goes first
        await eventually(lambda: condition(api)["status"] == "False", within=30)


@needs_prometheus
async def test_skew_waits_for_skew_intervals_and_never_overlaps_a_running_plan(
    api: Api, tmp_path: Path, prometheus: Prometheus, fake: tuple[FakeCluster, int]
) -> None:
    cluster, admin_port = fake
    # Broker 1 leads three busy partitions, broker 2 one: 50 % skew, fixable by one move.
    cluster.set_partitions({("clicks", 0): 1, ("clicks", 1): 1, ("clicks", 2): 1}, rate_in=1000.0, rate_out=0.0)
    cluster.set_partitions({("clicks", 3): 2}, rate_in=1000.0, rate_out=0.0)
    for node in (1, 2):
        await add_broker(api, cluster, node, prometheus)
    query = "sum by (topic, partition) (rate(floe_partition_bytes_in_total[5s]))"
    await eventually(lambda: len(prometheus.query(query)) == 4, within=30)
    cluster.gate.clear()  # the plan will "run" until the test lets it finish

    async with running_operator(api, tmp_path, config=operator_config()):
        await api.create_cluster(rebalance_spec(admin_port, prometheus.url, skewIntervals=3))

        await eventually(lambda: rebalance_status(api).get("state") == "Skewed", within=30)
        first_skewed_read = cluster.cluster_reads
        assert "above 20%" in rebalance_status(api)["message"]
        assert cluster.reassignments == []

        await eventually(lambda: cluster.reassignments, within=30)
        # The skewed round seen first counts as one; two more had to agree before planning.
        assert cluster.cluster_reads - first_skewed_read >= 2
        assert cluster.reassignments == [[{"topic": "clicks", "partition": 0, "to": 2}]]

        # While the plan runs: the condition says so, and later rounds plan nothing more.
        await eventually(lambda: condition(api)["status"] == "True", within=30)
        assert condition(api)["reason"] == "PlanRunning"
        assert "moving 1 partition leaders (Skew)" in condition(api)["message"]
        assert rebalance_status(api)["state"] == "Rebalancing"
        reads = cluster.cluster_reads
        await eventually(lambda: cluster.cluster_reads >= reads + 3, within=30)
        assert len(cluster.reassignments) == 1

        cluster.gate.set()
        await eventually(lambda: condition(api)["status"] == "False", within=30)
        assert rebalance_status(api)["lastPlan"]["result"] == "Succeeded"
        assert cluster.led_by(2) == [("clicks", 0), ("clicks", 3)]
        await eventually(lambda: rebalance_status(api).get("state") == "Balanced", within=30)
        assert len(cluster.reassignments) == 1


async def test_prometheus_down_is_reported_and_scale_out_still_balances_counts(
    api: Api, tmp_path: Path, fake: tuple[FakeCluster, int]
) -> None:
    cluster, admin_port = fake
    cluster.set_partitions({("t", p): 1 for p in range(4)}, rate_in=0.0, rate_out=0.0)
    await add_broker(api, cluster, 1, None)
    dead = f"http://127.0.0.1:{free_port()}"  # nothing listens there

    async with running_operator(api, tmp_path, config=operator_config()):
        await api.create_cluster(rebalance_spec(admin_port, dead))
        await eventually(lambda: condition(api)["reason"] == "MetricsUnavailable", within=30)
        message = condition(api)["message"]
        assert dead in message and "did not answer" in message and "partition counts" in message
        assert condition(api)["status"] == "False"
        assert rebalance_status(api)["state"] == "MetricsUnavailable"
        assert "skewPercent" not in rebalance_status(api)

        await add_broker(api, cluster, 2, None)
        await eventually(lambda: cluster.reassignments, within=30)
        assert [len(cluster.led_by(n)) for n in (1, 2)] == [2, 2]
        assert {m["to"] for m in cluster.reassignments[0]} == {2}


async def test_admin_api_down_is_reported_and_nothing_moves(api: Api, tmp_path: Path) -> None:
    closed = free_port()
    async with running_operator(api, tmp_path, config=operator_config()):
        await api.create_cluster(rebalance_spec(closed, f"http://127.0.0.1:{free_port()}"))
        await eventually(lambda: condition(api)["reason"] == "BrokersUnavailable", within=30)
        assert f"127.0.0.1:{closed}/v1/cluster" in condition(api)["message"]
        # The rebalance daemon is the only finalizer user: it needs to be stopped on delete.
        assert api.cluster()["metadata"].get("finalizers")


async def test_disabling_rebalance_stops_the_loop(api: Api, tmp_path: Path, fake: tuple[FakeCluster, int]) -> None:
    cluster, admin_port = fake
    cluster.set_partitions({("t", p): 1 for p in range(4)}, rate_in=0.0, rate_out=0.0)
    await add_broker(api, cluster, 1, None)
    async with running_operator(api, tmp_path, config=operator_config()):
        await api.create_cluster(rebalance_spec(admin_port, f"http://127.0.0.1:{free_port()}"))
        await eventually(lambda: cluster.cluster_reads >= 2, within=30)
        await api.patch_cluster({"rebalance": {"enabled": False}})
        await eventually(lambda: rebalance_status(api).get("state") == "Disabled", within=30)
        assert condition(api)["status"] == "False" and condition(api)["reason"] == "Disabled"
        await eventually(lambda: not api.cluster()["metadata"].get("finalizers"), within=30)
        # The loop has exited (it writes Disabled on its way out): a new broker gets nothing.
        reads = cluster.cluster_reads
        await add_broker(api, cluster, 2, None)
        await api.patch_cluster({"brokers": {"replicas": 4}})
        await eventually(lambda: api.cluster().get("status", {}).get("observedGeneration") == 3, within=30)
        assert cluster.cluster_reads == reads
        assert cluster.reassignments == []
