"""Fast checks of the local autoscaler's pieces that need no broker: flags, the load-source
fallback without prometheus, counter rates with resets, and the loop's rounds against a faked
admin API; plus both load sources against a real broker."""

from __future__ import annotations

import argparse
import asyncio
from collections import deque
from pathlib import Path
from typing import Any

import pytest

from floe_api import public as schema
from floe_cli.local import autoscale, flags, hpa
from floe_cli.local.fleet import EventLog
from floe_operator.balancing.load import LoadSnapshot, partition_load
from floe_operator.balancing.rounds import Rounds
from floe_operator.balancing.scrape import MetricsScraper, counter_rate
from floe_operator.planner import RebalancePolicy


def parse(*argv: str) -> argparse.Namespace:
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", default="127.0.0.1")
    flags.add_arguments(ap)
    return ap.parse_args(list(argv))


def test_flag_defaults_are_the_hpa_defaults() -> None:
    b = flags.behavior_from(parse("--autoscale"))
    assert b == hpa.Behavior()
    assert b.scale_up.stabilization_window_seconds == 0 and b.scale_down.stabilization_window_seconds == 300


def test_policies_and_windows_from_flags() -> None:
    b = flags.behavior_from(parse("--scale-down-window", "6", "--scale-down-policy", "Pods:1:4",
                                  "--scale-up-policy", "Percent:50:10", "--scale-up-policy", "Pods:2:10",
                                  "--scale-up-select", "Min"))
    assert b.scale_down == hpa.ScalingRules(6.0, (hpa.ScalingPolicy("Pods", 1, 4.0),), "Max")
    assert b.scale_up.policies == (hpa.ScalingPolicy("Percent", 50, 10.0), hpa.ScalingPolicy("Pods", 2, 10.0))
    assert b.scale_up.select_policy == "Min"
    with pytest.raises(SystemExit):
        parse("--scale-up-policy", "Nodes:1:1")


