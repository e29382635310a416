"""The Helm chart renders and lints (strict) offline with helm-python-sdk, its
manifests validate against Kubernetes' schemas, and its RBAC grants what the
operator does and not more."""

from __future__ import annotations

from typing import Any

import helm_python as helm
import kubernetes_validate
import pytest
import yaml

from conftest import CHART_DIR, K8S_VERSIONS


def render(values: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    chart = helm.Chart.load(str(CHART_DIR))
    out = chart.render(values or {}, name="floe", namespace="floe-system", is_install=True)
    docs: list[dict[str, Any]] = []
    for path, text in sorted(out.items()):
        if path.endswith(".yaml"):
            docs += [d for d in yaml.safe_load_all(text) if d]
    return docs


def by_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind]


VALUE_SETS: dict[str, dict[str, Any]] = {
    "defaults": {},
    "namespaced": {"watchNamespaces": ["team-a", "team-b"], "logFormat": "console"},
    "custom": {
        "image": {"repository": "registry.example.com/floe", "tag": "1.2.3"},
        "brokerImage": "registry.example.com/floe-broker:1.2.3",
        "imagePullSecrets": [{"name": "regcred"}],
        "serviceAccount": {"create": False, "name": "existing"},
        "nodeSelector": {"kubernetes.io/os": "linux"},
        "tolerations": [{"key": "ops", "operator": "Exists"}],
        "priorityClassName": "system-cluster-critical",
        "logLevel": "debug",
    },
    "metrics-adapter": {"metricsAdapter": {"enabled": True, "prometheusUrl": "http://prometheus.monitoring:9090"}},
    "monitoring": {
        "grafana": {"dashboards": {"enabled": True, "namespace": "monitoring",
                                   "annotations": {"grafana_folder": "Floe"}}},
        "prometheusRule": {"enabled": True, "additionalLabels": {"release": "kube-prometheus-stack"}},
        "podMonitor": {"enabled": True, "additionalLabels": {"release": "kube-prometheus-stack"}},
    },
    "no-operator-metrics": {"metrics": {"enabled": False}, "podMonitor": {"enabled": True}},
}

# The Prometheus Operator's kinds: not in Kubernetes' own schemas (test_monitoring_objects checks them).
MONITORING_API = "monitoring.coreos.com/v1"


@pytest.mark.parametrize("values", sorted(VALUE_SETS))
def test_chart_lints_strictly(values: str) -> None:
    report = helm.lint(str(CHART_DIR), VALUE_SETS[values], strict=True, namespace="floe-system")
    assert report["errors"] == [] and report["messages"] == []


def test_lint_rejects_bad_values() -> None:
    report = helm.lint(str(CHART_DIR), {"logFormat": "xml"}, strict=True)
    assert report["errors"] or [m for m in report["messages"] if m["severity"] >= 2]


@pytest.mark.parametrize("version", K8S_VERSIONS)
@pytest.mark.parametrize("values", sorted(VALUE_SETS))
def test_rendered_manifests_validate(values: str, version: str) -> None:
    docs = render(VALUE_SETS[values])
    assert docs
    for doc in docs:
        if doc["apiVersion"] != MONITORING_API:
            kubernetes_validate.validate(doc, version, strict=True)


def test_chart_carries_the_crd() -> None:
    chart = helm.Chart.load(str(CHART_DIR))
    crds = [yaml.safe_load(c["data"]) for c in chart.crds]
    assert sorted(c["metadata"]["name"] for c in crds) == [
        "streamclusters.floe.dev", "streamlinks.floe.dev", "streamtopics.floe.dev", "streamusers.floe.dev"]


