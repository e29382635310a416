"""Fast checks of the local autoscaler's pieces that need no broker: flags, the load-source
fallback without prometheus, and counter rates with resets."""

from __future__ import annotations

import argparse
from collections import deque
from pathlib import Path

import pytest

from floe_operator.local import autoscaler, flags, hpa


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
    source = autoscaler.make_source(ns, tmp_path)
    assert isinstance(source, autoscaler.DirectSource)
    err = capsys.readouterr().err
    assert err.count("prometheus not found") == 1 and "/metrics directly" in err
    assert isinstance(autoscaler.make_source(parse("--prometheus", "off"), tmp_path), autoscaler.DirectSource)
    assert "not found" not in capsys.readouterr().err


def test_direct_rates_survive_counter_resets() -> None:
    q = deque([(0.0, 100.0), (1.0, 200.0), (2.0, 50.0), (3.0, 150.0)])  # restarted at t=2
    assert autoscaler.DirectSource._rate(q, now=3.0, window=10.0) == pytest.approx((100 + 50 + 100) / 3)
    assert autoscaler.DirectSource._rate(q, now=3.0, window=1.5) == pytest.approx(100)  # last 1.5 s only
    assert autoscaler.DirectSource._rate(deque([(0.0, 1.0)]), now=0.0, window=10.0) == 0.0
    assert autoscaler.DirectSource._rate(q, now=20.0, window=10.0) == 0.0  # the broker is gone


@pytest.mark.parametrize("kind", ["prometheus", "direct"])
def test_load_sources_see_real_traffic(brokers, file_store, tmp_path: Path, kind: str) -> None:  # type: ignore[no-untyped-def]
    import os
    import threading
    import uuid

    from tests.infra.broker import wait_until
    from tests.test_clients import create_topic, produce_all

    if kind == "prometheus" and not os.path.exists(autoscaler.PROMETHEUS):
        pytest.skip(f"prometheus is not installed at {autoscaler.PROMETHEUS} (apt-get install prometheus)")
    b = brokers(file_store)
    topic = f"ld-{uuid.uuid4().hex[:6]}"
    create_topic(b.bootstrap, topic, 2)
    source: autoscaler.LoadSource = (
        autoscaler.PrometheusSource(autoscaler.PROMETHEUS, tmp_path, window=3, scrape_interval=0.5, port=0)
        if kind == "prometheus" else autoscaler.DirectSource(3))
    stop = threading.Event()

    def traffic() -> None:
        while not stop.is_set():
            produce_all(b.bootstrap, [(topic, p, None, b"z" * 1000, None, None) for p in (0, 1)] * 50)

    t = threading.Thread(target=traffic, daemon=True)
    t.start()
    try:
        source.targets([b.http])

        def seen() -> autoscaler.Load | None:
            source.tick()
            load = source.load()
            ok = load and load.bytes_in > 0 and all(load.partitions.get((topic, p), 0) > 0 for p in (0, 1))
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


class FakeFleet:
    """Brokers without processes; the cluster's admin API is faked in ``http_json``."""

    def __init__(self, nodes: list[int], view: dict) -> None:  # type: ignore[type-arg]
        self.brokers = [FakeBroker(n) for n in nodes]
        self.view = view
        self.drained: list[int] = []

    def serving(self) -> list[FakeBroker]:
        return [b for b in self.brokers if b.draining_since is None]

    def running(self) -> list[FakeBroker]:
        return list(self.brokers)

    def drain(self, b: FakeBroker, *, timeout: float) -> None:
        b.draining_since = 1.0
        self.drained.append(b.node)

    def start(self, count: int) -> list[FakeBroker]:
        new = [FakeBroker(max(b.node for b in self.brokers) + 1 + i) for i in range(count)]
        self.brokers += new
        self.view["brokers"] += [{"node_id": b.node, "draining": False, "partitions": 0} for b in new]
        return new


class FixedLoad:
    def __init__(self, load: autoscaler.Load) -> None:
        self.value = load

    def targets(self, https: list[str]) -> None: ...
    def tick(self) -> None: ...
    def load(self) -> autoscaler.Load:
        return self.value

    def close(self) -> None: ...


