"""The pure builders: every manifest validates against Kubernetes' schemas, and
the objects say what the broker contract and the issue require."""

from __future__ import annotations

from typing import Any

import kubernetes_validate
import pytest
import sc_samples

from conftest import K8S_VERSIONS
from floe_operator import config as config_
from floe_operator import manifests
from floe_operator import spec as spec_

CONFIG = config_.OperatorConfig(broker_image="floe:test")


def build(spec: dict[str, Any], **kwargs: Any) -> dict[str, dict[str, Any]]:
    cluster = spec_.StreamCluster.from_body(sc_samples.cluster(spec))
    return {obj["kind"]: obj for obj in manifests.build_all(cluster, CONFIG, **kwargs)}


def container(objs: dict[str, dict[str, Any]]) -> dict[str, Any]:
    containers: list[dict[str, Any]] = objs["Deployment"]["spec"]["template"]["spec"]["containers"]
    return containers[0]


def env(objs: dict[str, dict[str, Any]]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container(objs)["env"]}


@pytest.mark.parametrize("version", K8S_VERSIONS)
@pytest.mark.parametrize("variant", sorted(sc_samples.VARIANTS))
def test_every_manifest_validates(variant: str, version: str) -> None:
    objs = build(sc_samples.VARIANTS[variant])
    for obj in objs.values():
        kubernetes_validate.validate(obj, version, strict=True)


def test_minimal_cluster_objects() -> None:
    objs = build(sc_samples.MINIMAL)
    assert sorted(objs) == [
        "ConfigMap", "Deployment", "PodDisruptionBudget", "Service", "ServiceAccount",
    ]  # fmt: skip
    # (two Services share the key; see the next test)
    assert objs["Deployment"]["spec"]["replicas"] == 3
    assert "volumes" not in objs["Deployment"]["spec"]["template"]["spec"]


def test_services_headless_and_bootstrap() -> None:
    cluster = spec_.StreamCluster.from_body(sc_samples.cluster(sc_samples.MINIMAL))
    services = [o for o in manifests.build_all(cluster, CONFIG) if o["kind"] == "Service"]
    by_name = {s["metadata"]["name"]: s["spec"] for s in services}
    assert by_name["demo-brokers"]["clusterIP"] == "None"
    assert by_name["demo-brokers"]["publishNotReadyAddresses"] is True
    assert by_name["demo-bootstrap"]["type"] == "ClusterIP"
    assert {p["port"] for p in by_name["demo-bootstrap"]["ports"]} == {9092, 9644}


def test_broker_contract_in_the_pod() -> None:
    objs = build(sc_samples.MINIO)
    c = container(objs)
    assert c["command"] == ["floe"] and c["args"] == ["broker"]
    e = env(objs)
    assert e["POD_IP"] == {"fieldRef": {"fieldPath": "status.podIP"}}
    assert e["FLOE_ADVERTISE"] == "$(POD_IP):9092"
    # The POD_IP definition must come before its use for $(POD_IP) to expand.
    names = [x["name"] for x in c["env"]]
    assert names.index("POD_IP") < names.index("FLOE_ADVERTISE")
    assert e["AWS_ACCESS_KEY_ID"] == {"secretKeyRef": {"name": "floe-s3", "key": "AWS_ACCESS_KEY_ID"}}
    assert e["AWS_SECRET_ACCESS_KEY"] == {"secretKeyRef": {"name": "floe-s3", "key": "AWS_SECRET_ACCESS_KEY"}}
    assert c["envFrom"] == [{"configMapRef": {"name": "demo-config"}}]
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "admin"}
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "admin"}
    assert "/v1/drain" in " ".join(c["lifecycle"]["preStop"]["exec"]["command"])
    pod = objs["Deployment"]["spec"]["template"]
    assert pod["spec"]["terminationGracePeriodSeconds"] == 60
    assert pod["metadata"]["annotations"]["prometheus.io/scrape"] == "true"
    assert pod["metadata"]["annotations"]["prometheus.io/port"] == "9644"


