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
    # No data volumes: only Secrets, read-only: the cluster Secret (cluster secret, admin token), and the
    # cluster links' source credentials (optional: it exists once a StreamLink does).
    pod = objs["Deployment"]["spec"]["template"]["spec"]
    assert pod["volumes"] == [
        {"name": "cluster-secrets", "secret": {"secretName": "demo-cluster-secrets", "defaultMode": 0o440}},
        {"name": "link-secrets", "secret": {"secretName": "demo-link-secrets", "defaultMode": 0o440,
                                            "optional": True}}]
    assert pod["containers"][0]["volumeMounts"] == [
        {"name": "cluster-secrets", "mountPath": "/etc/floe/secrets", "readOnly": True},
        {"name": "link-secrets", "mountPath": "/etc/floe/link-secrets", "readOnly": True}]
    assert pod["securityContext"]["fsGroup"] == 10001  # the broker's group can read the Secret's files
    # The Secret itself is the reconciler's (created once, random): never rendered, never in the ConfigMap.
    assert "Secret" not in objs


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
    drain = " ".join(c["lifecycle"]["preStop"]["exec"]["command"])
    assert "/v1/drain" in drain
    # the drain carries the admin token, read from the mounted file (never a literal)
    assert "/etc/floe/secrets/admin-token" in drain and "Bearer" in drain
    pod = objs["Deployment"]["spec"]["template"]
    assert pod["spec"]["terminationGracePeriodSeconds"] == 60
    assert pod["metadata"]["annotations"]["prometheus.io/scrape"] == "true"
    assert pod["metadata"]["annotations"]["prometheus.io/port"] == "9644"