def fake_cluster(monkeypatch: pytest.MonkeyPatch, leaders: dict[int, int]) -> tuple[dict, list]:  # type: ignore[type-arg]
    view = {"brokers": [{"node_id": n, "draining": False, "partitions": list(leaders.values()).count(n)}
                        for n in sorted(set(leaders.values()))],
            "partitions": [{"topic": "t", "partition": p, "leader": n} for p, n in leaders.items()]}
    posted: list = []  # type: ignore[type-arg]

    def http_json(url: str, body: object | None = None, timeout: float = 10.0) -> object:
        if url.endswith("/v1/cluster"):
            for b in view["brokers"]:
                b["partitions"] = sum(1 for p in view["partitions"] if p["leader"] == b["node_id"])
            return view
        assert url.endswith("/v1/reassignments")
        posted.append(body)
        for m in body["moves"]:  # type: ignore[index]
            view["partitions"][m["partition"]]["leader"] = m["to"]
        return {"results": [{"error": None} for _ in body["moves"]]}  # type: ignore[index]

    monkeypatch.setattr(autoscaler, "http_json", http_json)
    return view, posted


def make_loop(tmp_path: Path, fleet: FakeFleet, load: autoscaler.Load, **scaler: object) -> autoscaler.Loop:
    zero = hpa.ScalingRules(0, (hpa.ScalingPolicy("Pods", 4, 15),))
    return autoscaler.Loop(
        fleet=fleet, source=FixedLoad(load),  # type: ignore[arg-type]
        scaler=hpa.Autoscaler(min_replicas=2, max_replicas=5, target=100.0, behavior=hpa.Behavior(zero, zero),
                              **scaler),  # type: ignore[arg-type]
        policy=autoscaler.planner.RebalancePolicy(max_skew_percent=20, skew_intervals=3),
        events=autoscaler.EventLog(tmp_path / "events.jsonl"), interval=1, drain_timeout=5, max_skew_percent=20)


def test_scale_in_drains_the_least_loaded_broker_and_plans_nothing_meanwhile(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    leaders = {0: 1, 1: 2, 2: 3, 3: 1, 4: 3}
    view, posted = fake_cluster(monkeypatch, leaders)
    fleet = FakeFleet([1, 2, 3], view)
    load = autoscaler.Load(bytes_in=300.0, partitions={("t", 0): 100, ("t", 1): 10, ("t", 2): 60,
                                                       ("t", 3): 100, ("t", 4): 60})
    make_loop(tmp_path, fleet, load).step()  # 100 per broker, on target: no change
    assert fleet.drained == []
    make_loop(tmp_path, fleet, autoscaler.Load(bytes_in=90.0, partitions=load.partitions)).step()
    assert fleet.drained == [2]  # node 2 leads the least load
    assert posted == []  # its drain is the plan in progress: no moves race it


def test_a_broker_that_was_sent_sigterm_is_never_a_target(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    leaders = {p: 1 + p % 3 for p in range(9)}
    view, posted = fake_cluster(monkeypatch, leaders)
    fleet = FakeFleet([1, 2, 3], view)
    fleet.brokers[1].draining_since, fleet.brokers[1].exit_code = 1.0, 0  # the view still lists node 2
    loop = make_loop(tmp_path, fleet, autoscaler.Load(0.0, {}))
    loop.rebalance(autoscaler.Load(bytes_in=900.0, partitions={("t", p): 100.0 for p in range(9)}))
    moves = [m for body in posted for m in body["moves"]]
    assert sorted(m["partition"] for m in moves) == [1, 4, 7]  # node 2's partitions leave it
    assert all(m["to"] in (1, 3) for m in moves)


def test_scale_out_plans_onto_the_new_brokers_at_once(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    leaders = {p: 1 + p % 2 for p in range(12)}
    view, posted = fake_cluster(monkeypatch, leaders)
    fleet = FakeFleet([1, 2], view)
    load = autoscaler.Load(bytes_in=400.0, partitions={("t", p): 50.0 for p in range(12)})
    make_loop(tmp_path, fleet, load).step()  # 200 per broker against 100: ceil(2 * 2) = 4
    assert [b.node for b in fleet.brokers] == [1, 2, 3, 4]
    assert posted and {m["to"] for m in posted[0]["moves"]} == {3, 4}
    counts = [sum(1 for p in view["partitions"] if p["leader"] == n) for n in (1, 2, 3, 4)]
    assert counts == [3, 3, 3, 3]
    events = (tmp_path / "events.jsonl").read_text()
    assert '"event": "scale_out"' in events and '"event": "balanced"' in events


def test_partition_load_takes_bytes_out_from_the_topic_ratio() -> None:
    ins = {("t", 0): 100.0, ("t", 1): 100.0, ("idle", 0): 0.0}
    outs = {("t", 0): 190.0, ("t", 1): 10.0, ("r", 0): 50.0}  # partition 1's consumers paused after a move
    loads = autoscaler.partition_load(ins, outs)
    assert loads[("t", 0)] == loads[("t", 1)] == pytest.approx(200.0)  # ratio 200/200: each in x 2
    assert loads[("r", 0)] == 50.0 and loads[("idle", 0)] == 0.0
