"""Topic and broker configs as Kafka clients see them: confluent-kafka, kafka-python, aiokafka, Kafka's tools.

One broker process on a file:// store serves the module; each test uses its own topics.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka import Consumer, KafkaException, TopicPartition
from confluent_kafka.admin import (
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    ConfigSource,
    NewTopic,
    OffsetSpec,
)

from tests.conftest import BrokerFactory, StoreSpec
from tests.infra.apache_kafka import KafkaUnavailable, run_tool
from tests.infra.broker import BrokerProcess, wait_until
from tests.test_clients import consume_exactly, create_topic, produce_all

SET, DELETE, APPEND, SUBTRACT = (AlterConfigOpType.SET, AlterConfigOpType.DELETE, AlterConfigOpType.APPEND,
                                 AlterConfigOpType.SUBTRACT)
KAFKA_TOPIC_CONFIGS = {
    "cleanup.policy", "compression.gzip.level", "compression.lz4.level", "compression.type",
    "compression.zstd.level", "delete.retention.ms", "file.delete.delay.ms", "flush.messages", "flush.ms",
    "follower.replication.throttled.replicas", "index.interval.bytes", "leader.replication.throttled.replicas",
    "local.retention.bytes", "local.retention.ms", "max.compaction.lag.ms", "max.message.bytes",
    "message.timestamp.after.max.ms", "message.timestamp.before.max.ms", "message.timestamp.type",
    "min.cleanable.dirty.ratio", "min.compaction.lag.ms", "min.insync.replicas", "preallocate",
    "remote.log.copy.disable", "remote.log.delete.on.disable", "remote.storage.enable", "retention.bytes",
    "retention.ms", "segment.bytes", "segment.index.bytes", "segment.jitter.ms", "segment.ms",
    "unclean.leader.election.enable",
}


@pytest.fixture(scope="module")
def floe(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerProcess]:
    tmp: Path = tmp_path_factory.mktemp("configs")
    factory = BrokerFactory(tmp)
    try:
        yield factory(StoreSpec(kind="file", url=f"file://{tmp / 'bucket'}"),
                      "--compact-after-ms", "0", "--checkpoint-interval-ms", "200")
    finally:
        factory.stop_all()


def _admin(b: BrokerProcess) -> AdminClient:
    return AdminClient({"bootstrap.servers": b.bootstrap})


def _name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


def _describe(admin: AdminClient, kind: str, name: str) -> dict[str, ConfigEntry]:
    res = ConfigResource(kind, name)
    return admin.describe_configs([res])[res].result(30)  # type: ignore[no-any-return]


def _alter(admin: AdminClient, kind: str, name: str, *entries: ConfigEntry) -> None:
    res = ConfigResource(kind, name, incremental_configs=list(entries))
    admin.incremental_alter_configs([res])[res].result(30)


def _config_command(*args: str, bootstrap: str, tool: str = "ConfigCommand") -> str:
    """One of Kafka's tools (kafka-configs by default; the Java AdminClient): its output, or a failed test."""
    try:
        done = run_tool(f"org.apache.kafka.tools.{tool}", "--bootstrap-server", bootstrap, *args,
                        timeout=300, heap="256m")
    except KafkaUnavailable as exc:
        pytest.skip(f"Kafka's tools are not available: {exc}")
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def _node(admin: AdminClient) -> str:
    return str(next(iter(admin.list_topics(timeout=10).brokers)))


def test_describe_answers_every_topic_config_with_source_and_synonyms(floe: BrokerProcess) -> None:
    admin = _admin(floe)
    topic = _name("desc")
    create_topic(floe.bootstrap, topic, config={"retention.ms": "60000", "cleanup.policy": "compact"})
    configs = _describe(admin, "topic", topic)
    assert KAFKA_TOPIC_CONFIGS <= set(configs), KAFKA_TOPIC_CONFIGS - set(configs)
    assert configs["retention.ms"].value == "60000"
    assert configs["retention.ms"].source == ConfigSource.DYNAMIC_TOPIC_CONFIG.value
    assert configs["cleanup.policy"].value == "compact"
    assert configs["segment.bytes"].value == str(1024**3)
    assert configs["segment.bytes"].source == ConfigSource.DEFAULT_CONFIG.value
    assert configs["min.cleanable.dirty.ratio"].value == "0.5"
    # synonyms: the override first, then the broker default it replaces
    synonyms = list(configs["retention.ms"].synonyms)
    assert synonyms[0] == "retention.ms" and "log.retention.ms" in synonyms, synonyms


