"""Topic administration through real admin clients, start-up failures, HTTP endpoints."""

from __future__ import annotations

import subprocess
import sys
import time
import uuid

import pytest
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import (
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    NewPartitions,
    NewTopic,
)

from tests.conftest import s3_spec
from tests.infra.broker import ROOT, BrokerProcess, free_port, wait_until
from tests.test_clients import consume_exactly, create_topic, produce_all


def test_create_describe_alter_delete_with_confluent_admin(broker: BrokerProcess) -> None:
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    name = f"adm-{uuid.uuid4().hex[:6]}"
    admin.create_topics([NewTopic(name, 3, 1, config={"retention.ms": "60000"})])[name].result(30)
    # creating it again is a clear error
    with pytest.raises(Exception, match="TOPIC_ALREADY_EXISTS|already exists"):
        admin.create_topics([NewTopic(name, 3, 1)])[name].result(30)
    md = admin.list_topics(timeout=10)
    assert len(md.topics[name].partitions) == 3
    assert md.topics[name].partitions[0].leader == md.topics[name].partitions[0].replicas[0]

    res = ConfigResource("topic", name)
    configs = admin.describe_configs([res])[res].result(30)
    assert configs["retention.ms"].value == "60000"
    assert configs["max.message.bytes"].value == str(1024 * 1024 + 12 * 1024)

    alter = ConfigResource("topic", name, incremental_configs=[
        ConfigEntry("retention.bytes", "1048576", incremental_operation=AlterConfigOpType.SET),
        ConfigEntry("retention.ms", None, incremental_operation=AlterConfigOpType.DELETE),
    ])
    admin.incremental_alter_configs([alter])[alter].result(30)
    configs = admin.describe_configs([res])[res].result(30)
    assert configs["retention.bytes"].value == "1048576"
    assert configs["retention.ms"].value == str(7 * 24 * 3600 * 1000)  # back to the default

    bad = ConfigResource("topic", name, incremental_configs=[
        ConfigEntry("retention.ms", "soon", incremental_operation=AlterConfigOpType.SET)])
    with pytest.raises(Exception, match="INVALID_CONFIG|integer"):
        admin.incremental_alter_configs([bad])[bad].result(30)

    admin.create_partitions([NewPartitions(name, 5)])[name].result(30)
    assert len(admin.list_topics(timeout=10).topics[name].partitions) == 5
    with pytest.raises(Exception, match="INVALID_PARTITIONS|only grow"):
        admin.create_partitions([NewPartitions(name, 2)])[name].result(30)
    produce_all(broker.bootstrap, [(name, 4, None, b"new partition", None, None)])

    cluster = admin.describe_cluster(request_timeout=10).result(30)
    assert [n.id for n in cluster.nodes] == [1] and cluster.controller.id == 1

    admin.delete_topics([name])[name].result(30)
    assert name not in admin.list_topics(timeout=10).topics
    with pytest.raises(Exception, match="UNKNOWN_TOPIC"):
        admin.delete_topics([name])[name].result(30)


def test_kafka_python_admin(broker: BrokerProcess) -> None:
    from kafka.admin import ConfigResource as KConfigResource
    from kafka.admin import ConfigResourceType, KafkaAdminClient
    from kafka.admin import NewTopic as KNewTopic

    admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap)
    name = f"kpa-{uuid.uuid4().hex[:6]}"
    admin.create_topics([KNewTopic(name, 2, 1, topic_configs={"max.message.bytes": "5000"})])
    assert name in admin.list_topics()
    described = admin.describe_configs([KConfigResource(ConfigResourceType.TOPIC, name)])
    assert "5000" in repr(described)
    admin.delete_topics([name])
    assert name not in admin.list_topics()
    admin.close()