def test_without_prometheus_it_says_so_once_and_scrapes_directly(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    ns = parse("--prometheus", str(tmp_path / "no-such-prometheus"))
    source = autoscale.make_source(ns, tmp_path)
    assert isinstance(source, MetricsScraper)
    err = capsys.readouterr().err
    assert err.count("prometheus not found") == 1 and "/metrics directly" in err
    assert isinstance(autoscale.make_source(parse("--prometheus", "off"), tmp_path), MetricsScraper)
    assert "not found" not in capsys.readouterr().err


def test_direct_rates_survive_counter_resets() -> None:
    q = deque([(0.0, 100.0), (1.0, 200.0), (2.0, 50.0), (3.0, 150.0)])  # restarted at t=2
    assert counter_rate(q, now=3.0, window=10.0) == pytest.approx((100 + 50 + 100) / 3)
    assert counter_rate(q, now=3.0, window=1.5) == pytest.approx(100)  # last 1.5 s only
    assert counter_rate(deque([(0.0, 1.0)]), now=0.0, window=10.0) == 0.0
    assert counter_rate(q, now=20.0, window=10.0) == 0.0  # the broker is gone


@pytest.mark.parametrize("kind", ["prometheus", "direct"])
def test_load_sources_see_real_traffic(brokers, file_store, tmp_path: Path, kind: str) -> None:  # type: ignore[no-untyped-def]
    import os
    import threading
    import uuid

    from floe_cli.local.prometheus import LocalPrometheus
    from tests.infra.broker import wait_until
    from tests.test_clients import create_topic, produce_all

    if kind == "prometheus" and not os.path.exists(autoscale.PROMETHEUS):
        pytest.skip(f"prometheus is not installed at {autoscale.PROMETHEUS} (apt-get install prometheus)")
    b = brokers(file_store)
    topic = f"ld-{uuid.uuid4().hex[:6]}"
    create_topic(b.bootstrap, topic, 2)
    source: autoscale.Source = (
        LocalPrometheus(autoscale.PROMETHEUS, tmp_path, window=3, scrape_interval=0.5, port=0)
        if kind == "prometheus" else MetricsScraper(3))
    stop = threading.Event()

    def traffic() -> None:
        while not stop.is_set():
            produce_all(b.bootstrap, [(topic, p, None, b"z" * 1000, None, None) for p in (0, 1)] * 50)

    t = threading.Thread(target=traffic, daemon=True)
    t.start()
    try:
        source.targets([b.http])

        async def measure() -> LoadSnapshot:
            await source.sample()
            return await source.load()

        def seen() -> LoadSnapshot | None:
            load = asyncio.run(measure())
            ok = (load.bytes_in or 0) > 0 and all(load.partitions.get((topic, p), 0) > 0 for p in (0, 1))
            return load if ok else None

        wait_until(seen, 30, interval=0.5, message=f"{kind} load with both partitions")
    finally:
        stop.set()
        t.join(30)
        source.close()


class FakeBroker:
    def __init__(self, node: int) -> None:
        self.node, self.index, self.http = node, node, f"b{node}"
        self.draining_since: float | None = None
        self.ready_at: float | None = 1.0
        self.exit_code: int | None = None


class FakeCluster:
    """The admin API of a cluster without processes: who leads what; moves apply at once."""

    def __init__(self, leaders: dict[int, int]) -> None:
        self.nodes = sorted(set(leaders.values()))
        self.leaders = dict(leaders)
        self.posted: list[list[tuple[str, int, int]]] = []

    def view(self) -> schema.ClusterView:
        return schema.ClusterView(
            controller=min(self.nodes), version=1,
            brokers=[schema.BrokerView(node_id=n, host="127.0.0.1", port=9092, http=f"b{n}", draining=False,
                                       partitions=list(self.leaders.values()).count(n)) for n in self.nodes],
            partitions=[schema.PartitionView(topic="t", partition=p, leader=n, epoch=1)
                        for p, n in sorted(self.leaders.items())])

    async def cluster(self) -> schema.ClusterView:
        return self.view()

    async def reassign(self, moves: Any, *, timeout_seconds: float = 120.0) -> schema.ReassignReply:
        self.posted.append(list(moves))
        for _topic, partition, to in moves:
            self.leaders[partition] = to
        return schema.ReassignReply(results=[schema.MoveResult(topic=t, partition=p, to=n) for t, p, n in moves])


class FakeFleet:
    """Brokers without processes, in the faked cluster."""

    def __init__(self, nodes: list[int], cluster: FakeCluster) -> None:
        self.brokers = [FakeBroker(n) for n in nodes]
        self.cluster = cluster
        self.drained: list[int] = []

    def serving(self) -> list[FakeBroker]:
        return [b for b in self.brokers if b.draining_since is None]

    def running(self) -> list[FakeBroker]:
        return list(self.brokers)

    def drain(self, b: FakeBroker, *, timeout: float) -> None:
        b.draining_since = 1.0
        self.drained.append(b.node)

    async def start(self, count: int) -> list[FakeBroker]:
        new = [FakeBroker(max(b.node for b in self.brokers) + 1 + i) for i in range(count)]
        self.brokers += new
        self.cluster.nodes += [b.node for b in new]
        return new


class FixedLoad:
    def __init__(self, load: LoadSnapshot) -> None:
        self.value = load

    def targets(self, https: list[str]) -> None: ...
    async def sample(self) -> None: ...
    async def load(self) -> LoadSnapshot:
        return self.value

    def close(self) -> None: ...


def load_of(bytes_in: float, partitions: dict[tuple[str, int], float]) -> LoadSnapshot:
    return LoadSnapshot(partitions=partitions, bytes_in=bytes_in)


def make_loop(tmp_path: Path, fleet: FakeFleet, load: LoadSnapshot, **scaler: object) -> autoscale.Loop:
    zero = hpa.ScalingRules(0, (hpa.ScalingPolicy("Pods", 4, 15),))
    return autoscale.Loop(
        fleet=fleet, source=FixedLoad(load),  # type: ignore[arg-type]
        scaler=hpa.Autoscaler(min_replicas=2, max_replicas=5, target=100.0, behavior=hpa.Behavior(zero, zero),
                              **scaler),  # type: ignore[arg-type]
        rounds=Rounds(RebalancePolicy(max_skew_percent=20, skew_intervals=3)),
        events=EventLog(tmp_path / "events.jsonl"), admin_for=lambda _http: fleet.cluster,  # type: ignore[arg-type,return-value]
        interval=1, drain_timeout=5, max_skew_percent=20)


async def test_scale_in_drains_the_least_loaded_broker_and_plans_nothing_meanwhile(tmp_path: Path) -> None:
    cluster = FakeCluster({0: 1, 1: 2, 2: 3, 3: 1, 4: 3})
    fleet = FakeFleet([1, 2, 3], cluster)
    parts = {("t", 0): 100.0, ("t", 1): 10.0, ("t", 2): 60.0, ("t", 3): 100.0, ("t", 4): 60.0}
    await make_loop(tmp_path, fleet, load_of(300.0, parts)).step()  # 100 per broker, on target: no change
    assert fleet.drained == []
    await make_loop(tmp_path, fleet, load_of(90.0, parts)).step()
    assert fleet.drained == [2]  # node 2 leads the least load
    assert cluster.posted == []  # its drain is the plan in progress: no moves race it


async def test_a_broker_that_was_sent_sigterm_is_never_a_target(tmp_path: Path) -> None:
    cluster = FakeCluster({p: 1 + p % 3 for p in range(9)})
    fleet = FakeFleet([1, 2, 3], cluster)
    fleet.brokers[1].draining_since, fleet.brokers[1].exit_code = 1.0, 0  # the view still lists node 2
    loop = make_loop(tmp_path, fleet, load_of(0.0, {}))
    await loop.rebalance(load_of(900.0, {("t", p): 100.0 for p in range(9)}))
    moves = [m for body in cluster.posted for m in body]
    assert sorted(p for _, p, _ in moves) == [1, 4, 7]  # node 2's partitions leave it
    assert all(to in (1, 3) for _, _, to in moves)


async def test_scale_out_plans_onto_the_new_brokers_at_once(tmp_path: Path) -> None:
    cluster = FakeCluster({p: 1 + p % 2 for p in range(12)})
    fleet = FakeFleet([1, 2], cluster)
    await make_loop(tmp_path, fleet, load_of(400.0, {("t", p): 50.0 for p in range(12)})).step()
    # 200 per broker against 100: ceil(2 * 2) = 4
    assert [b.node for b in fleet.brokers] == [1, 2, 3, 4]
    assert cluster.posted and {to for _, _, to in cluster.posted[0]} == {3, 4}
    counts = [list(cluster.leaders.values()).count(n) for n in (1, 2, 3, 4)]
    assert counts == [3, 3, 3, 3]
    events = (tmp_path / "events.jsonl").read_text()
    assert '"event": "scale_out"' in events and '"event": "balanced"' in events


def test_partition_load_takes_bytes_out_from_the_topic_ratio() -> None:
    ins = {("t", 0): 100.0, ("t", 1): 100.0, ("idle", 0): 0.0}
    outs = {("t", 0): 190.0, ("t", 1): 10.0, ("r", 0): 50.0}  # partition 1's consumers paused after a move
    loads = partition_load(ins, outs)
    assert loads[("t", 0)] == loads[("t", 1)] == pytest.approx(200.0)  # ratio 200/200: each in x 2
    assert loads[("r", 0)] == 50.0 and loads[("idle", 0)] == 0.0
