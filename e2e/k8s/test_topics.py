"""StreamTopics on the real control plane: the API server's schema, the chart's RBAC, the operator pod.

Reuses the control plane, the kubelet stand-in, moto and ``helm install`` of
``test_install.py`` (the fixtures of ``conftest.py``, one control plane for this module). The
operator runs as the chart's pod with the chart's RBAC; what differs from
scenario 1 is one setting: nothing resolves a Service's DNS name here, so the
operator's Kafka admin client bootstraps through a TCP forwarder on the host
(``FLOE_OPERATOR_KAFKA_BOOTSTRAP``), as its admin HTTP calls go through
``serviceproxy.py``; it then talks to the broker pods at their advertised
addresses, as it would in any cluster.

As a user would: ``kubectl apply`` of ``examples/streamtopic.yaml`` next to
a StreamCluster, kcat's metadata showing the topics, ``kubectl get
streamtopics`` Ready, a ``kubectl patch`` adding partitions, a config
changed behind the operator's back put back, bad specs refused by the API
server with the schema's messages, and ``kubectl delete`` removing one
topic and keeping the ``Retain`` one.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import threading
from collections.abc import Callable, Iterator
from typing import Any

import controlplane
import pytest
import yaml
from harness import (
    CHART,
    NAMESPACE,
    OPERATOR_NAMESPACE,
    ROOT,
    Cluster,
    broker_ips,
    eventually,
    example,
    needs_kubernetes,
)

from tests.infra.moto_server import MotoServer

pytestmark = needs_kubernetes

RESYNC_SECONDS = 3


class KafkaForwarder:
    """TCP from ``127.0.0.1:port`` to a ready broker pod's Kafka port: a Service's routing, for one cluster."""

    def __init__(self, target: Callable[[], str]) -> None:
        self.target = target
        self.port = controlplane.free_port()
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        writer.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            host, port = (await asyncio.to_thread(self.target)).rsplit(":", 1)
            up_reader, up_writer = await asyncio.open_connection(host, int(port))
        except (OSError, IndexError, subprocess.CalledProcessError):
            writer.close()
            return
        await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))

    def __enter__(self) -> KafkaForwarder:
        self.thread.start()
        asyncio.run_coroutine_threadsafe(asyncio.start_server(self._serve, "127.0.0.1", self.port),
                                         self.loop).result(10)
        return self

    def __exit__(self, *_: Any) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


@pytest.fixture(scope="module")
def forwarder(kube: Cluster) -> Iterator[KafkaForwarder]:
    with KafkaForwarder(lambda: f"{broker_ips(kube, 'demo')[0]}:9092") as fwd:
        yield fwd


@pytest.fixture(scope="module")
def topic_operator(kube: Cluster, helm: Callable[..., subprocess.CompletedProcess[str]],
                   service_proxy: int, forwarder: KafkaForwarder) -> Iterator[None]:
    extra_env = [
        {"name": "FLOE_OPERATOR_BROKER_ADMIN_URL",
         "value": f"http://localhost:{service_proxy}/{{namespace}}/{{service}}/{{port}}"},
        {"name": "FLOE_OPERATOR_KAFKA_BOOTSTRAP", "value": f"localhost:{forwarder.port}"},
        {"name": "FLOE_OPERATOR_RETRY_DELAY_SECONDS", "value": "2"},
        {"name": "FLOE_OPERATOR_TOPIC_RESYNC_SECONDS", "value": str(RESYNC_SECONDS)},
    ]
    helm("install", "floe", str(CHART), "-n", OPERATOR_NAMESPACE, "--create-namespace", "--set", "logFormat=console",
         "--set-json", f"extraEnv={json.dumps(extra_env)}")
    kube.kubectl("wait", "--for=condition=Established", "crd/streamclusters.floe.dev", "crd/streamtopics.floe.dev")

    def operator_ready() -> bool:
        pods = json.loads(kube.kubectl("get", "pods", "-n", OPERATOR_NAMESPACE, "-l",
                                       "app.kubernetes.io/name=floe-operator", "-o", "json").stdout)
        return any(c["type"] == "Ready" and c["status"] == "True"
                   for p in pods["items"] for c in p["status"].get("conditions") or [])

    eventually(operator_ready, within=120, what="the operator pod Ready")
    yield


def kcat_topics(bootstrap: str) -> dict[str, int]:
    """Topic -> partition count, from kcat's metadata (-L -J)."""
    out = subprocess.run(["kcat", "-b", bootstrap, "-L", "-J"], capture_output=True, text=True, check=True,
                         timeout=60).stdout
    return {t["topic"]: len(t["partitions"]) for t in json.loads(out)["topics"] if not t.get("error")}


