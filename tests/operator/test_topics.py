"""StreamTopics end to end: kopf against kmock, the operator's confluent-kafka admin client against a real broker.

The operator runs for real (kopf + ``floe_operator.main``) and reaches the
StreamCluster's Kafka admin API with its production client
(``ConfluentTopicAdmin``); only the bootstrap address is changed from the
bootstrap Service's DNS name to a broker process started here, since kmock
runs no pods. What the tests look at is what a user sees: the topic as
another Kafka client describes it, the StreamTopic's status and its Events.
They act as other people would: ``kubectl apply`` (merge patches), and a
confluent-kafka AdminClient standing in for ``kafka-configs``/``kafka-topics``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import sc_samples
from confluent_kafka import TopicCollection
from confluent_kafka.admin import (
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    ConfigSource,
    NewPartitions,
    NewTopic,
)

from conftest import NAMESPACE, ST, Api, eventually, running_operator
from floe_operator import config as config_
from floe_operator.kafka_admin import Connection
from floe_operator.topic_admin import ConfluentTopicAdmin
from tests.infra.broker import BrokerProcess

TOPICS_PATH = f"/apis/floe.dev/v1alpha1/namespaces/{NAMESPACE}/streamtopics"
WEEK_MS = str(7 * 24 * 3600 * 1000)
# Under a loaded machine a broker round trip plus a kopf cycle can take seconds.
WITHIN = 60.0


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerProcess]:
    """One real broker for the module; each test uses its own topic names."""
    tmp = tmp_path_factory.mktemp("topics-broker")
    proc = BrokerProcess(storage=f"file://{tmp / 'bucket'}", cluster="topics", log_path=tmp / "broker.log", env={},
                         extra=["--session-timeout-ms", "3000", "--fsync", "false"])
    proc.start()
    try:
        yield proc
    finally:
        proc.stop()


class Kafka:
    """Another Kafka client on the broker: what a person with kafka-topics / kafka-configs sees and does."""

    def __init__(self, bootstrap: str) -> None:
        self.admin = AdminClient({"bootstrap.servers": bootstrap})

    def _describe(self, name: str) -> dict[str, Any] | None:
        res = ConfigResource("topic", name)
        try:
            topic = self.admin.describe_topics(TopicCollection([name]))[name].result(30)
            entries = self.admin.describe_configs([res])[res].result(30)
        except Exception as exc:  # noqa: BLE001 - librdkafka's KafkaException
            if "UNKNOWN_TOPIC" in str(exc):  # also when deleted between the two calls
                return None
            raise
        return {"id": str(topic.topic_id), "partitions": len(topic.partitions),
                "configs": {k: e.value for k, e in entries.items()},
                "overrides": {k: e.value for k, e in entries.items()
                              if ConfigSource(e.source) is ConfigSource.DYNAMIC_TOPIC_CONFIG}}

    async def describe(self, name: str) -> dict[str, Any] | None:
        return await asyncio.to_thread(self._describe, name)

    async def create(self, name: str, partitions: int, configs: dict[str, str]) -> None:
        def run() -> None:
            self.admin.create_topics([NewTopic(name, partitions, config=configs)])[name].result(30)
        await asyncio.to_thread(run)

    async def alter(self, name: str, set_: dict[str, str]) -> None:
        def run() -> None:
            res = ConfigResource("topic", name, incremental_configs=[
                ConfigEntry(k, v, incremental_operation=AlterConfigOpType.SET) for k, v in set_.items()])
            self.admin.incremental_alter_configs([res])[res].result(30)
        await asyncio.to_thread(run)

    async def grow(self, name: str, total: int) -> None:
        def run() -> None:
            self.admin.create_partitions([NewPartitions(name, total)])[name].result(30)
        await asyncio.to_thread(run)


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


async def create_topic(api: Api, name: str, spec: dict[str, Any]) -> None:
    body = {"apiVersion": "floe.dev/v1alpha1", "kind": "StreamTopic",
            "metadata": {"name": name, "namespace": NAMESPACE, "uid": f"uid-topic-{name}",
                         # As the API server stamps it (kmock does not): the older claim on a topic wins.
                         "creationTimestamp": datetime.datetime.now(tz=datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")},
            "spec": {"cluster": "demo", **spec}}
    await api.request("POST", TOPICS_PATH, body)


async def patch_topic(api: Api, name: str, spec_patch: dict[str, Any]) -> None:
    await api.request("PATCH", f"{TOPICS_PATH}/{name}", {"spec": spec_patch})


async def delete_topic(api: Api, name: str) -> None:
    await api.request("DELETE", f"{TOPICS_PATH}/{name}")


def topic_status(api: Api, name: str) -> dict[str, Any]:
    obj = api.get(ST, name)
    assert obj is not None, f"StreamTopic {name} is gone"
    return dict(obj.get("status") or {})


def condition(api: Api, name: str, type_: str = "Ready") -> dict[str, Any]:
    found = {c["type"]: c for c in topic_status(api, name).get("conditions") or []}
    return found.get(type_) or {}


def degraded(api: Api, name: str, reason: str) -> dict[str, Any] | None:
    cond = condition(api, name, "Degraded")
    return cond if cond.get("status") == "True" and cond.get("reason") == reason else None


def events_of(api: Api, name: str) -> list[dict[str, Any]]:
    return [e for e in api.events() if (e.get("involvedObject") or {}).get("name") == name]


async def ready_cluster(api: Api) -> None:
    """A StreamCluster whose brokers the Deployment controller reports ready, as in a cluster."""
    await api.create_cluster(sc_samples.MINIMAL)
    await eventually(lambda: api.get("apps/v1/deployments", "demo-broker"), within=WITHIN)
    await api.set_deployment_status("demo-broker", {"observedGeneration": 1, "replicas": 1, "updatedReplicas": 1,
                                                     "readyReplicas": 1, "availableReplicas": 1})
    await eventually(lambda: (api.cluster().get("status") or {}).get("readyReplicas") == 1, within=WITHIN)


@pytest.fixture
def kafka(broker: BrokerProcess) -> Kafka:
    return Kafka(broker.bootstrap)


@pytest.fixture
def connections() -> list[Connection]:
    return []


def operating(api: Api, tmp_path: Path, broker: BrokerProcess, connections: list[Connection], *,
              resync_seconds: float = 600.0) -> Any:
    """The operator, its topic admin client pointed at ``broker``; ``connections`` records what it asked for."""

    def factory(connection: Connection) -> ConfluentTopicAdmin:
        connections.append(connection)
        return ConfluentTopicAdmin(dataclasses.replace(connection, bootstrap=broker.bootstrap))

    config = config_.OperatorConfig(broker_image="floe:test", retry_delay_seconds=0.5,
                                    topic_resync_seconds=resync_seconds)
    return running_operator(api, tmp_path, config=config, topic_admin_factory=factory)


@pytest.fixture
async def operator(api: Api, tmp_path: Path, broker: BrokerProcess,
                   connections: list[Connection]) -> AsyncIterator[None]:
    async with operating(api, tmp_path, broker, connections):
        yield


# ---- create, grow, alter, reset, refuse, delete -------------------------------------------------


async def test_create_grow_alter_reset_refuse_decrease_and_delete(
        api: Api, operator: None, kafka: Kafka, connections: list[Connection]) -> None:
    await ready_cluster(api)
    name = unique("orders")
    await create_topic(api, name, {"partitions": 3, "configs": {"retention.ms": 3600000, "cleanup.policy": "compact"}})

    async def created() -> dict[str, Any] | None:
        return await kafka.describe(name)

    topic = await eventually(created, within=WITHIN)
    assert topic["partitions"] == 3
    assert topic["overrides"] == {"retention.ms": "3600000", "cleanup.policy": "compact"}
    # The operator went through the bootstrap Service of the cluster's plaintext listener, anonymously.
    assert connections[-1].bootstrap == "demo-bootstrap.streaming.svc.cluster.local:9092"
    assert (connections[-1].security_protocol, connections[-1].mechanism) == ("PLAINTEXT", None)
    await eventually(lambda: condition(api, name).get("status") == "True", within=WITHIN)
    status = topic_status(api, name)
    assert status["topicName"] == name and status["partitions"] == 3 and status["topicId"] == topic["id"]
    assert status["configs"] == {"cleanup.policy": "compact", "retention.ms": "3600000"}
    assert status["observedGeneration"] == 1

    # kubectl apply with more partitions, retention changed and cleanup.policy dropped from the spec.
    await patch_topic(api, name, {"partitions": 6, "configs": {"retention.ms": 7200000, "cleanup.policy": None}})

    async def grown() -> bool:
        t = await kafka.describe(name)
        return t is not None and t["partitions"] == 6 and t["overrides"] == {"retention.ms": "7200000"}

    await eventually(grown, within=WITHIN)
    after = await kafka.describe(name)
    assert after is not None and after["configs"]["cleanup.policy"] == "delete"  # back to the default
    await eventually(lambda: topic_status(api, name).get("partitions") == 6
                     and topic_status(api, name).get("observedGeneration") == 2, within=WITHIN)
    assert topic_status(api, name)["configs"] == {"retention.ms": "7200000"}

    # Fewer partitions: refused as Kafka refuses it, with what to do; the topic keeps its six.
    await patch_topic(api, name, {"partitions": 2})
    refused = await eventually(lambda: degraded(api, name, "PartitionDecrease"), within=WITHIN)
    assert "has 6 partitions" in refused["message"] and "set spec.partitions to 6 or more" in refused["message"]
    assert condition(api, name)["status"] == "False"
    assert (await kafka.describe(name) or {})["partitions"] == 6
    await eventually(lambda: any(e["type"] == "Warning" and e["reason"] == "PartitionDecrease"
                                 for e in events_of(api, name)), within=WITHIN)

    # Deleting the StreamTopic deletes the topic (the finalizer), then the object goes.
    await delete_topic(api, name)

    async def gone() -> bool:
        return await kafka.describe(name) is None and api.get(ST, name) is None

    await eventually(gone, within=WITHIN)


async def test_retain_keeps_the_topic_and_topic_name_allows_kafka_only_names(
        api: Api, operator: None, kafka: Kafka) -> None:
    await ready_cluster(api)
    kafka_name = f"Payments_{uuid.uuid4().hex[:6]}"  # upper case and '_': not a Kubernetes name
    await create_topic(api, "payments", {"topicName": kafka_name, "partitions": 2, "deletionPolicy": "Retain"})

    async def created() -> dict[str, Any] | None:
        return await kafka.describe(kafka_name)

    await eventually(created, within=WITHIN)
    await eventually(lambda: topic_status(api, "payments").get("topicName") == kafka_name, within=WITHIN)
    await delete_topic(api, "payments")
    await eventually(lambda: api.get(ST, "payments") is None, within=WITHIN)
    kept = await kafka.describe(kafka_name)
    assert kept is not None and kept["partitions"] == 2
    await eventually(lambda: any(e["reason"] == "Retained" for e in events_of(api, "payments")), within=WITHIN)


# ---- drift, adoption, topics of clients ---------------------------------------------------------


async def test_drift_is_put_back_adopted_topics_follow_the_spec_and_client_topics_are_untouched(
        api: Api, tmp_path: Path, broker: BrokerProcess, kafka: Kafka, connections: list[Connection]) -> None:
    legacy, adopted, managed = unique("legacy"), unique("adopted"), unique("managed")
    # Topics clients created before any StreamTopic: one nobody claims, one a StreamTopic will name.
    await kafka.create(legacy, 2, {"retention.ms": "1000000"})
    await kafka.create(adopted, 1, {"retention.ms": "1000000", "max.message.bytes": "200000"})
    async with operating(api, tmp_path, broker, connections, resync_seconds=1.0):
        await ready_cluster(api)
        await create_topic(api, managed, {"partitions": 2, "configs": {"retention.ms": 3600000}})
        await create_topic(api, adopted, {"partitions": 3, "configs": {"retention.ms": 3600000}})

        async def matches(name: str, partitions: int, overrides: dict[str, str]) -> bool:
            t = await kafka.describe(name)
            return t is not None and t["partitions"] == partitions and t["overrides"] == overrides

        await eventually(lambda: matches(managed, 2, {"retention.ms": "3600000"}), within=WITHIN)
        # Adopting: the spec rules the client's topic: partitions grown, the client's other config reset.
        await eventually(lambda: matches(adopted, 3, {"retention.ms": "3600000"}), within=WITHIN)

        # Someone changes the managed topic with kafka-configs: the operator puts it back.
        await kafka.alter(managed, {"retention.ms": "5000", "segment.ms": "100000"})
        await eventually(lambda: matches(managed, 2, {"retention.ms": "3600000"}), within=WITHIN)
        corrected = await eventually(lambda: [e for e in events_of(api, managed) if e["reason"] == "DriftCorrected"],
                                     within=WITHIN)
        assert "retention.ms set to 3600000" in corrected[-1]["message"]
        assert "segment.ms reset to the cluster default" in corrected[-1]["message"]

        # Someone adds partitions with kafka-topics: they cannot be taken away, so the StreamTopic says so.
        await kafka.grow(managed, 4)
        refused = await eventually(lambda: degraded(api, managed, "PartitionDecrease"), within=WITHIN)
        assert "has 4 partitions" in refused["message"]
        await patch_topic(api, managed, {"partitions": 4})
        await eventually(lambda: condition(api, managed).get("status") == "True", within=WITHIN)

        await delete_topic(api, managed)
        await delete_topic(api, adopted)

        async def both_gone() -> bool:
            return await kafka.describe(managed) is None and await kafka.describe(adopted) is None

        await eventually(both_gone, within=WITHIN)
    # Through all of it, the topic no StreamTopic names kept its partitions and its config.
    untouched = await kafka.describe(legacy)
    assert untouched is not None and untouched["partitions"] == 2
    assert untouched["overrides"] == {"retention.ms": "1000000"}


async def test_a_second_streamtopic_for_the_same_topic_is_refused_and_deleting_it_keeps_the_topic(
        api: Api, operator: None, kafka: Kafka) -> None:
    await ready_cluster(api)
    name = unique("shared")
    await create_topic(api, "first", {"topicName": name, "partitions": 1})
    await eventually(lambda: condition(api, "first").get("status") == "True", within=WITHIN)
    await create_topic(api, "second", {"topicName": name, "partitions": 5})
    conflict = await eventually(lambda: degraded(api, "second", "TopicNameConflict"), within=WITHIN)
    assert "StreamTopic first already manages topic" in conflict["message"]
    await delete_topic(api, "second")
    await eventually(lambda: api.get(ST, "second") is None, within=WITHIN)
    topic = await kafka.describe(name)
    assert topic is not None and topic["partitions"] == 1


# ---- what a person must fix ---------------------------------------------------------------------


async def test_a_missing_then_unready_cluster_is_reported_and_the_topic_follows_once_it_is_ready(
        api: Api, operator: None, kafka: Kafka) -> None:
    name = unique("early")
    await create_topic(api, name, {"partitions": 1})
    missing = await eventually(lambda: degraded(api, name, "ClusterNotFound"), within=WITHIN)
    assert "StreamCluster streaming/demo (spec.cluster) does not exist" in missing["message"]
    await api.create_cluster(sc_samples.MINIMAL)
    waiting = await eventually(lambda: degraded(api, name, "ClusterNotReady"), within=WITHIN)
    assert "has no ready broker yet" in waiting["message"]
    await api.set_deployment_status("demo-broker", {"observedGeneration": 1, "replicas": 1, "updatedReplicas": 1,
                                                     "readyReplicas": 1, "availableReplicas": 1})

    async def created() -> dict[str, Any] | None:
        return await kafka.describe(name)

    await eventually(created, within=WITHIN)
    await eventually(lambda: condition(api, name).get("status") == "True", within=WITHIN)


@pytest.mark.parametrize(("configs", "message"), [
    ({"retention.ms": "soon"}, "Invalid value soon for configuration retention.ms"),
    ({"bogus.config": "1"}, "Unknown topic config name: bogus.config"),
])
async def test_a_config_the_broker_refuses_is_reported_with_its_message_and_nothing_is_created(
        api: Api, operator: None, kafka: Kafka, configs: dict[str, str], message: str) -> None:
    await ready_cluster(api)
    name = unique("bad")
    await create_topic(api, name, {"partitions": 1, "configs": configs})
    refused = await eventually(lambda: degraded(api, name, "InvalidConfig"), within=WITHIN)
    assert message in refused["message"] and "fix spec.configs" in refused["message"]
    assert await kafka.describe(name) is None
    # Fixing the spec is enough.
    await patch_topic(api, name, {"configs": {k: None for k in configs}})

    async def created() -> dict[str, Any] | None:
        return await kafka.describe(name)

    await eventually(created, within=WITHIN)
    await eventually(lambda: condition(api, name).get("status") == "True", within=WITHIN)


async def test_a_spec_the_schema_would_refuse_is_reported_not_applied(api: Api, operator: None, kafka: Kafka) -> None:
    """What ``kubectl apply`` stops at the schema still gets a clear condition if it gets through."""
    await ready_cluster(api)
    await create_topic(api, "zero", {"partitions": 0})
    invalid = await eventually(lambda: degraded(api, "zero", "InvalidSpec"), within=WITHIN)
    assert "spec.partitions" in invalid["message"]
    assert await kafka.describe("zero") is None