def test_config_map_maps_keys_to_floe_env() -> None:
    data = build(sc_samples.MINIO)["ConfigMap"]["data"]
    assert data == {
        "FLOE_ADMIN_TOKEN_FILE": "/etc/floe/secrets/admin-token",
        "FLOE_AUTO_CREATE_TOPICS": "true",
        "FLOE_CLUSTER": "demo",
        "FLOE_CLUSTER_SECRET_FILE": "/etc/floe/secrets/cluster-secret",
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


def test_listeners_become_kafka_style_broker_settings() -> None:
    objs = build(sc_samples.SECURE)
    data = objs["ConfigMap"]["data"]
    assert "FLOE_LISTEN" not in data
    assert data["FLOE_LISTENERS"] == "INTERNAL://0.0.0.0:9092,EXTERNAL://0.0.0.0:9093,MTLS://0.0.0.0:9094"
    assert data["FLOE_LISTENER_SECURITY_PROTOCOL_MAP"] == "INTERNAL:SASL_PLAINTEXT,EXTERNAL:SASL_SSL,MTLS:SSL"
    assert data["FLOE_SASL_ENABLED_MECHANISMS"] == "SCRAM-SHA-256,SCRAM-SHA-512"
    assert data["FLOE_SASL_ENABLED_MECHANISMS_INTERNAL"] == "SCRAM-SHA-512"
    assert data["FLOE_SASL_ENABLED_MECHANISMS_EXTERNAL"] == "SCRAM-SHA-256"
    assert data["FLOE_SSL_DIR_EXTERNAL"] == "/etc/floe/tls/external"
    assert data["FLOE_SSL_DIR_MTLS"] == "/etc/floe/tls/mtls"
    assert data["FLOE_SSL_CLIENT_AUTH_MTLS"] == "required"
    assert "FLOE_SSL_CLIENT_AUTH_EXTERNAL" not in data and "FLOE_SSL_DIR_INTERNAL" not in data
    assert data["FLOE_SASL_BOOTSTRAP_USERS_FILE"] == "/etc/floe/secrets/bootstrap-users"
    assert data["FLOE_AUTHORIZER"] == "simple"
    assert data["FLOE_SUPER_USERS"] == "User:floe-operator;User:admin;User:CN=ops"

    e = env(objs)
    assert "FLOE_ADVERTISE" not in e
    assert e["FLOE_ADVERTISED_LISTENERS"] == (
        "INTERNAL://$(POD_IP):9092,EXTERNAL://$(POD_IP):9093,MTLS://$(POD_IP):9094")
    c = container(objs)
    assert [(p["name"], p["containerPort"]) for p in c["ports"]] == [
        ("internal", 9092), ("external", 9093), ("mtls", 9094), ("admin", 9644)]
    assert {m["mountPath"]: m["name"] for m in c["volumeMounts"]} == {
        "/etc/floe/secrets": "cluster-secrets", "/etc/floe/tls/external": "tls-external",
        "/etc/floe/tls/mtls": "tls-mtls", "/etc/floe/link-secrets": "link-secrets"}
    volumes = {v["name"]: v["secret"]["secretName"] for v in objs["Deployment"]["spec"]["template"]["spec"]["volumes"]}
    assert volumes == {"cluster-secrets": "demo-cluster-secrets", "tls-external": "demo-tls", "tls-mtls": "demo-mtls",
                       "link-secrets": "demo-link-secrets"}


def test_every_listener_has_a_service_port() -> None:
    cluster = spec_.StreamCluster.from_body(sc_samples.cluster(sc_samples.SECURE))
    for svc in (o for o in manifests.build_all(cluster, CONFIG) if o["kind"] == "Service"):
        assert [(p["name"], p["port"], p["targetPort"]) for p in svc["spec"]["ports"]] == [
            ("internal", 9092, "internal"), ("external", 9093, "external"), ("mtls", 9094, "mtls"),
            ("admin", 9644, "admin")]


def test_without_authorization_no_authorizer_and_no_bootstrap_user_without_scram() -> None:
    spec = {**sc_samples.MINIMAL, "listeners": [{"name": "plain", "port": 9092}]}
    data = build(spec)["ConfigMap"]["data"]
    assert data["FLOE_LISTENER_SECURITY_PROTOCOL_MAP"] == "PLAIN:PLAINTEXT"
    for key in ("FLOE_AUTHORIZER", "FLOE_SUPER_USERS", "FLOE_SASL_ENABLED_MECHANISMS",
                "FLOE_SASL_BOOTSTRAP_USERS_FILE"):
        assert key not in data


@pytest.mark.parametrize(
    ("listeners", "message"),
    [
        ([{"name": "a", "port": 9092, "authentication": "mtls"}], "mtls needs tls.secretName"),
        ([{"name": "a", "port": 9092, "authentication": "plain"}], "sends passwords in the clear"),
        ([{"name": "a", "port": 9092}, {"name": "a", "port": 9093}], "two listeners are named 'a'"),
        ([{"name": "a", "port": 9092}, {"name": "b", "port": 9092}], "port 9092 is already used by listener 'a'"),
        ([{"name": "a", "port": 9644}], "port 9644 is already listener.adminPort"),
        ([{"name": "admin", "port": 9092}], "listener name 'admin' is reserved"),
        ([{"name": "Internal", "port": 9092}], "listeners.0.name"),
        ([{"name": "a", "port": 9092, "authentication": "kerberos"}], "listeners.0.authentication"),
    ],
)
def test_bad_listeners_are_refused_with_a_message(listeners: list[dict[str, Any]], message: str) -> None:
    with pytest.raises(spec_.SpecError, match=message):
        spec_.StreamCluster.from_body(sc_samples.cluster({**sc_samples.MINIMAL, "listeners": listeners}))


def test_listener_settings_cannot_be_smuggled_through_config() -> None:
    for key in ("listeners", "superUsers", "clusterSecretFile", "adminToken"):
        with pytest.raises(spec_.SpecError, match="managed by the operator"):
            spec_.StreamCluster.from_body(sc_samples.cluster({**sc_samples.MINIMAL, "config": {key: "x"}}))
