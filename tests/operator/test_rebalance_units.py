"""The rebalance core (planner input, Prometheus reader, admin client) and the Kubernetes loop's pure parts,
without kopf."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp import web

from floe_api import public as schema
from floe_operator import spec as spec_
from floe_operator.balancing import admin as broker_client
from floe_operator.balancing import prometheus, rounds
from floe_operator.balancing.load import LoadUnavailable
from floe_operator.planner import BrokerInfo, Move, PartitionInfo
from floe_operator.planner.costs import deletion_costs
from floe_operator.reconcile import rebalance
from floe_operator.reconcile import status as status_


def view(brokers: dict[int, bool], leaders: dict[tuple[str, int], int]) -> schema.ClusterView:
    return schema.ClusterView(
        controller=min(brokers),
        version=1,
        brokers=[
            schema.BrokerView(
                node_id=n, host=f"10.0.0.{n}", port=9092, http=f"10.0.0.{n}:9644", draining=d, partitions=0
            )
            for n, d in brokers.items()
        ],
        partitions=[schema.PartitionView(topic=t, partition=p, leader=n, epoch=1) for (t, p), n in leaders.items()],
    )


# -- planner input -------------------------------------------------------------


def test_a_broker_not_seen_last_round_is_new() -> None:
    v = view({1: False, 2: False}, {("t", 0): 1, ("t", 1): 2})
    brokers, partitions = rounds.planner_input(v, {("t", 0): 5.0}, seen={1}, on_scale_out=True)
    assert [b.new for b in brokers] == [False, True]
    assert [p.load for p in partitions] == [5.0, 0.0]


def test_after_a_restart_a_broker_that_leads_nothing_is_new() -> None:
    v = view({1: False, 2: False}, {("t", 0): 1, ("t", 1): 1})
    brokers, _ = rounds.planner_input(v, None, seen=None, on_scale_out=True)
    assert [b.new for b in brokers] == [False, True]
    # Fewer partitions than brokers: an empty broker is normal, not new.
    v = view({1: False, 2: False, 3: False}, {("t", 0): 1, ("t", 1): 2})
    brokers, _ = rounds.planner_input(v, None, seen={1, 2, 3}, on_scale_out=True)
    assert not any(b.new for b in brokers)


def test_on_scale_out_false_and_draining_brokers_are_never_new() -> None:
    v = view({1: False, 2: True, 3: False}, {("t", 0): 1})
    brokers, _ = rounds.planner_input(v, None, seen={1}, on_scale_out=True)
    assert [(b.node_id, b.new, b.draining) for b in brokers] == [(1, False, False), (2, False, True), (3, True, False)]
    brokers, _ = rounds.planner_input(v, None, seen={1}, on_scale_out=False)
    assert not any(b.new for b in brokers)


def test_plan_reason_prefers_drain_then_scale_out() -> None:
    parts = [PartitionInfo("t", 0, 2, 1.0)]
    assert rounds.plan_reason([BrokerInfo(1, new=True), BrokerInfo(2, draining=True)], parts) == "Drain"
    assert rounds.plan_reason([BrokerInfo(1, new=True), BrokerInfo(2)], parts) == "ScaleOut"
    assert rounds.plan_reason([BrokerInfo(1), BrokerInfo(2)], parts) == "Skew"


# -- pods and costs -------------------------------------------------------------


def pod(name: str, ip: str | None) -> dict[str, Any]:
    return {"metadata": {"name": name}, "status": {"podIP": ip} if ip else {}}


def test_pods_are_matched_by_pod_ip_or_name() -> None:
    v = view({1: False, 2: False, 3: False}, {})
    pods = [pod("demo-broker-a", "10.0.0.1"), pod("demo-broker-b", "10.0.0.2"), pod("pending", None)]
    assert rebalance.pods_by_node(v, pods) == {1: "demo-broker-a", 2: "demo-broker-b"}


def test_deletion_cost_is_lowest_for_the_least_loaded_and_for_draining_brokers() -> None:
    brokers = [BrokerInfo(1), BrokerInfo(2), BrokerInfo(3, draining=True)]
    parts = [PartitionInfo("t", 0, 1, 900.0), PartitionInfo("t", 1, 2, 100.0), PartitionInfo("t", 2, 3, 5000.0)]
    assert deletion_costs(brokers, parts) == {3: 0, 2: 1, 1: 2}


def test_deletion_costs_do_not_flap_between_nearly_equal_brokers() -> None:
    brokers = [BrokerInfo(1), BrokerInfo(2), BrokerInfo(3)]

    def parts(a: float, b: float) -> list[PartitionInfo]:
        return [PartitionInfo("t", 0, 1, a), PartitionInfo("t", 1, 2, b), PartitionInfo("t", 2, 3, 3000.0)]

    first = deletion_costs(brokers, parts(1010.0, 1000.0))
    assert first[3] == 2
    # Brokers 1 and 2 trade a few bytes/s back and forth: their costs stay put.
    assert deletion_costs(brokers, parts(1000.0, 1012.0), previous=first) == first
    assert deletion_costs(brokers, parts(1013.0, 999.0), previous=first) == first
    # A real difference (more than 10 % of the mean) reorders them.
    assert deletion_costs(brokers, parts(1600.0, 400.0), previous=first) == {2: 0, 1: 1, 3: 2}


def test_current_costs_are_read_from_the_pods() -> None:
    pods = [
        {"metadata": {"name": "a", "annotations": {rebalance.DELETION_COST: "3"}}},
        {"metadata": {"name": "b", "annotations": {rebalance.DELETION_COST: "x"}}},
        {"metadata": {"name": "c"}},
    ]
    assert rebalance.current_costs(pods, {1: "a", 2: "b", 3: "c"}) == {1: 3}


def test_deletion_cost_of_an_idle_cluster_follows_partition_counts() -> None:
    brokers = [BrokerInfo(1), BrokerInfo(2)]
    parts = [PartitionInfo("t", 0, 1, 0.0), PartitionInfo("t", 1, 1, 0.0), PartitionInfo("t", 2, 2, 0.0)]
    assert deletion_costs(brokers, parts) == {2: 0, 1: 1}


def test_broker_loads_report_what_each_broker_leads() -> None:
    v = view({1: False, 2: True}, {("t", 0): 1, ("t", 1): 1, ("t", 2): 2})
    parts = [PartitionInfo("t", 0, 1, 10.0), PartitionInfo("t", 1, 1, 5.5), PartitionInfo("t", 2, 2, 1.0)]
    loads = rebalance.broker_loads(v, parts, bytes_in={"10.0.0.1:9644": 7.0}, pods={1: "p1"}, costs={1: 1, 2: 0})
    assert loads == [
        spec_.BrokerLoad(
            node_id=1, pod="p1", draining=False, partitions=2, load=15.5, bytes_in_per_second=7.0, deletion_cost=1
        ),
        spec_.BrokerLoad(
            node_id=2, pod=None, draining=True, partitions=1, load=1.0, bytes_in_per_second=0.0, deletion_cost=0
        ),
    ]


# -- plans and status -------------------------------------------------------------


def test_a_finished_plan_records_per_move_errors() -> None:
    plan = rebalance.planned([Move("t", 0, 1, 2, 3.0), Move("t", 1, 1, 3, 4.0)], reason="Skew", at="T0")
    assert plan.result == "Running" and plan.move_count == 2
    result = schema.ReassignReply(
        seconds=0.25,
        results=[
            schema.MoveResult(topic="t", partition=0, to=2),
            schema.MoveResult(topic="t", partition=1, to=3, error="NOT_CONTROLLER"),
        ],
    )
    done = rebalance.finished(plan, at="T1", seconds=9.0, result=result)
    assert (done.result, done.finished_at, done.duration_seconds) == ("Failed", "T1", 0.25)
    assert [m.error for m in done.moves] == [None, "NOT_CONTROLLER"]
    assert done.message == "1 of 2 moves failed"
    failed = rebalance.finished(plan, at="T1", seconds=1.5, result=None, error="POST failed")
    assert (failed.result, failed.message, failed.duration_seconds) == ("Failed", "POST failed", 1.5)


def test_condition_is_true_only_while_a_plan_runs() -> None:
    plan = rebalance.planned([Move("t", 0, 1, 2, 3.0)], reason="ScaleOut", at="T0")
    running = spec_.RebalanceStatus(state="Rebalancing", observed_at="T0", last_plan=plan)
    assert rebalance.condition_for(running) == (True, "PlanRunning", "moving 1 partition leaders (ScaleOut)")
    done = running.model_copy(
        update={"state": "Balanced", "message": "ok", "last_plan": plan.model_copy(update={"result": "Succeeded"})}
    )
    assert rebalance.condition_for(done) == (False, "Balanced", "ok")


def test_reconciler_marks_a_stopped_loop_disabled_once() -> None:
    previous = spec_.StreamClusterStatus()
    assert status_.rebalance_disabled(previous, None, at="T", generation=2) == ([], None)
    conditions, patch = status_.rebalance_disabled(previous, {"state": "Balanced"}, at="T", generation=2)
    assert [(c.type, c.status, c.reason) for c in conditions] == [("Rebalancing", "False", "Disabled")]
    assert patch is not None and patch["state"] == "Disabled"
    _, again = status_.rebalance_disabled(previous, {"state": "Disabled"}, at="T", generation=2)
    assert again is None


# -- Prometheus reader (queries and parsing; the real server is in test_rebalance.py) ---------


def test_queries_are_the_documented_promql() -> None:
    assert (
        prometheus.partition_query("floe_partition_bytes_in_total", window="1m")
        == "sum by (topic, partition) (rate(floe_partition_bytes_in_total{}[1m]))"
    )
    assert (
        prometheus.broker_query(window="30s", selector='namespace="x"')
        == 'sum by (instance) (rate(floe_bytes_in_total{namespace="x"}[30s]))'
    )


class FakeClient:
    def __init__(self, answers: dict[str, Any]) -> None:
        self.answers = answers
        self.queries: list[str] = []

    def custom_query(self, query: str) -> Any:
        self.queries.append(query)
        answer = self.answers[query.split("rate(")[1]]
        if isinstance(answer, Exception):
            raise answer
        return answer


def sample(value: str, **labels: str) -> dict[str, Any]:
    return {"metric": labels, "value": [1700000000.0, value]}


async def test_reader_adds_in_and_out_and_skips_junk() -> None:
    client = FakeClient(
        {
            "floe_partition_bytes_in_total{}[1m]))": [
                sample("10", topic="t", partition="0"),
                sample("NaN", topic="t", partition="1"),
                sample("5", topic="t"),  # no partition label
            ],
            "floe_partition_bytes_out_total{}[1m]))": [sample("2.5", topic="t", partition="0")],
            "floe_bytes_in_total{}[1m]))": [sample("10", instance="10.0.0.1:9644")],
        }
    )
    reader = prometheus.PrometheusReader("http://p:9090", rate_window="1m", client=client)
    snapshot = await reader.load()
    assert snapshot.partitions == {("t", 0): 12.5, ("t", 1): 0.0}
    assert snapshot.broker_bytes_in == {"10.0.0.1:9644": 10.0}
    assert snapshot.bytes_in == 10.0


async def test_reader_turns_any_failure_into_one_readable_message() -> None:
    client = FakeClient({"floe_partition_bytes_in_total{}[1m]))": RuntimeError("HTTP Status Code 400 (bad_data)")})
    reader = prometheus.PrometheusReader("http://p:9090", rate_window="1m", client=client)
    with pytest.raises(LoadUnavailable, match=r"Prometheus at http://p:9090 did not answer: HTTP"):
        await reader.load()


async def test_reader_against_nothing_listening_says_connection_refused() -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    reader = prometheus.PrometheusReader(f"http://127.0.0.1:{port}", rate_window="1m")
    with pytest.raises(LoadUnavailable, match=r"cannot connect \(Connection refused\)"):
        await reader.load()


# -- admin client ------------------------------------------------------------------


async def test_admin_client_reads_the_view_and_posts_moves(aiohttp_free_port: int) -> None:
    posted: list[Any] = []

    async def cluster(_: web.Request) -> web.Response:
        return web.json_response(view({1: False, 2: False}, {("t", 0): 1}).model_dump())

    async def reassign(request: web.Request) -> web.Response:
        posted.append(await request.json())
        return web.json_response(
            {"seconds": 0.01, "results": [{"topic": "t", "partition": 0, "to": 2, "error": None, "epoch": 2}]}
        )

    async def broken(_: web.Request) -> web.Response:
        return web.json_response({"error": "no controller"}, status=503)

    async def ready(_: web.Request) -> web.Response:
        return web.json_response({"status": "ready", "node": 7})

    app = web.Application()
    app.router.add_get("/v1/cluster", cluster)
    app.router.add_post("/v1/reassignments", reassign)
    app.router.add_get("/broken/v1/cluster", broken)
    app.router.add_get("/readyz", ready)
    app.router.add_get("/broken/readyz", broken)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", aiohttp_free_port).start()
    try:
        async with broker_client.BrokerAdmin(f"http://127.0.0.1:{aiohttp_free_port}/") as admin:
            got = await admin.cluster()
            assert [b.node_id for b in got.brokers] == [1, 2] and got.partitions[0].leader == 1
            result = await admin.reassign([("t", 0, 2)])
            assert posted == [{"moves": [{"topic": "t", "partition": 0, "to": 2}]}]
            assert result.seconds == 0.01 and result.failed == []
            assert result.results == [schema.MoveResult(topic="t", partition=0, to=2, epoch=2)]
            assert (await admin.readiness()).node == 7
        async with broker_client.BrokerAdmin(f"http://127.0.0.1:{aiohttp_free_port}/broken") as admin:
            with pytest.raises(broker_client.BrokerAdminError, match="503.*no controller"):
                await admin.cluster()
            with pytest.raises(broker_client.BrokerAdminError, match="503"):
                await admin.readiness()
    finally:
        await runner.cleanup()


@pytest.fixture
def aiohttp_free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# -- one rebalance core for both loops ---------------------------------------------------


class FakeKube:
    """Just enough of KubeClient for one Rebalancer round: the live cluster, no pods, patches kept."""

    def __init__(self, body: dict[str, Any]) -> None:
        self.body = body
        self.patches: list[Any] = []

    async def get(self, api_version: str, kind: str, namespace: str | None, name: str) -> dict[str, Any] | None:
        return self.body

    async def list_objects(self, *_: Any, **__: Any) -> list[dict[str, Any]]:
        return []

    async def patch(self, *args: Any, **kwargs: Any) -> None:
        self.patches.append((args, kwargs))


class FakeAdmin:
    def __init__(self, cluster_view: schema.ClusterView) -> None:
        self.view = cluster_view
        self.posted: list[Any] = []
        self.url = "http://admin"

    async def cluster(self) -> schema.ClusterView:
        return self.view

    async def reassign(self, moves: Any, *, timeout_seconds: float = 120.0) -> schema.ReassignReply:
        self.posted.append(list(moves))
        return schema.ReassignReply()

    async def close(self) -> None:
        pass


def kubernetes_round(cluster_view: schema.ClusterView, answers: dict[str, Any]) -> tuple[Any, FakeAdmin]:
    """One round of a Rebalancer wired to fakes (a coroutine factory: it waits for any plan it started)."""
    import logging

    import sc_samples

    from floe_operator import config as config_

    body = sc_samples.cluster(
        {
            **sc_samples.MINIMAL,
            "rebalance": {"enabled": True, "prometheusUrl": "http://p:9090", "window": "1m", "skewIntervals": 1},
        }
    )
    admin = FakeAdmin(cluster_view)
    rebalancer = rebalance.Rebalancer(
        namespace=body["metadata"]["namespace"],
        name=body["metadata"]["name"],
        kube=FakeKube(body),  # type: ignore[arg-type]
        config=config_.OperatorConfig(),
        logger=logging.getLogger("test"),
        admin_factory=lambda _url, **_: admin,  # type: ignore[arg-type,return-value]
        prometheus_factory=lambda url, **kw: prometheus.PrometheusReader(url, client=FakeClient(answers), **kw),
    )
    cluster = spec_.StreamCluster.from_body(body)

    async def one_round() -> spec_.RebalanceStatus:
        status = await rebalancer.tick(cluster)
        if rebalancer.task is not None:
            await rebalancer.task
        return status

    return one_round, admin


async def test_the_kubernetes_loop_does_not_see_a_partition_whose_consumers_paused_after_a_move_as_lighter() -> None:
    # Same bytes in on both partitions; t/1 just moved to broker 2 and its consumers have not found it yet.
    answers = {
        "floe_partition_bytes_in_total{}[1m]))": [
            sample("100", topic="t", partition="0"),
            sample("100", topic="t", partition="1"),
        ],
        "floe_partition_bytes_out_total{}[1m]))": [
            sample("190", topic="t", partition="0"),
            sample("10", topic="t", partition="1"),
        ],
        "floe_bytes_in_total{}[1m]))": [
            sample("100", instance="10.0.0.1:9644"),
            sample("100", instance="10.0.0.2:9644"),
        ],
    }
    tick, admin = kubernetes_round(view({1: False, 2: False}, {("t", 0): 1, ("t", 1): 2}), answers)
    status = await tick()
    assert [(b.node_id, b.load) for b in status.brokers] == [(1, 200.0), (2, 200.0)]
    assert (status.state, status.skew_percent) == ("Balanced", 0.0)
    assert admin.posted == []  # raw in + out (290 against 110) would have moved t/1 back


async def test_both_loops_ask_the_one_new_broker_rule(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    from floe_cli.local import autoscale, hpa
    from floe_cli.local.fleet import EventLog
    from floe_operator.planner import RebalancePolicy

    asked: list[set[int]] = []
    rule = rounds.new_brokers

    def spy(*args: Any, **kwargs: Any) -> set[int]:
        asked.append(rule(*args, **kwargs))
        return asked[-1]

    monkeypatch.setattr(rounds, "new_brokers", spy)
    grown = view({1: False, 2: False}, {("t", 0): 1, ("t", 1): 1})  # broker 2 leads nothing: it is new

    tick, k8s_admin = kubernetes_round(grown, {})
    await tick()
    assert asked == [{2}] and k8s_admin.posted == [[("t", 0, 2)]]

    class Fleet:
        brokers: list[Any] = []

        def serving(self) -> list[Any]:
            return [type("B", (), {"http": "b1"})()]

    local_admin = FakeAdmin(grown)
    loop = autoscale.Loop(
        fleet=Fleet(),  # type: ignore[arg-type]
        source=None,  # type: ignore[arg-type]
        scaler=hpa.Autoscaler(min_replicas=1, max_replicas=3, target=1.0),
        rounds=rounds.Rounds(RebalancePolicy(max_skew_percent=20, skew_intervals=3)),
        events=EventLog(tmp_path / "events.jsonl"),
        admin_for=lambda _http: local_admin,  # type: ignore[arg-type,return-value]
        interval=1,
        drain_timeout=1,
        max_skew_percent=20,
    )
    await loop.rebalance(None)
    assert asked == [{2}, {2}] and local_admin.posted == [[("t", 0, 2)]]