def test_config_map_maps_keys_to_floe_env() -> None:
    data = build(sc_samples.MINIO)["ConfigMap"]["data"]
    assert data == {
        "FLOE_AUTO_CREATE_TOPICS": "true",
        "FLOE_CLUSTER": "demo",
        "FLOE_FLUSH_INTERVAL_MS": "25",
        "FLOE_HTTP": "0.0.0.0:9644",
        "FLOE_LISTEN": "0.0.0.0:9092",
        "FLOE_LOG_FORMAT": "json",
        "FLOE_RETENTION_MS": "604800000",
        "FLOE_S3_ENDPOINT": "http://minio.minio.svc:9000",
        "FLOE_S3_PATH_STYLE": "true",
        "FLOE_S3_REGION": "us-east-1",
        "FLOE_STORAGE": "s3://floe/dev",
    }


@pytest.mark.parametrize(
    ("key", "env_name"),
    [
        ("flushIntervalMs", "FLOE_FLUSH_INTERVAL_MS"),
        ("flush-interval-ms", "FLOE_FLUSH_INTERVAL_MS"),
        ("sessionTimeoutMs", "FLOE_SESSION_TIMEOUT_MS"),
        ("maxMessageBytes", "FLOE_MAX_MESSAGE_BYTES"),
        ("retention", "FLOE_RETENTION"),
    ],
)
def test_config_key_mapping(key: str, env_name: str) -> None:
    assert spec_.config_env_name(key) == env_name


def test_known_config_keys_all_map_cleanly() -> None:
    for key in spec_.KNOWN_CONFIG:
        assert spec_.config_env_name(key).startswith("FLOE_")


def test_config_change_changes_pod_template_hash() -> None:
    a = build(sc_samples.MINIO)["Deployment"]["spec"]["template"]["metadata"]["annotations"]
    changed = {**sc_samples.MINIO, "config": {"flushIntervalMs": 50}}
    b = build(changed)["Deployment"]["spec"]["template"]["metadata"]["annotations"]
    assert a["floe.dev/config-hash"] != b["floe.dev/config-hash"]


def test_full_spec_overrides_reach_the_pod() -> None:
    objs = build(sc_samples.FULL)
    pod = objs["Deployment"]["spec"]["template"]
    c = container(objs)
    assert c["image"] == "registry.example.com/floe:1.2.3"
    assert c["imagePullPolicy"] == "Always"
    assert c["resources"] == {"requests": {"cpu": "2", "memory": "4Gi"}, "limits": {"memory": "6Gi"}}
    assert {p["containerPort"] for p in c["ports"]} == {19092, 19644}
    assert env(objs)["FLOE_ADVERTISE"] == "$(POD_IP):19092"
    assert env(objs)["AWS_ACCESS_KEY_ID"]["secretKeyRef"]["key"] == "access"
    assert pod["metadata"]["labels"]["team"] == "streaming"
    assert pod["metadata"]["annotations"]["example.com/owner"] == "team-streaming"
    spec = pod["spec"]
    assert spec["imagePullSecrets"] == [{"name": "regcred"}]
    assert spec["terminationGracePeriodSeconds"] == 120
    assert spec["priorityClassName"] == "high-priority"
    assert spec["securityContext"]["runAsUser"] == 2000
    assert "topologySpreadConstraints" not in spec  # [] turns the default spread off
    assert spec["tolerations"][0]["key"] == "dedicated"
    assert objs["PodDisruptionBudget"]["spec"]["maxUnavailable"] == "25%"


def test_default_image_comes_from_operator_config() -> None:
    assert container(build(sc_samples.MINIMAL))["image"] == "floe:test"


