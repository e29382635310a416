"""kafkajs and @platformatic/kafka (Node.js) against two Floe brokers: admin, configs, produce, a group of two."""

from __future__ import annotations

from pathlib import Path

from tests.infra.broker import BrokerProcess

from .conftest import NODE_DIR, run_scenario, topic_name


def _assert_common(report: dict[str, object], brokers: list[BrokerProcess], invalid: str) -> None:
    assert report["listed"] is True
    assert report["retention"] == "3600000" and report["retentionSource"] == 1  # TOPIC_CONFIG
    assert int(report["configCount"]) >= 30, report  # type: ignore[call-overload]
    ports = {b.bootstrap.rsplit(":", 1)[1] for b in brokers}
    assert any(p in str(report["advertised"]) for p in ports), report
    assert report["numPartitions"] == "1"
    assert report["altered"] == "7200000"
    assert invalid in str(report["bogusError"]), report
    assert report["assignedBoth"] == [1, 1], report
    assert report["keysAndHeaders"] is True
    assert report["distinct"] == 20
    assert report["committed"] == 20
    assert report["deleted"] is True


def test_kafkajs(cluster: list[BrokerProcess], node_modules: Path) -> None:
    report = run_scenario(["node", "kafkajs_scenario.js", cluster[0].bootstrap, topic_name("kafkajs")], NODE_DIR)
    assert report["created"] is True
    _assert_common(report, cluster, "INVALID_CONFIG")  # kafkajs shows the code's name, not the broker's message


def test_platformatic_kafka(cluster: list[BrokerProcess], node_modules: Path) -> None:
    report = run_scenario(["node", "platformatic_scenario.js", cluster[0].bootstrap, topic_name("platformatic")],
                          NODE_DIR)
    _assert_common(report, cluster, "Unknown topic config name: bogus.config")
