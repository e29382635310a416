"""The Apache Kafka reference peer starts, takes records from a real client, serves them back, and stops.

Skipped, with the reason, where Kafka cannot run (no java or mvn, or Maven
could not resolve the jars); the first run downloads about 55 MB of jars into
``~/.cache/floe/kafka-<version>``.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from tests.infra.apache_kafka import PRODUCER_PERFORMANCE, KafkaCluster, KafkaUnavailable, kafka_jars, run_tool
from tests.infra.broker import wait_until

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def jars() -> Path:
    try:
        return kafka_jars()
    except KafkaUnavailable as exc:
        pytest.skip(f"Apache Kafka unavailable: {exc}")


def test_single_node_round_trip_and_perf_tool(jars: Path, tmp_path: Path) -> None:
    cluster = KafkaCluster(tmp_path / "kafka", size=1, heap="512m", jars=jars).start()
    pids = cluster.pids
    try:
        admin = AdminClient({"bootstrap.servers": cluster.bootstrap})
        admin.create_topics([NewTopic("smoke", 3, 1)])["smoke"].result(60)
        producer = Producer({"bootstrap.servers": cluster.bootstrap, "acks": "all"})
        sent = [f"record-{i}".encode() for i in range(20)]
        for value in sent:
            producer.produce("smoke", value=value, key=value)
        assert producer.flush(60) == 0

        consumer = Consumer({"bootstrap.servers": cluster.bootstrap, "group.id": "smoke",
                             "auto.offset.reset": "earliest"})
        consumer.subscribe(["smoke"])
        got: list[bytes] = []

        def all_read() -> bool:
            got.extend(m.value() or b"" for m in consumer.consume(100, 1.0) if m.error() is None)
            return len(got) >= len(sent)

        wait_until(all_read, 120, interval=0, message="the 20 records back from Kafka")
        consumer.close()
        assert sorted(got) == sorted(sent)

        perf = run_tool(PRODUCER_PERFORMANCE, "--topic", "smoke", "--num-records", "1000", "--record-size", "100",
                        "--throughput", "-1", "--producer-props", f"bootstrap.servers={cluster.bootstrap}",
                        jars=jars, timeout=180)
        assert perf.returncode == 0, perf.stderr
        assert "1000 records sent" in perf.stdout
    finally:
        cluster.stop()
    for pid in pids:
        assert not Path(f"/proc/{pid}").exists() or "zombie" in Path(f"/proc/{pid}/status").read_text().lower()
