"""franz-go (kgo, kadm) against two Floe brokers: admin, configs (incremental and legacy), produce, a group of two."""

from __future__ import annotations

from pathlib import Path

from tests.infra.broker import BrokerProcess

from .conftest import GO_DIR, run_scenario, topic_name


def test_franz_go(cluster: list[BrokerProcess], franz_go_binary: Path) -> None:
    report = run_scenario([str(franz_go_binary), cluster[0].bootstrap, topic_name("franz")], GO_DIR)
    assert report["listed"] is True
    assert report["retention"] == "3600000" and report["retentionSource"] == 1  # DYNAMIC_TOPIC_CONFIG
    assert report["configCount"] >= 30, report
    ports = {b.bootstrap.rsplit(":", 1)[1] for b in cluster}
    assert any(p in str(report["advertised"]) for p in ports), report
    assert report["numPartitions"] == "1"
    assert report["altered"] == "7200000"
    assert "INVALID_CONFIG" in report["bogusError"], report
    assert "Unknown topic config name: bogus.config" in report["bogusError"], report
    assert report["assignedBoth"] == [1, 1], report
    assert report["keysAndHeaders"] is True
    assert report["distinct"] == 20
    assert report["committed"] == 20
    assert report["deleted"] is True