def test_operator_deployment_runs_floe_operator() -> None:
    (dep,) = by_kind(render(VALUE_SETS["custom"]), "Deployment")
    pod = dep["spec"]["template"]["spec"]
    (c,) = pod["containers"]
    assert c["command"] == ["floe", "operator", "run", "--liveness=http://0.0.0.0:8080/healthz"]
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert c["image"] == "registry.example.com/floe:1.2.3"
    env = {e["name"]: e["value"] for e in c["env"]}
    assert env["FLOE_OPERATOR_BROKER_IMAGE"] == "registry.example.com/floe-broker:1.2.3"
    assert env["FLOE_OPERATOR_LOG_LEVEL"] == "debug"
    assert pod["serviceAccountName"] == "existing"
    assert dep["spec"]["replicas"] == 1 and dep["spec"]["strategy"]["type"] == "Recreate"
    assert not by_kind(render(VALUE_SETS["custom"]), "ServiceAccount")


def test_default_broker_image_is_the_operator_image() -> None:
    (dep,) = by_kind(render(), "Deployment")
    (c,) = dep["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e["value"] for e in c["env"]}
    assert env["FLOE_OPERATOR_BROKER_IMAGE"] == c["image"] == "ghcr.io/floe-dev/floe:0.1.0"
    assert env["FLOE_OPERATOR_NAMESPACES"] == ""


def test_watched_namespaces_get_roles_not_cluster_roles() -> None:
    docs = render(VALUE_SETS["namespaced"])
    roles = by_kind(docs, "Role")
    assert sorted(r["metadata"]["namespace"] for r in roles) == ["team-a", "team-b"]
    assert len(by_kind(docs, "RoleBinding")) == 2
    # Only the read-only discovery ClusterRole remains cluster-wide.
    (cluster_role,) = by_kind(docs, "ClusterRole")
    verbs = {v for rule in cluster_role["rules"] for v in rule["verbs"]}
    assert verbs <= {"get", "list", "watch"}
    (dep,) = by_kind(docs, "Deployment")
    env = {e["name"]: e["value"] for e in dep["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["FLOE_OPERATOR_NAMESPACES"] == "team-a,team-b"


def _grants(rules: list[dict[str, Any]]) -> dict[tuple[str, str], set[str]]:
    out: dict[tuple[str, str], set[str]] = {}
    for rule in rules:
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                out.setdefault((group, resource), set()).update(rule["verbs"])
    return out


def test_rbac_covers_what_the_operator_does_and_no_more() -> None:
    (role,) = [r for r in by_kind(render(), "ClusterRole") if r["metadata"]["name"] == "floe-floe-operator"]
    grants = _grants(role["rules"])
    # Server-side apply is a PATCH, and needs create for an object that is not there yet.
    writes = {"get", "create", "patch", "delete"}
    for group, plural in (
        ("", "serviceaccounts"),
        ("", "configmaps"),
        ("", "services"),
        ("apps", "deployments"),
        ("autoscaling", "horizontalpodautoscalers"),
        ("policy", "poddisruptionbudgets"),
    ):
        assert writes <= grants[(group, plural)], plural
    # Read by name, never listed or deleted: created once (the cluster Secret), applied (a StreamUser's).
    assert grants[("", "secrets")] == {"get", "create", "patch"}
    # The rebalance loop lists broker pods and patches their deletion cost; it never creates or deletes them.
    assert grants[("", "pods")] == {"get", "list", "patch"}
    assert {"get", "list", "watch", "patch"} <= grants[("floe.dev", "streamclusters")]
    assert "patch" in grants[("floe.dev", "streamclusters/status")]
    # StreamUsers: watched, their finalizer kept (a patch of metadata), their status written; never created.
    assert grants[("floe.dev", "streamusers")] == {"get", "list", "watch", "patch", "update"}
    assert "patch" in grants[("floe.dev", "streamusers/status")]
    assert grants[("floe.dev", "streamusers/finalizers")] == {"update"}
    # StreamLinks likewise: watched, finalizer, status; never created (their link lives on the brokers).
    assert grants[("floe.dev", "streamlinks")] == {"get", "list", "watch", "patch", "update"}
    assert "patch" in grants[("floe.dev", "streamlinks/status")]
    assert grants[("floe.dev", "streamlinks/finalizers")] == {"update"}
    # StreamTopics alike; list also finds two StreamTopics naming one topic.
    assert grants[("floe.dev", "streamtopics")] == {"get", "list", "watch", "patch", "update"}
    assert grants[("floe.dev", "streamtopics/status")] == {"get", "patch", "update"}
    assert grants[("floe.dev", "streamtopics/finalizers")] == {"update"}
    assert "create" in grants[("", "events")]
    assert not any("*" in verbs for verbs in grants.values())
    assert ("rbac.authorization.k8s.io", "roles") not in grants


def test_extra_env_reaches_the_operator_container() -> None:
    extra = [{"name": "FLOE_OPERATOR_RETRY_DELAY_SECONDS", "value": "2"}]
    (dep,) = by_kind(render({"extraEnv": extra}), "Deployment")
    (c,) = dep["spec"]["template"]["spec"]["containers"]
    assert c["env"][-1] == extra[0]


def test_metrics_adapter_is_off_by_default_and_registers_both_apis_when_on() -> None:
    assert not by_kind(render(), "APIService")
    docs = render(VALUE_SETS["metrics-adapter"])
    services = {a["metadata"]["name"]: a["spec"] for a in by_kind(docs, "APIService")}
    assert sorted(services) == ["v1beta1.metrics.k8s.io", "v1beta2.custom.metrics.k8s.io"]
    adapter = next(d for d in by_kind(docs, "Deployment") if d["metadata"]["name"].endswith("metrics-adapter"))
    (svc,) = [s for s in by_kind(docs, "Service") if s["metadata"]["name"] == adapter["metadata"]["name"]]
    assert {s["service"]["name"] for s in services.values()} == {svc["metadata"]["name"]}
    pod = adapter["spec"]["template"]
    assert svc["spec"]["selector"].items() <= pod["metadata"]["labels"].items()
    operator = next(d for d in by_kind(docs, "Deployment") if d is not adapter)
    # The operator's selector must not match the adapter's pods (nor the reverse).
    assert not operator["spec"]["selector"]["matchLabels"].items() <= pod["metadata"]["labels"].items()
    (c,) = pod["spec"]["containers"]
    assert c["command"][:3] == ["floe", "operator", "metrics-adapter"]
    assert "--prometheus-url=http://prometheus.monitoring:9090" in c["command"]
    assert pod["spec"]["serviceAccountName"] == adapter["metadata"]["name"]
    (reader,) = [b for b in by_kind(docs, "RoleBinding") if b["metadata"]["namespace"] == "kube-system"]
    assert reader["roleRef"]["name"] == "extension-apiserver-authentication-reader"


def test_metrics_adapter_without_a_prometheus_url_fails_to_render() -> None:
    with pytest.raises(Exception, match="metricsAdapter.prometheusUrl"):
        render({"metricsAdapter": {"enabled": True}})


# --- monitoring: the dashboard, the alerts and the PodMonitors ---------------------------------

RULE_FILE = CHART_DIR / "rules" / "floe.rules.yaml"
DASHBOARD_FILE = CHART_DIR / "dashboards" / "floe.json"


def test_monitoring_objects_are_off_by_default_and_operator_metrics_on() -> None:
    docs = render()
    assert not [d for d in docs if d["apiVersion"] == MONITORING_API]
    assert not [d for d in by_kind(docs, "ConfigMap") if "grafana_dashboard" in d["metadata"]["labels"]]
    (dep,) = by_kind(docs, "Deployment")
    pod = dep["spec"]["template"]
    (c,) = pod["spec"]["containers"]
    assert {"name": "metrics", "containerPort": 8081, "protocol": "TCP"} in c["ports"]
    assert {"name": "FLOE_OPERATOR_METRICS_ADDRESS", "value": "0.0.0.0:8081"} in c["env"]
    notes = pod["metadata"]["annotations"]
    assert (notes["prometheus.io/scrape"], notes["prometheus.io/port"]) == ("true", "8081")


def test_operator_metrics_off_leave_no_port_env_annotation_or_pod_monitor() -> None:
    docs = render(VALUE_SETS["no-operator-metrics"])
    (dep,) = by_kind(docs, "Deployment")
    (c,) = dep["spec"]["template"]["spec"]["containers"]
    assert [p["name"] for p in c["ports"]] == ["health"]
    assert "FLOE_OPERATOR_METRICS_ADDRESS" not in {e["name"] for e in c["env"]}
    assert "annotations" not in dep["spec"]["template"]["metadata"]
    (monitor,) = by_kind(docs, "PodMonitor")  # the brokers' only
    assert monitor["metadata"]["name"].endswith("-brokers")


def test_prometheus_rule_carries_the_rule_files_groups() -> None:
    (rule,) = by_kind(render(VALUE_SETS["monitoring"]), "PrometheusRule")
    assert rule["apiVersion"] == MONITORING_API
    assert rule["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert rule["metadata"]["namespace"] == "floe-system"
    assert rule["spec"]["groups"] == yaml.safe_load(RULE_FILE.read_text())["groups"]
    alerts = {r["alert"] for g in rule["spec"]["groups"] for r in g["rules"]}
    assert {"FloeBrokerDown", "FloeClusterUnbalanced", "FloeProduceLatencyHigh", "FloeObjectStoreErrors",
            "FloeRebalanceFailing"} <= alerts
    # Alert templates reach Prometheus as written, not expanded by Helm.
    assert "{{ $labels.pod }}" in rule["spec"]["groups"][0]["rules"][0]["annotations"]["summary"]


def test_dashboard_config_map_is_labelled_for_the_grafana_sidecar() -> None:
    import json

    (cm,) = [d for d in by_kind(render(VALUE_SETS["monitoring"]), "ConfigMap") if d["metadata"]["name"].endswith(
        "-dashboards")]  # fmt: skip
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert cm["metadata"]["namespace"] == "monitoring"
    assert cm["metadata"]["annotations"] == {"grafana_folder": "Floe"}
    assert json.loads(cm["data"]["floe.json"]) == json.loads(DASHBOARD_FILE.read_text())


def test_pod_monitors_select_the_broker_pods_and_the_operator_by_their_ports() -> None:
    import sc_samples

    from floe_operator import spec as spec_
    from floe_operator.config import OperatorConfig
    from floe_operator.manifests import broker as broker_manifest

    docs = render(VALUE_SETS["monitoring"])
    monitors = {m["metadata"]["name"]: m["spec"] for m in by_kind(docs, "PodMonitor")}
    assert sorted(monitors) == ["floe-floe-operator", "floe-floe-operator-brokers"]
    # What the operator really puts on a broker pod.
    cluster = spec_.StreamCluster.from_body(sc_samples.cluster(sc_samples.MINIMAL))
    deployment = broker_manifest.deployment(cluster, OperatorConfig(broker_image="floe:test"))
    pod = deployment["spec"]["template"]
    brokers = monitors["floe-floe-operator-brokers"]
    assert brokers["selector"]["matchLabels"].items() <= pod["metadata"]["labels"].items()
    assert brokers["namespaceSelector"] == {"any": True}
    ports = {p["name"] for c in pod["spec"]["containers"] for p in c.get("ports", [])}
    assert {e["port"] for e in brokers["podMetricsEndpoints"]} <= ports
    (dep,) = by_kind(docs, "Deployment")
    operator = monitors["floe-floe-operator"]
    assert operator["selector"]["matchLabels"].items() <= dep["spec"]["template"]["metadata"]["labels"].items()
    assert [e["port"] for e in operator["podMetricsEndpoints"]] == ["metrics"]
    namespaced = {m["metadata"]["name"]: m["spec"] for m in by_kind(render(
        {**VALUE_SETS["namespaced"], "podMonitor": {"enabled": True}}), "PodMonitor")}  # fmt: skip
    assert namespaced["floe-floe-operator-brokers"]["namespaceSelector"] == {"matchNames": ["team-a", "team-b"]}


def test_metrics_port_may_not_take_the_liveness_port() -> None:
    report = helm.lint(str(CHART_DIR), {"metrics": {"port": 8080}}, strict=True)
    assert report["errors"] or [m for m in report["messages"] if m["severity"] >= 2]
