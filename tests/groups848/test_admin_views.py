"""What admin tools show for a KIP-848 group: confluent-kafka's AdminClient and Kafka's kafka-consumer-groups."""

from __future__ import annotations

import pytest
from confluent_kafka import ConsumerGroupType
from confluent_kafka.admin import AdminClient

from tests.groups848.conftest import FAST_848
from tests.groups848.test_librdkafka import Members, consumer, name
from tests.infra.apache_kafka import KafkaUnavailable, kafka_jars, run_tool
from tests.infra.broker import wait_until
from tests.test_clients import create_topic, produce_all


def test_admin_clients_list_and_describe_a_consumer_protocol_group(brokers, file_store) -> None:  # type: ignore[no-untyped-def]
    b = brokers(file_store, *FAST_848)
    topic, group = name("ta848"), name("ga848")
    create_topic(b.bootstrap, topic, 4)
    produce_all(b.bootstrap, [(topic, p, None, b"v", None, None) for _ in range(3) for p in range(4)])
    g = Members()
    admin = AdminClient({"bootstrap.servers": b.bootstrap})
    try:
        g.add("a", consumer(b.bootstrap, group, "a"), [topic])
        wait_until(lambda: (g.pump(0.1), len(g.seen) == 12)[1], 60, message="all records read")
        listed = admin.list_consumer_groups(types={ConsumerGroupType.CONSUMER}).result(30)
        mine = [x for x in listed.valid if x.group_id == group]
        assert len(mine) == 1 and mine[0].type == ConsumerGroupType.CONSUMER
        classic = admin.list_consumer_groups(types={ConsumerGroupType.CLASSIC}).result(30)
        assert group not in {x.group_id for x in classic.valid}
        described = admin.describe_consumer_groups([group])[group].result(30)
        assert str(described.state).endswith("STABLE"), described.state
        assert [m.client_id for m in described.members] == ["a"]
        assert {tp.partition for tp in described.members[0].assignment.topic_partitions} == {0, 1, 2, 3}
        try:
            jars = kafka_jars()
        except KafkaUnavailable as exc:
            pytest.skip(str(exc))
        wait_until(lambda: (g.pump(0.1), all(o >= 3 for o in committed_offsets(g, topic)))[1], 60,
                   message="auto-commit at the end")
        out = run_tool("org.apache.kafka.tools.consumer.group.ConsumerGroupCommand", "--bootstrap-server",
                       b.bootstrap, "--describe", "--group", group, jars=jars, timeout=120)
        assert out.returncode == 0, out.stdout + out.stderr
        rows = [line.split() for line in out.stdout.splitlines() if line.startswith(group)]
        assert sorted(int(r[2]) for r in rows) == [0, 1, 2, 3], out.stdout
        assert all(r[3] == "3" and r[5] == "0" for r in rows), out.stdout  # CURRENT-OFFSET 3, LAG 0
        state = run_tool("org.apache.kafka.tools.consumer.group.ConsumerGroupCommand", "--bootstrap-server",
                         b.bootstrap, "--describe", "--group", group, "--state", jars=jars, timeout=120)
        assert "uniform" in state.stdout and "Stable" in state.stdout, state.stdout
    finally:
        g.close()


def committed_offsets(g: Members, topic: str) -> list[int]:
    from confluent_kafka import TopicPartition

    c = g.members["a"]
    return [tp.offset for tp in c.committed([TopicPartition(topic, p) for p in range(4)], timeout=30)]
