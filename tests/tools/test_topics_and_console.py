"""kafka-topics, kafka-console-producer and kafka-console-consumer, as an operator runs them."""

from __future__ import annotations

import re
import uuid

from tests.infra.kafka_tools import ok, tool


def name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


def test_create_describe_alter_list_and_delete_a_topic(bootstrap: str) -> None:
    topic = name("kt")
    out = ok("kafka-topics", "--bootstrap-server", bootstrap, "--create", "--topic", topic, "--partitions", "3",
             "--replication-factor", "1", "--config", "retention.ms=3600000")
    assert f"Created topic {topic}." in out
    described = ok("kafka-topics", "--bootstrap-server", bootstrap, "--describe", "--topic", topic)
    assert re.search(rf"Topic: {topic}\tTopicId: \S+\tPartitionCount: 3\tReplicationFactor: 1\t"
                     r"Configs: retention.ms=3600000", described), described
    rows = re.findall(r"Partition: (\d+)\tLeader: (\d+)\tReplicas: (\d+)\tIsr: (\d+)", described)
    assert sorted(int(r[0]) for r in rows) == [0, 1, 2], described
    assert all(r[1] == r[2] == r[3] for r in rows), "leader, replicas and ISR are the one broker"

    ok("kafka-topics", "--bootstrap-server", bootstrap, "--alter", "--topic", topic, "--partitions", "5")
    described = ok("kafka-topics", "--bootstrap-server", bootstrap, "--describe", "--topic", topic)
    assert "PartitionCount: 5" in described, described
    assert topic in ok("kafka-topics", "--bootstrap-server", bootstrap, "--list").split()

    ok("kafka-topics", "--bootstrap-server", bootstrap, "--delete", "--topic", topic)
    assert topic not in ok("kafka-topics", "--bootstrap-server", bootstrap, "--list").split()


def test_creating_an_existing_topic_is_a_clear_error(bootstrap: str) -> None:
    topic = name("kx")
    ok("kafka-topics", "--bootstrap-server", bootstrap, "--create", "--topic", topic, "--partitions", "1")
    again = tool("kafka-topics", "--bootstrap-server", bootstrap, "--create", "--topic", topic, "--partitions", "1")
    assert again.returncode != 0
    assert "TopicExistsException" in again.stdout + again.stderr, again.stdout + again.stderr


def test_exclude_internal_leaves_out_consumer_offsets(bootstrap: str) -> None:
    topic = name("ki")
    ok("kafka-topics", "--bootstrap-server", bootstrap, "--create", "--topic", topic, "--partitions", "1")
    ok("kafka-console-producer", "--bootstrap-server", bootstrap, "--topic", topic, stdin="x\n")
    ok("kafka-console-consumer", "--bootstrap-server", bootstrap, "--topic", topic, "--from-beginning",
       "--max-messages", "1", "--group", name("kig"), "--timeout-ms", "60000")
    # as on Kafka: --list names the internal topic, --exclude-internal (the is_internal flag) leaves it out
    assert "__consumer_offsets" in ok("kafka-topics", "--bootstrap-server", bootstrap, "--list").split()
    listed = ok("kafka-topics", "--bootstrap-server", bootstrap, "--list", "--exclude-internal").split()
    assert "__consumer_offsets" not in listed and topic in listed
    everything = ok("kafka-topics", "--bootstrap-server", bootstrap, "--describe", "--topic", "__consumer_offsets")
    assert "PartitionCount:" in everything, everything


def test_console_producer_to_console_consumer(bootstrap: str) -> None:
    topic = name("kc")
    ok("kafka-topics", "--bootstrap-server", bootstrap, "--create", "--topic", topic, "--partitions", "2")
    lines = [f"key{i}:value {i}" for i in range(20)]
    ok("kafka-console-producer", "--bootstrap-server", bootstrap, "--topic", topic, "--reader-property",
       "parse.key=true", "--reader-property", "key.separator=:", "--producer-property", "acks=all",
       stdin="\n".join(lines) + "\n")
    out = ok("kafka-console-consumer", "--bootstrap-server", bootstrap, "--topic", topic, "--from-beginning",
             "--max-messages", "20", "--formatter-property", "print.key=true", "--formatter-property",
             "key.separator=:", "--timeout-ms", "60000")
    assert sorted(out.splitlines()) == sorted(lines)
