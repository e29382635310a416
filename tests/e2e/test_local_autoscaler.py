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