def test_hpa_only_when_enabled_with_safe_behavior() -> None:
    assert "HorizontalPodAutoscaler" not in build(sc_samples.MINIMAL)
    hpa = build({**sc_samples.MINIMAL, "autoscaling": {"enabled": True}})["HorizontalPodAutoscaler"]
    spec = hpa["spec"]
    assert spec["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "demo-broker"}
    assert (spec["minReplicas"], spec["maxReplicas"]) == (3, 10)
    assert [m["type"] for m in spec["metrics"]] == ["Resource"]
    down = spec["behavior"]["scaleDown"]
    assert down["stabilizationWindowSeconds"] >= 300
    assert down["policies"] == [{"type": "Pods", "value": 1, "periodSeconds": 120}]
    assert spec["behavior"]["scaleUp"]["stabilizationWindowSeconds"] == 0


def test_hpa_bytes_in_pods_metric_and_behavior_override() -> None:
    spec = build(sc_samples.FULL)["HorizontalPodAutoscaler"]["spec"]
    pods = [m for m in spec["metrics"] if m["type"] == "Pods"]
    assert pods == [{
        "type": "Pods",
        "pods": {
            "metric": {"name": "floe_broker_bytes_in_per_second"},
            "target": {"type": "AverageValue", "averageValue": "50Mi"},
        },
    }]  # fmt: skip
    assert spec["behavior"]["scaleUp"]["stabilizationWindowSeconds"] == 30
    assert spec["behavior"]["scaleUp"]["selectPolicy"] == "Max"  # default kept
    assert spec["behavior"]["scaleDown"]["policies"][0]["periodSeconds"] == 300


def test_autoscaling_clamps_initial_replicas() -> None:
    spec = {
        **sc_samples.MINIMAL,
        "brokers": {"replicas": 1},
        "autoscaling": {"enabled": True, "minReplicas": 2, "maxReplicas": 4},
    }
    assert build(spec)["Deployment"]["spec"]["replicas"] == 2


def test_every_object_is_labelled_for_the_cluster() -> None:
    for obj in build(sc_samples.FULL).values():
        labels = obj["metadata"]["labels"]
        assert labels["app.kubernetes.io/managed-by"] == "floe-operator"
        assert labels["floe.dev/cluster"] == "demo"
        assert obj["metadata"]["namespace"] == "streaming"


@pytest.mark.parametrize(
    ("spec", "fragment"),
    [
        ({"storage": {"bucket": "Bad_Bucket"}}, "spec.storage.bucket"),
        (
            {**sc_samples.MINIMAL, "autoscaling": {"minReplicas": 5, "maxReplicas": 2}},
            "minReplicas (5) is greater than maxReplicas (2)",
        ),
        ({**sc_samples.MINIMAL, "listener": {"kafkaPort": 9000, "adminPort": 9000}}, "give them different ports"),
        ({**sc_samples.MINIMAL, "config": {"listen": "0.0.0.0:1"}}, "spec.listener.kafkaPort"),
        ({**sc_samples.MINIMAL, "config": {"s3Endpoint": "http://x"}}, "spec.storage.endpoint"),
        ({**sc_samples.MINIMAL, "config": {"Flush_Interval": 1}}, "camelCase"),
        ({**sc_samples.MINIMAL, "config": {"flushMs": 1, "flush-ms": 2}}, "both set FLOE_FLUSH_MS"),
        ({**sc_samples.MINIMAL, "config": {"flushMs": {"nested": 1}}}, "spec.config.flushMs"),
        ({**sc_samples.MINIMAL, "brokers": {"replicas": -1}}, "spec.brokers.replicas"),
        (
            {**sc_samples.MINIMAL, "brokers": {"resources": {"limits": {"cpu": "lots"}}}},
            "spec.brokers.resources.limits.cpu",
        ),
        ({**sc_samples.MINIMAL, "brokrs": {}}, "spec.brokrs: is not a known field"),
        ({}, "spec.storage: is required"),
    ],
)
def test_spec_errors_are_actionable(spec: dict[str, Any], fragment: str) -> None:
    with pytest.raises(spec_.SpecError) as info:
        spec_.StreamCluster.from_body(sc_samples.cluster(spec))
    assert fragment in str(info.value)


def test_cluster_name_must_leave_room_for_service_names() -> None:
    with pytest.raises(spec_.SpecError, match="at most 53"):
        spec_.StreamCluster.from_body(sc_samples.cluster(sc_samples.MINIMAL, name="x" * 54))