def test_retention_advances_log_start_but_offsets_continue(brokers, file_store) -> None:  # type: ignore[no-untyped-def]
    b = brokers(file_store, "--compact-after-ms", "0", "--checkpoint-interval-ms", "200")
    topic = f"ret-{uuid.uuid4().hex[:6]}"
    create_topic(b.bootstrap, topic)
    old = int(time.time() * 1000) - 3_600_000
    produce_all(b.bootstrap, [(topic, 0, None, f"old{i}".encode(), None, old) for i in range(20)])
    admin = AdminClient({"bootstrap.servers": b.bootstrap})
    alter = ConfigResource("topic", topic, incremental_configs=[
        ConfigEntry("retention.ms", "60000", incremental_operation=AlterConfigOpType.SET)])
    admin.incremental_alter_configs([alter])[alter].result(30)
    c = Consumer({"bootstrap.servers": b.bootstrap, "group.id": "r", "enable.auto.commit": False})
    wait_until(lambda: c.get_watermark_offsets(TopicPartition(topic, 0), 5, cached=False) == (20, 20), 30,
               message="log start offset to reach 20 after retention")
    reports = produce_all(b.bootstrap, [(topic, 0, None, b"fresh", None, None)])
    assert reports[0].offset() == 20, "offsets must continue after retention, never reset"
    assert consume_exactly(b.bootstrap, topic, 0, 20, 1)[0].value() == b"fresh"
    c.close()


def _run_broker_expect_exit(args: list[str], env: dict[str, str], tmp_path) -> tuple[int, str]:  # type: ignore[no-untyped-def]
    cmd = [sys.executable, "-m", "floe_cli", "broker", "--listen", f"127.0.0.1:{free_port()}",
           "--http", f"127.0.0.1:{free_port()}", *args]
    proc = subprocess.run(cmd, capture_output=True, timeout=90,
                          env={"PYTHONPATH": str(ROOT / "broker"), "PATH": "/usr/bin:/bin", **env})
    return proc.returncode, (proc.stdout + proc.stderr).decode()


def test_missing_bucket_fails_fast_with_the_reason(moto_s3, tmp_path) -> None:  # type: ignore[no-untyped-def]
    spec = s3_spec(moto_s3, "x")
    code, out = _run_broker_expect_exit(
        ["--storage", "s3://no-such-bucket-floe/x", *spec.flags], spec.env, tmp_path)
    assert code == 2
    assert "no-such-bucket-floe" in out and "cannot start" in out


def test_wrong_credentials_fail_fast(moto_s3, tmp_path) -> None:  # type: ignore[no-untyped-def]
    spec = s3_spec(moto_s3, "x")
    env = {**spec.env, "AWS_SECRET_ACCESS_KEY": "wrong"}
    code, out = _run_broker_expect_exit(["--storage", spec.url, *spec.flags], env, tmp_path)
    assert code == 2
    assert "cannot start" in out and ("credential" in out.lower() or "signature" in out.lower()
                                      or "access" in out.lower())


def test_unreachable_endpoint_fails_fast(tmp_path) -> None:  # type: ignore[no-untyped-def]
    port = free_port()
    code, out = _run_broker_expect_exit(
        ["--storage", "s3://bucket/x", "--s3-endpoint", f"http://127.0.0.1:{port}", "--s3-path-style"],
        {"AWS_ACCESS_KEY_ID": "a", "AWS_SECRET_ACCESS_KEY": "b", "AWS_DEFAULT_REGION": "us-east-1"}, tmp_path)
    assert code == 2
    assert f"127.0.0.1:{port}" in out


def test_unwritable_file_store_fails_fast(tmp_path) -> None:  # type: ignore[no-untyped-def]
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    code, out = _run_broker_expect_exit(["--storage", f"file://{blocker}/sub"], {}, tmp_path)
    assert code == 2 and "cannot start" in out


def test_health_ready_metrics_and_cluster_view(broker: BrokerProcess) -> None:
    assert broker.get("/healthz")[0] == 200
    status, body = broker.get("/readyz")
    assert status == 200 and body["node"] == 1
    topic = f"m-{uuid.uuid4().hex[:6]}"
    create_topic(broker.bootstrap, topic, 2)
    produce_all(broker.bootstrap, [(topic, 1, None, b"x" * 100, None, None)])
    text = broker.metrics_text()
    for name in ("floe_wal_puts_total", "floe_bytes_in_total", "floe_requests_total",
                 "floe_objectstore_requests_total", "floe_partitions_led"):
        assert name in text, f"{name} missing from /metrics"
    assert f'floe_partition_bytes_in_total{{partition="1",topic="{topic}"}}' in text
    status, view = broker.get("/v1/cluster")
    assert status == 200 and view["controller"] == 1
    assert {(p["topic"], p["partition"]) for p in view["partitions"]} >= {(topic, 0), (topic, 1)}
    assert view["brokers"][0]["partitions"] >= 2