def test_broker_configs_include_what_clients_read(floe: BrokerProcess) -> None:
    admin = _admin(floe)
    configs = _describe(admin, "broker", _node(admin))
    for name in ("advertised.listeners", "num.partitions", "default.replication.factor", "log.retention.ms",
                 "auto.create.topics.enable", "offsets.topic.num.partitions", "message.max.bytes",
                 "log.cleanup.policy", "min.insync.replicas"):
        assert name in configs, name
    assert floe.bootstrap.split(":")[-1] in (configs["advertised.listeners"].value or "")
    assert configs["advertised.listeners"].is_read_only
    assert not configs["log.retention.ms"].is_read_only
    assert configs["ssl.keystore.password"].is_sensitive and configs["ssl.keystore.password"].value is None
    assert len(configs) > 40


def test_java_admin_creates_topics_and_describes_every_config(floe: BrokerProcess) -> None:
    topic = _name("java")
    # the Java AdminClient reads the configs CreateTopics answers (it failed on a null list)
    out = _config_command("--create", "--topic", topic, "--partitions", "2", "--config", "retention.ms=90000",
                          bootstrap=floe.bootstrap, tool="TopicCommand")
    assert f"Created topic {topic}" in out, out
    described = _config_command("--entity-type", "topics", "--entity-name", topic, "--describe", "--all",
                                bootstrap=floe.bootstrap)
    assert "retention.ms=90000 sensitive=false synonyms={DYNAMIC_TOPIC_CONFIG:retention.ms=90000" in described, \
        described
    assert "segment.bytes=1073741824" in described, described
    # kafka-configs lists client-metrics and group resources through ListConfigResources (Floe has none)
    for kind in ("client-metrics", "groups"):
        _config_command("--entity-type", kind, "--describe", bootstrap=floe.bootstrap)
    bad = run_tool("org.apache.kafka.tools.ConfigCommand", "--bootstrap-server", floe.bootstrap, "--entity-type",
                   "topics", "--entity-name", topic, "--alter", "--add-config", "bogus.config=1", timeout=300,
                   heap="256m")
    assert bad.returncode != 0 and "Unknown topic config name: bogus.config" in bad.stdout + bad.stderr


def test_unknown_names_and_invalid_values_are_invalid_config_with_kafkas_message(floe: BrokerProcess) -> None:
    admin = _admin(floe)
    topic = _name("bad")
    create_topic(floe.bootstrap, topic)
    cases = [
        (ConfigEntry("bogus.config", "1", incremental_operation=SET), "Unknown topic config name: bogus.config"),
        (ConfigEntry("retention.ms", "soon", incremental_operation=SET),
         "Invalid value soon for configuration retention.ms: Not a number of type LONG"),
        (ConfigEntry("retention.ms", "-5", incremental_operation=SET),
         "Invalid value -5 for configuration retention.ms: Value must be at least -1"),
        (ConfigEntry("message.timestamp.type", "Now", incremental_operation=SET),
         "String must be one of: CreateTime, LogAppendTime"),
        (ConfigEntry("cleanup.policy", "compact,shred", incremental_operation=SET),
         "String must be one of: compact, delete"),
        (ConfigEntry("retention.ms", "1", incremental_operation=APPEND), "because its type is not LIST"),
    ]
    for entry, message in cases:
        with pytest.raises(KafkaException) as caught:
            _alter(admin, "topic", topic, entry)
        assert "INVALID_CONFIG" in str(caught.value) and message in str(caught.value), str(caught.value)
    fresh = _name("bad")
    with pytest.raises(KafkaException, match="Unknown topic config name: bogus.config"):
        admin.create_topics([NewTopic(fresh, 1, 1, config={"bogus.config": "x"})])[fresh].result(30)
    assert _describe(admin, "topic", topic)["retention.ms"].source == ConfigSource.DEFAULT_CONFIG.value


def test_append_and_subtract_on_list_configs(floe: BrokerProcess) -> None:
    admin = _admin(floe)
    topic = _name("list")
    create_topic(floe.bootstrap, topic)
    _alter(admin, "topic", topic, ConfigEntry("cleanup.policy", "compact", incremental_operation=APPEND))
    assert _describe(admin, "topic", topic)["cleanup.policy"].value == "delete,compact"  # from the default
    _alter(admin, "topic", topic, ConfigEntry("cleanup.policy", "delete", incremental_operation=SUBTRACT))
    assert _describe(admin, "topic", topic)["cleanup.policy"].value == "compact"
    _alter(admin, "topic", topic, ConfigEntry("cleanup.policy", None, incremental_operation=DELETE))
    described = _describe(admin, "topic", topic)["cleanup.policy"]
    assert (described.value, described.source) == ("delete", ConfigSource.DEFAULT_CONFIG.value)