def topic_condition(kube: Cluster, name: str, type_: str = "Ready") -> dict[str, Any]:
    status = kube.get("streamtopic", name).get("status") or {}
    return next((c for c in status.get("conditions") or [] if c["type"] == type_), {})


def overrides(bootstrap: str, topic: str) -> dict[str, str]:
    from confluent_kafka.admin import AdminClient, ConfigResource, ConfigSource

    admin = AdminClient({"bootstrap.servers": bootstrap})
    res = ConfigResource("topic", topic)
    entries = admin.describe_configs([res])[res].result(30)
    return {k: e.value for k, e in entries.items() if ConfigSource(e.source) is ConfigSource.DYNAMIC_TOPIC_CONFIG}


def test_topics_from_the_example_are_applied_corrected_refused_and_deleted(
        kube: Cluster, topic_operator: None, s3: MotoServer) -> None:
    docs = example(s3)
    next(d for d in docs if d["kind"] == "StreamCluster")["spec"]["brokers"]["replicas"] = 1
    kube.apply(docs, namespace=NAMESPACE)
    eventually(lambda: len(broker_ips(kube, "demo")) == 1, within=240, what="a broker pod Ready")
    kube.kubectl("apply", "-n", NAMESPACE, "-f", str(ROOT / "examples" / "streamtopic.yaml"))
    eventually(lambda: topic_condition(kube, "orders").get("status") == "True"
               and topic_condition(kube, "audit-log").get("status") == "True", what="both StreamTopics Ready")
    bootstrap = f"{broker_ips(kube, 'demo')[0]}:9092"
    topics = kcat_topics(bootstrap)
    assert topics["orders"] == 12 and topics["Audit_Log"] == 3
    assert overrides(bootstrap, "orders") == {"retention.ms": "604800000", "cleanup.policy": "delete",
                                              "max.message.bytes": "2097152"}
    table = kube.kubectl("get", "streamtopics", "-n", NAMESPACE).stdout
    assert any(line.split()[:5] == ["audit-log", "demo", "Audit_Log", "3", "True"] for line in table.splitlines()), \
        table
    status = kube.get("streamtopic", "orders")["status"]
    assert status["partitions"] == 12 and status["topicId"] and status["observedGeneration"] == 1

    kube.kubectl("patch", "streamtopic", "orders", "-n", NAMESPACE, "--type", "merge", "-p",
                 json.dumps({"spec": {"partitions": 16}}))
    eventually(lambda: kcat_topics(bootstrap).get("orders") == 16, what="orders grown to 16 partitions")

    from confluent_kafka.admin import AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource

    admin = AdminClient({"bootstrap.servers": bootstrap})
    res = ConfigResource("topic", "orders", incremental_configs=[
        ConfigEntry("retention.ms", "1000", incremental_operation=AlterConfigOpType.SET)])
    admin.incremental_alter_configs([res])[res].result(30)
    eventually(lambda: overrides(bootstrap, "orders").get("retention.ms") == "604800000",
               within=60 + 10 * RESYNC_SECONDS, what="retention.ms put back")

    # The API server refuses what the schema (and its CEL rules) forbid, with the schema's words.
    for spec, message in (({"partitions": 0}, "spec.partitions"),
                          ({"partitions": 1, "topicName": ".."}, "'.' and '..' are not allowed"),
                          ({"partitions": 1, "configs": {"Retention_MS": "1"}}, "config names are lower case")):
        bad = {"apiVersion": "floe.dev/v1alpha1", "kind": "StreamTopic", "metadata": {"name": "bad"},
               "spec": {"cluster": "demo", **spec}}
        refused = kube.kubectl("apply", "-n", NAMESPACE, "-f", "-", stdin=yaml.safe_dump(bad), check=False)
        assert refused.returncode != 0 and message in refused.stderr, refused.stderr

    # A rename or a move to another cluster would leave the topic behind: both are refused.
    for change, message in (({"topicName": "Audit_Log_2"}, "spec.topicName cannot change"),
                            ({"cluster": "other"}, "spec.cluster cannot change")):
        refused = kube.kubectl("patch", "streamtopic", "audit-log", "-n", NAMESPACE, "--type", "merge", "-p",
                               json.dumps({"spec": change}), check=False)
        assert refused.returncode != 0 and message in refused.stderr, refused.stderr

    kube.kubectl("delete", "streamtopic", "orders", "audit-log", "-n", NAMESPACE, "--timeout=120s")
    eventually(lambda: "orders" not in kcat_topics(bootstrap), what="orders deleted")
    assert kcat_topics(bootstrap)["Audit_Log"] == 3  # Retain