def test_legacy_alter_configs_replaces_all_overrides_kafka_python_and_aiokafka(floe: BrokerProcess) -> None:
    from kafka.admin import ConfigResource as KResource
    from kafka.admin import ConfigResourceType, KafkaAdminClient

    admin = _admin(floe)
    topic = _name("legacy")
    create_topic(floe.bootstrap, topic, config={"retention.bytes": "1048576"})
    kadmin = KafkaAdminClient(bootstrap_servers=floe.bootstrap)
    try:
        # forced to the legacy API, kafka-python resends the overrides it described (source TOPIC_CONFIG)
        kadmin.alter_configs([KResource(ConfigResourceType.TOPIC, topic, configs={"retention.ms": "120000"})],
                             incremental=False)
        configs = _describe(admin, "topic", topic)
        assert configs["retention.ms"].value == "120000"
        assert configs["retention.bytes"].value == "1048576", "kafka-python kept the override it described"
        reply = kadmin.alter_configs([KResource(ConfigResourceType.TOPIC, topic, configs={"bogus.config": "1"})],
                                     incremental=False, raise_on_unknown=False)
        assert "Unknown topic config name: bogus.config" in str(reply), reply
    finally:
        kadmin.close()

    async def with_aiokafka() -> None:
        from aiokafka.admin import AIOKafkaAdminClient
        from aiokafka.admin.config_resource import ConfigResource as AResource
        from aiokafka.admin.config_resource import ConfigResourceType as AType

        client = AIOKafkaAdminClient(bootstrap_servers=floe.bootstrap)
        await client.start()
        try:
            await client.alter_configs([AResource(AType.TOPIC, topic, configs={"max.message.bytes": "4096"})])
            described = await client.describe_configs([AResource(AType.TOPIC, topic)])
            entries = {e[0]: e[1] for r in described for res in r.resources for e in res[4]}
            assert entries["max.message.bytes"] == "4096"
            # aiokafka sends only what it was given: every other override goes (AlterConfigs replaces)
            assert entries["retention.ms"] == str(7 * 24 * 3600 * 1000)
            assert entries["retention.bytes"] == "-1"
        finally:
            await client.close()

    asyncio.run(with_aiokafka())


def test_dynamic_broker_defaults_are_inherited_live_and_per_broker_wins(floe: BrokerProcess) -> None:
    admin = _admin(floe)
    node = _node(admin)
    topic = _name("dyn")
    create_topic(floe.bootstrap, topic)
    old = int(time.time() * 1000) - 3_600_000
    produce_all(floe.bootstrap, [(topic, 0, None, f"old{i}".encode(), None, old) for i in range(10)])
    try:
        _config_command("--entity-type", "brokers", "--entity-default", "--alter",
                        "--add-config", "log.retention.ms=60000", bootstrap=floe.bootstrap)
        described = _describe(admin, "topic", topic)["retention.ms"]
        assert (described.value, described.source) == ("60000", ConfigSource.DYNAMIC_DEFAULT_BROKER_CONFIG.value)
        listed = _config_command("--entity-type", "brokers", "--entity-default", "--describe",
                                 bootstrap=floe.bootstrap)
        assert "log.retention.ms=60000" in listed, listed
        # live: the topic without an override of its own drops its hour-old records
        c = Consumer({"bootstrap.servers": floe.bootstrap, "group.id": "d", "enable.auto.commit": False})
        wait_until(lambda: c.get_watermark_offsets(TopicPartition(topic, 0), 5, cached=False) == (10, 10), 60,
                   message="log start to reach 10 after the cluster-wide log.retention.ms")
        c.close()
        _alter(admin, "broker", node, ConfigEntry("log.retention.ms", "7200000", incremental_operation=SET))
        broker_view = _describe(admin, "broker", node)["log.retention.ms"]
        assert (broker_view.value, broker_view.source) == ("7200000", ConfigSource.DYNAMIC_BROKER_CONFIG.value)
        assert _describe(admin, "topic", topic)["retention.ms"].value == "7200000"
        with pytest.raises(KafkaException, match="Cannot update these configs dynamically: Set.num.partitions"):
            _alter(admin, "broker", node, ConfigEntry("num.partitions", "3", incremental_operation=SET))
        with pytest.raises(KafkaException, match="Unknown broker config name: bogus.config"):
            _alter(admin, "broker", node, ConfigEntry("bogus.config", "3", incremental_operation=SET))
    finally:
        _alter(admin, "broker", node, ConfigEntry("log.retention.ms", None, incremental_operation=DELETE))
        _config_command("--entity-type", "brokers", "--entity-default", "--alter",
                        "--delete-config", "log.retention.ms", bootstrap=floe.bootstrap)
    described = _describe(admin, "topic", topic)["retention.ms"]
    assert described.source == ConfigSource.DEFAULT_CONFIG.value


def test_log_append_time_stamps_batches_and_consumers_see_it(floe: BrokerProcess) -> None:
    from confluent_kafka import TIMESTAMP_LOG_APPEND_TIME

    topic = _name("lat")
    create_topic(floe.bootstrap, topic, config={"message.timestamp.type": "LogAppendTime"})
    before = int(time.time() * 1000)
    produce_all(floe.bootstrap, [(topic, 0, b"k", f"v{i}".encode(), [("h", b"1")], 1000) for i in range(5)])
    got = consume_exactly(floe.bootstrap, topic, 0, 0, 5)
    for m in got:
        kind, ts = m.timestamp()
        assert kind == TIMESTAMP_LOG_APPEND_TIME, m.timestamp()
        assert ts >= before - 1000, (ts, before)  # the broker's clock, not the producer's 1000
        assert m.headers() == [("h", b"1")] and m.key() == b"k"


def test_list_offsets_max_timestamp_answers_the_record_with_the_max_timestamp(floe: BrokerProcess) -> None:
    admin = _admin(floe)
    topic = _name("maxts")
    create_topic(floe.bootstrap, topic)
    base = int(time.time() * 1000) - 60_000
    stamps = [base + 1000, base + 5000, base + 3000, base + 2000, base + 4000]
    # one linger window: the five records travel (and are stored) as one batch
    produce_all(floe.bootstrap, [(topic, 0, None, b"x", None, ts) for ts in stamps], **{"linger.ms": 200})
    tp = TopicPartition(topic, 0)
    result = admin.list_offsets({tp: OffsetSpec.max_timestamp()})[tp].result(30)
    assert (result.offset, result.timestamp) == (1, base + 5000)


def test_authorized_operations_come_from_the_authorizer(floe: BrokerProcess) -> None:
    """With authorization off every operation is allowed: the bit fields say so instead of 0."""
    from confluent_kafka import TopicCollection
    from confluent_kafka.admin import AclOperation

    admin = _admin(floe)
    topic = _name("ops")
    create_topic(floe.bootstrap, topic)
    cluster = admin.describe_cluster(include_authorized_operations=True).result(30)
    assert AclOperation.ALTER_CONFIGS in cluster.authorized_operations, cluster.authorized_operations
    described = admin.describe_topics(TopicCollection([topic]), include_authorized_operations=True)[topic].result(30)
    assert {AclOperation.READ, AclOperation.WRITE, AclOperation.DESCRIBE_CONFIGS} <= set(
        described.authorized_operations), described.authorized_operations


def test_a_cluster_wide_default_set_on_one_broker_is_seen_by_every_broker(brokers, file_store) -> None:  # type: ignore[no-untyped-def]
    """The dynamic config is metadata: whichever broker took the change, every broker answers it."""
    first, second = brokers(file_store), brokers(file_store)
    admin = AdminClient({"bootstrap.servers": f"{first.bootstrap},{second.bootstrap}"})
    wait_until(lambda: len(admin.list_topics(timeout=10).brokers) == 2, 60, message="both brokers registered")
    _config_command("--entity-type", "brokers", "--entity-default", "--alter",
                    "--add-config", "log.retention.bytes=1048576", bootstrap=first.bootstrap)
    for node in admin.list_topics(timeout=10).brokers:  # each broker resource is answered by that broker
        def seen(node: int = node) -> bool:
            entry = _describe(admin, "broker", str(node))["log.retention.bytes"]
            return (entry.value, entry.source) == ("1048576", ConfigSource.DYNAMIC_DEFAULT_BROKER_CONFIG.value)
        wait_until(seen, 30, message=f"broker {node} to answer the cluster-wide log.retention.bytes")
